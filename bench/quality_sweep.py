"""Quality sweep: train several variants of a config at once, tabulate infilling at each evaluation.

  python bench/quality_sweep.py --root runs/sweep --variants long9600,drop02_9600 [--parallel 4]
  python bench/quality_sweep.py --root runs/sweep --table_only    # tabulate finished/partial runs

Each variant is `python -m fimjax.main --config <config> --workdir <root>/<name>` with the flags
of `VARIANTS`; they run as concurrent processes (on one GPU they share it: each is given an equal
slice of its memory), each stopped after `--timeout` seconds with what it wrote kept. The table
has one row per variant and evaluation step (from each run's `metrics.jsonl`): train loss,
next-token validation loss, EOM accuracy on mixed holes, greedy exact match by hole kind, line
holes with `--stop line`, valid after fill; then, from `python -m fimjax.evaluate --infill_all`
on each run's last checkpoint (`<root>/<name>/all_holes.json`), a row on every value, line, step
and block hole of the validation split (a 96-hole sample is +-5 points at 30%, the whole split
+-1). Writes `<root>/quality_sweep.{json,md}` (or `--out`).
Sized for an accelerator: on 2 CPU cores one 4,800-step tiny run takes ~50 minutes; on an H200
six at once took 5.4 minutes (docs/infill.md, "The quality bar at 4,800 steps").
"""

import argparse
import concurrent.futures
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402  pylint: disable=g-import-not-at-top
from fimjax import metrics  # noqa: E402

_EVAL = ("--config.train.eval_every_steps=1200", "--config.eval.infill_holes=96")
_LONG = ("--config.train.steps=9600", "--config.train.checkpoint_every_steps=2400", *_EVAL)
_SHORT = ("--config.train.steps=4800", "--config.train.checkpoint_every_steps=2400", *_EVAL)
# Every variant starts from configs/tiny_long.py (tiny, dropout 0.1, no random-span holes).
VARIANTS = {
  "long9600": _LONG,
  "drop02_9600": (*_LONG, "--config.model.dropout=0.2"),
  "long4800": _SHORT,
  "long4800_seed1": (*_SHORT, "--config.train.seed=1", "--config.fim.seed=1"),
  "drop02_4800": (*_SHORT, "--config.model.dropout=0.2"),
  "ar4800": (*_SHORT, "--config.fim.rate=0", "--config.eval.in_loop=False"),
  "ar9600": (*_LONG, "--config.fim.rate=0", "--config.eval.in_loop=False"),
  # d_model 256: 5.4M parameters, 4x tiny's block FLOPs.
  "wide256_4800": (*_SHORT, "--config.model.d_model=256"),
  "wide256_4800_seed1": (
    *_SHORT,
    "--config.model.d_model=256",
    "--config.train.seed=1",
    "--config.fim.seed=1",
  ),
  "ar_wide256_4800": (
    *_SHORT,
    "--config.model.d_model=256",
    "--config.fim.rate=0",
    "--config.eval.in_loop=False",
  ),
  # `small`'s width and depth at tiny's context: 17.5M parameters, ~18x tiny's block FLOPs.
  "small256_4800": (
    *_SHORT,
    "--config.model.d_model=384",
    "--config.model.num_layers=8",
    "--config.model.num_heads=6",
    "--config.optim.lr=3e-3",
    "--config.model.dropout=0.2",
  ),
}
ALL_HOLES = "all_holes.json"
ALL_HOLE_KINDS = "value,line,step,block"
COLUMNS = (
  ("loss", "train loss"),
  ("eval_loss", "val loss"),
  ("eval_fim_eom_acc", "EOM %"),
  ("infill_exact_value", "value %"),
  ("infill_exact_line", "line %"),
  ("infill_exact_step", "step %"),
  ("infill_exact_block", "block %"),
  ("infill_exact_line_stop", "line stop %"),
  ("infill_valid_after_fill", "valid %"),
)


