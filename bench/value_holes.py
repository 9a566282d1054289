"""Which held-out value holes a model could copy: is the value's text in the prompt it is shown?

  .venv/bin/python bench/value_holes.py --cache runs/tiny_long/cache [--contexts 256,512,1024]

Takes the evaluation's own value holes (fimjax.infill_eval.make_holes: same seed, same validation
documents, `--holes` per kind) and counts those whose exact tokens occur elsewhere in the
document, and inside the prompt a model of each context length is given (sample.crop, as the
evaluation crops it). A value
absent from the window can only be written from what the model learnt of the corpus.
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from fimjax import infill_eval, sample  # noqa: E402
from fimjax.data import cache_format  # noqa: E402


def occurs(needle: list[int], hay: list[int]) -> bool:
  n = len(needle)
  return any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--cache", required=True, help="a run's token cache (runs/<name>/cache)")
  p.add_argument("--holes", type=int, default=96, help="holes per kind (eval.infill_holes)")
  p.add_argument("--max_new", type=int, default=64, help="eval.max_new_tokens")
  p.add_argument("--contexts", default="256,512,1024")
  p.add_argument("--out", default=str(common.RESULTS / "value_holes.json"))
  o = p.parse_args()
  docs = cache_format.load_cache(o.cache).documents("validation")
  holes = [h for h in infill_eval.make_holes(docs, o.holes, o.max_new) if h["kind"] == "value"]
  contexts = [int(c) for c in o.contexts.split(",")]
  row = {"value_holes": len(holes), "elsewhere_in_file": 0}
  row.update({f"in_prompt_{c}": 0 for c in contexts})
  for h in holes:
    doc = [int(t) for t in docs[h["doc"]]]
    s, e = h["start"], h["start"] + h["length"]
    truth = doc[s:e]
    row["elsewhere_in_file"] += occurs(truth, doc[:s] + [-1] + doc[e:])
    for c in contexts:  # the prompt infill_eval builds: sample.hole_prompt's crop
      drop, keep = sample.crop(doc[:s], doc[e:], c - o.max_new - 4)
      row[f"in_prompt_{c}"] += occurs(truth, doc[drop:s] + [-1] + doc[e : e + keep])
  print("| " + " | ".join(row) + " |\n|" + "---|" * len(row))
  print("| " + " | ".join(str(v) for v in row.values()) + " |")
  pathlib.Path(o.out).write_text(json.dumps({**row, "cache": o.cache}, indent=1) + "\n")


if __name__ == "__main__":
  main()
