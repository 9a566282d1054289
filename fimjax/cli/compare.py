"""FIM for free? Train the same config with `fim.rate` as given and with 0, evaluate both.

  python -m fimjax.compare --config configs/tiny.py --workdir runs/compare [--config.train.steps=N]
                           [--infill_holes 64] [--generate_samples 16]

Trains `<workdir>/fim` (the config's fim.rate, 0.5 by default) and `<workdir>/ar` (fim.rate=0)
on one shared token cache (`<workdir>/cache`), same steps, data order and seeds; a rerun resumes
or reuses finished runs. Sampling metrics are left out of the training loop (eval.in_loop=False)
and computed afterwards on each run's final checkpoint with the same holes and seeds. Prints a
table and writes `<workdir>/compare.json`. The claim to check: the AR loss (`eval_loss`) of the
FIM model is no worse, and its infilling (`eval_fim_loss`, infill exact match) much better.
"""

import copy
import json
import logging
import math
import os

from absl import flags
from ml_collections import config_flags

from fimjax import evaluate
from fimjax import infill_eval
from fimjax import train
from fimjax.cli import common

PROG = "python -m fimjax.compare"


def define(fv: flags.FlagValues) -> None:
  config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/<name>.py).", flag_values=fv, lock_config=True
  )
  flags.DEFINE_string("workdir", None, "Directory for both runs and the report.", flag_values=fv)
  common.number(fv, "infill_holes", None, "Held-out holes (default: eval.infill_holes).", low=0)
  common.number(
    fv, "generate_samples", None, "Generated workflows (default: eval.generate_samples).", low=0
  )


def rows() -> tuple:
  """The report's metrics in table order."""
  kinds = infill_eval.KINDS
  return (
    "eval_loss",
    "eval_fim_loss",
    "eval_fim_context_loss",
    "eval_fim_first_acc",
    "eval_fim_inside_acc",
    "eval_fim_eom_acc",
    "infill_exact",
    *(f"infill_exact_{k}" for k in kinds),
    "infill_exact_line_stop",
    "infill_written",
    *(f"infill_written_{k}" for k in kinds),
    "infill_valid_after_fill",
    "gen_decoded_rate",
    "gen_parsed_rate",
    "gen_schema_valid_rate",
  )


def table(fim: dict, ar: dict) -> str:
  """A Markdown table of the two reports (lower is better for losses, higher for rates)."""
  fmt = lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"
  lines = [
    f"| metric | FIM (rate {fim.get('fim_rate')}) | AR (rate 0) | FIM - AR |",
    "|---|---|---|---|",
  ]
  for k in rows():
    a, b = fim.get(k), ar.get(k)
    diff = a - b if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
    lines.append(f"| {k} | {fmt(a)} | {fmt(b)} | {fmt(diff)} |")
  return "\n".join(lines)


def body(fv: flags.FlagValues, args: list[str]) -> int:
  del args
  logging.getLogger("absl").setLevel(logging.WARNING)
  root = fv.workdir
  base = copy.deepcopy(fv.config)
  with base.unlocked():
    base.data.cache_dir = base.data.cache_dir or os.path.join(os.path.abspath(root), "cache")
    base.eval.in_loop = False
  reports = {}
  for name, rate in (("fim", float(base.fim.rate)), ("ar", 0.0)):
    config = copy.deepcopy(base)
    with config.unlocked():
      config.fim.rate = rate
    workdir = os.path.join(root, name)
    print(f"== {name}: fim.rate={rate}, {config.train.steps} steps -> {workdir}", flush=True)
    try:
      result = train.train_and_evaluate(config, workdir)
    except (ValueError, FileNotFoundError, train.NonFiniteError) as e:
      common.error(e)
      return 1
    report = evaluate.evaluate_workdir(
      workdir, step=result.step, infill_holes=fv.infill_holes, generate_samples=fv.generate_samples
    )
    if isinstance(report, str):
      common.error(report)
      return 1
    reports[name] = report
  out = {"config": base.name, "steps": int(base.train.steps), **reports}
  path = os.path.join(root, "compare.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=2)
  print(f"\nFIM vs AR after {base.train.steps} steps ({base.name}):\n")
  print(table(reports["fim"], reports["ar"]))
  a, b = reports["fim"]["eval_loss"], reports["ar"]["eval_loss"]
  print(f"\nnext-token validation loss: FIM {a:.4f}, AR {b:.4f} ({a / b - 1:+.1%} for FIM)")
  print(f"\nwrote {path}")
  return 0


def main(argv=None) -> int:
  return common.run(PROG, __doc__, define, body, argv, required=("config", "workdir"))
