"""How big a sample the BPE needs: training time and compression by sample size.

  .venv/bin/python bench/bpe_sample.py [--sizes_mb 0.5,1,2,4,8,16,32,64] [--vocab 8192]

The cache build trains its BPE on the first `encode.BPE_SAMPLE_BYTES` of the training texts.
This trains the same tokenizer on growing prefixes of two corpora and reports, per size, the
training time and the tokens per KB of held-out text (fewer is better):
  real       the embedded corpus (1,245 workflows, 2.9 MB): train split in, validation split out;
  synthetic  fimjax.synthetic workflows (as many as the largest size needs; the scale
             benchmark's documents), scored on 2,000 others.
A size beyond a corpus is replaced by all of it. Writes bench/results/bpe_sample.json.
"""

import argparse
import itertools
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from fimjax.data import corpus as corpus_lib  # noqa: E402
from fimjax.data import encode  # noqa: E402
from fimjax.data import tokenizers as tok_lib  # noqa: E402


def real_texts() -> tuple[list[str], list[str]]:
  reader = corpus_lib.Reader(["default"], progress=False)
  docs = [doc for _, doc, _ in reader if doc is not None]
  return [d.text for d in docs if d.split != 1], [d.text for d in docs if d.split == 1]


def synthetic_texts(total_bytes: int, held_out: int = 2000) -> tuple[list[str], list[str]]:
  from fimjax.synthetic import generator  # pylint: disable=g-import-not-at-top

  out, size = [], 0
  for i in itertools.count(held_out):
    if size >= total_bytes:
      break
    out.append(generator.generate(i))
    size += len(out[-1].encode())
  return out, [generator.generate(i) for i in range(held_out)]


def prefix(texts: list[str], limit: int) -> list[str]:
  """The texts the cache build's trainer gets for a `limit` (encode.BackgroundBpe's choice)."""
  chosen = encode.BackgroundBpe(0, limit, train=list)
  for t in texts:
    chosen.feed(t, 0)
  return chosen.result()


def measure(name, train, held_out, sizes_mb, vocab) -> list[dict]:
  available = sum(len(t.encode()) for t in train)
  held_bytes = sum(len(t.encode()) for t in held_out)
  rows = []
  limits = [int(mb * 2**20) for mb in sizes_mb if mb * 2**20 < available]
  for limit in limits + ([available] if max(sizes_mb) * 2**20 >= available else []):
    sample = prefix(train, limit)
    t, c = time.perf_counter(), time.process_time()
    tok = tok_lib.BpeTokenizer.train(sample, vocab)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    tokens = sum(len(ids) for ids in tok.encode_batch(held_out))
    rows.append(
      {
        "corpus": name,
        "sample_mb": round(sum(len(s.encode()) for s in sample) / 2**20, 2),
        "documents": len(sample),
        "train_s": round(wall, 2),
        "train_cpu_s": round(cpu, 2),
        "tokens_per_kb": round(1024 * tokens / held_bytes, 2),
      }
    )
    print(common.table(rows[-1:], list(rows[-1])).splitlines()[-1], flush=True)
  best = rows[-1]["tokens_per_kb"]
  for r in rows:
    r["vs_largest"] = round(r["tokens_per_kb"] / best - 1, 4)
  return rows


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sizes_mb", default="0.5,1,2,4,8,16,32,64")
  p.add_argument("--vocab", type=int, default=8192)
  p.add_argument("--out", default=str(common.RESULTS / "bpe_sample.json"))
  a = p.parse_args()
  sizes = [float(s) for s in a.sizes_mb.split(",")]
  rows = measure("real", *real_texts(), sizes, a.vocab)
  rows += measure("synthetic", *synthetic_texts(int(max(sizes) * 2**20)), sizes, a.vocab)
  print(common.table(rows, list(rows[0])))
  with open(a.out, "w") as f:
    json.dump({"machine": common.machine(), "vocab": a.vocab, "rows": rows}, f, indent=1)
  print(f"wrote {a.out}")


if __name__ == "__main__":
  main()
