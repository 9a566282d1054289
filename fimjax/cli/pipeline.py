"""Show training or validation examples as the pipeline builds them.

  python -m fimjax.data.pipeline show --config CONFIG [--split train|validation] [--num N]
                                      [--json] [--packed] [--workdir DIR]

Readable: each example's window with its prefix, suffix and middle decoded (specials as <NAME>);
`--packed`: rows with their segments; `--json`: one example per line (`show_examples`).
"""

import json
import sys

from absl import flags
from ml_collections import config_flags
import numpy as np

from fimjax import checkpoint
from fimjax.cli import common
from fimjax.data import cache as cache_lib
from fimjax.data import pipeline

PROG = "python -m fimjax.data.pipeline show"


def define(fv: flags.FlagValues) -> None:
  config_flags.DEFINE_config_file(
    "config", None, "config file (configs/*.py)", flag_values=fv, lock_config=True
  )
  flags.DEFINE_enum("split", "train", ["train", "validation"], "which split", flag_values=fv)
  common.number(fv, "num", 4, "how many examples (or packed rows)", low=1)
  flags.DEFINE_bool("json", False, "one JSON object per line", flag_values=fv)
  flags.DEFINE_bool("packed", False, "show packed rows with their segment_ids", flag_values=fv)
  flags.DEFINE_string(
    "workdir",
    "",
    "run folder; the cache is <workdir>/cache (default "
    "runs/<config.name>) unless data.cache_dir is set",
    flag_values=fv,
  )


def _render(tokenizer, ids, special_ids) -> str:
  """Decoded text with special ids shown as <NAME>."""
  names = {v: k.upper() for k, v in special_ids.items()}
  out, run = [], []

  def flush():
    if run:
      try:
        out.append(tokenizer.decode(run))
      except Exception:  # pylint: disable=broad-except
        out.append(str(run))
      run.clear()

  for t in ids:
    if t in names:
      flush()
      out.append(f"<{names[t]}>")
    else:
      run.append(int(t))
  flush()
  return "".join(out)


def _print_readable(tokenizer, examples: list[dict], packed: bool) -> None:
  for i, ex in enumerate(examples):
    sp = ex["special_ids"]
    if packed:
      seg = np.asarray(ex["segment_ids"])
      print(f"== row {i}: {int((seg > 0).sum())} tokens in {int(seg.max())} segments")
      for s in range(1, int(seg.max()) + 1):
        at = seg == s
        gap = np.asarray(ex["gap"])[at]
        first = min(ex["pos"][j] for j in np.flatnonzero(at))
        print(
          f"-- segment {s} ({int(at.sum())} tokens, pos {first}.., "
          f"{'FIM' if (gap > 0).any() else 'AR'})"
        )
        print(_render(tokenizer, np.asarray(ex["tokens"])[at].tolist(), sp))
      continue
    w, s = ex["window"], ex["window_start"]
    head = f"== example {i}: doc {ex['doc_index']}, window [{s}, {s + len(w)})"
    if not ex["is_fim"]:
      print(f"{head}, AR\n{_render(tokenizer, w, sp)}")
      continue
    g, e = ex["middle"]
    print(f"{head}, FIM ({ex['kind']}, {ex['hole']} hole), middle [{g}, {e}) of the window")
    for name, part in (("PREFIX", w[:g]), ("SUFFIX", w[e:]), ("MIDDLE", w[g:e])):
      print(f"---- {name} ({len(part)} tokens)\n{_render(tokenizer, part, sp)}")


def body(fv: flags.FlagValues, args: list[str]) -> int:
  del args
  config = fv.config
  cache_dir = checkpoint.cache_dir(config, fv.workdir or f"runs/{config.name}")
  cache = cache_lib.ensure_cache(
    config.data, cache_dir, progress=not fv.json, log=lambda s: print(s, file=sys.stderr)
  )
  examples = pipeline.show_examples(
    config,
    cache.documents(fv.split),
    cache.special_ids,
    split=fv.split,
    num=fv.num,
    packed=fv.packed,
  )
  if fv.json:
    for ex in examples:
      print(json.dumps(ex))
  else:
    _print_readable(cache.tokenizer(), examples, fv.packed)
  return 0


def main(argv=None) -> int:
  words = list(sys.argv[1:] if argv is None else argv)
  if words[:1] in (["-h"], ["--help"]):
    print(__doc__.strip())
    return 0
  if words[:1] != ["show"]:
    return common.fail(
      PROG, f"the one command is show, not {words[0]!r}" if words else "missing the command: show"
    )
  return common.run(PROG, __doc__, define, body, argv, skip=1, required=("config",))