def launch(config: str, root: pathlib.Path, names: list[str], args) -> None:
  """Runs the variants, `args.parallel` at a time, each under `args.timeout` s; logs beside runs."""
  env = dict(os.environ)
  env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / args.parallel:.3f}")

  def run(name: str) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    cmd = ["timeout", str(args.timeout), sys.executable, "-m", "fimjax.main", "--config", config]
    cmd += ["--workdir", str(root / name), "--config.train.progress=False"]
    cmd += [*VARIANTS[name], *args.extra]
    print("start", name, time.strftime("%H:%M:%S"), flush=True)
    with open(root / f"{name}.log", "w") as log:
      code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
      last = [r["step"] for r in metrics.read_metrics(str(root / name)) if "eval_loss" in r]
      if last:
        cmd = [sys.executable, "-m", "fimjax.evaluate", "--workdir", str(root / name)]
        cmd += ["--step", str(last[-1]), "--infill_all", "--infill_kinds", ALL_HOLE_KINDS]
        cmd += ["--generate_samples", "0", "--out", str(root / name / ALL_HOLES)]
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    print("done", name, "exit", code, time.strftime("%H:%M:%S"), flush=True)

  # A thread per running variant: the next one starts as soon as any run ends.
  with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
    list(pool.map(run, names))


def rows(root: pathlib.Path, names: list[str]) -> list[dict]:
  """One row per variant and evaluation: the eval record merged with the last train record;
  then the row of its all-holes report, if there is one."""
  out = []
  for name in names:
    if not (root / name / "metrics.jsonl").exists():
      continue
    last_train = {}
    for record in metrics.read_metrics(str(root / name)):
      if "eval_loss" not in record:
        last_train = record
        continue
      row = {"variant": name, "step": record["step"], "loss": last_train.get("loss")}
      row.update({k: record.get(k) for k, _ in COLUMNS[1:]})
      out.append(row)
    if (report := root / name / ALL_HOLES).exists():
      every = json.loads(report.read_text())
      row = {"variant": name, "step": f"{every['step']}, all holes", "loss": None}
      out.append(row | {k: every.get(k) for k, _ in COLUMNS[1:]})
  return out


def table(results: list[dict]) -> str:
  """Markdown (bench.common.table): losses to 3 decimals, rates in %, "-" where not measured."""

  def cell(key, value):
    if value is None:
      return "-"
    return f"{value:.3f}" if "loss" in key else f"{100 * value:.0f}"

  labels = [label for _, label in COLUMNS]
  shown = [
    {"variant": r["variant"], "step": r["step"]}
    | {label: cell(k, r.get(k)) for k, label in COLUMNS}
    for r in results
  ]
  return common.table(shown, ["variant", "step", *labels])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/tiny_long.py")
  parser.add_argument("--root", required=True, help="One workdir per variant under it.")
  parser.add_argument("--variants", default=",".join(VARIANTS), help=f"Of: {', '.join(VARIANTS)}")
  parser.add_argument("--parallel", type=int, default=0, help="Runs at once (0: all of them).")
  parser.add_argument("--timeout", type=int, default=3600, help="Seconds per run.")
  parser.add_argument("--extra", default="", help='Flags for every run: --extra="--config.x=1 ..."')
  parser.add_argument("--table_only", action="store_true", help="Tabulate what the runs wrote.")
  parser.add_argument("--out", help="Where the JSON and Markdown go (default: --root).")
  args = parser.parse_args()
  names = args.variants.split(",")
  args.extra = shlex.split(args.extra)
  args.parallel = args.parallel or len(names)
  unknown = sorted(set(names) - set(VARIANTS))
  if unknown:
    parser.error(f"--variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
  root = pathlib.Path(args.root)
  if not args.table_only:
    launch(args.config, root, names, args)
  results = rows(root, names)
  md = table(results)
  print(md)
  out = pathlib.Path(args.out or root)
  out.mkdir(parents=True, exist_ok=True)
  variants = {n: [*VARIANTS[n], *args.extra] for n in names}
  payload = {
    "machine": common.machine(),
    "config": args.config,
    "variants": variants,
    "rows": results,
  }
  (out / "quality_sweep.json").write_text(json.dumps(payload, indent=1) + "\n")
  (out / "quality_sweep.md").write_text(md + "\n")


if __name__ == "__main__":
  main()
