"""FIM ablation: train a config under several FIM settings, measure where infilling succeeds.

  python bench/fim_ablation.py --config configs/tiny.py --workdir runs/ablation \
      [--steps 400] [--variants collapsed_split,continued_mixed,...] [--holes 32] [--list]

Each variant is the config with a few `fim.*` (or other) fields overridden (`VARIANTS`), trained
for `--steps` on one shared token cache with the same seeds and data order, then evaluated on
the validation split: next-token loss (`eval_loss`), FIM middle loss, and argmax accuracy at the
middle's first token, inside it and at its end (EOM) on three hole sets (random `split` holes,
whole `line` holes, `yaml` nodes), then greedy infill exact match by hole kind (`--holes` per
kind; `fimjax.infill_eval`). A finished variant is reused on rerun. Prints a Markdown table and
writes `bench/results/fim_ablation-<date>.{json,md}` (or `--out`).
"""

import argparse
import copy
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402  pylint: disable=g-import-not-at-top

_POS = {
  "collapsed": {"fim.positions": "collapsed"},
  "continued": {"fim.positions": "continued"},
  "sequential": {"fim.positions": "sequential"},
}
_SPLIT = {"fim.span_policy": "split"}
VARIANTS = {
  "ar_only": {"fim.rate": 0.0},
  "collapsed_split": {**_POS["collapsed"], **_SPLIT},
  "sequential_split": {**_POS["sequential"], **_SPLIT},
  "continued_split": {**_POS["continued"], **_SPLIT},
  "collapsed_mixed": _POS["collapsed"],
  "sequential_mixed": _POS["sequential"],
  "continued_mixed": _POS["continued"],
  "continued_mixed_eom3": {**_POS["continued"], "fim.eom_weight": 3.0},
  "continued_mixed_spm50": {**_POS["continued"], "fim.spm_rate": 0.5},
  # the bar's kinds weigh more: fewer random spans (which never stop), more values
  "continued_mixed_values": {**_POS["continued"], "fim.mix.split": 0.1, "fim.mix.value": 0.4},
}
PROBE_POLICIES = ("split", "line", "yaml")
HOLE_KINDS = ("value", "line", "step", "block", "span1", "span2_8", "span9_32", "span33plus")


def _set(config, dotted: str, value):
  *path, last = dotted.split(".")
  node = config
  for p in path:
    node = node[p]
  node[last] = value


def run_variant(base, name: str, overrides: dict, root: pathlib.Path, holes: int) -> dict:
  """Trains (or reuses) one variant and returns its measurements."""
  from fimjax import checkpoint, evaluate, infill_eval, model, sharding, train  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  config = copy.deepcopy(base)
  with config.unlocked():
    for k, v in overrides.items():
      _set(config, k, v)
  workdir = root / name
  t0 = time.perf_counter()
  train.train_and_evaluate(config, str(workdir))
  train_s = time.perf_counter() - t0
  config, cache, state, step = checkpoint.load_run(str(workdir))
  mesh = sharding.make_mesh(config.mesh)
  eval_step = evaluate.make_eval_step(config, cache, mesh)
  out = {"variant": name, "overrides": overrides, "step": step, "train_seconds": train_s}
  for policy in PROBE_POLICIES:
    m = evaluate.validation_losses(config, cache, state, eval_step, mesh, span_policy=policy)
    out["eval_loss"] = m["eval_loss"]
    for k in ("fim_loss", "fim_first_acc", "fim_inside_acc", "fim_eom_acc", "fim_eom_loss"):
      out[f"{policy}_{k}"] = m[f"eval_{k}"]
  cfg = model.ModelConfig.from_config(config, cache.model_vocab_size)
  with jax.set_mesh(mesh):
    out.update(
      infill_eval.infill_metrics(
        cfg,
        state["params"],
        cache.documents("validation"),
        cache.special_ids,
        cache.model_vocab_size,
        tokenizer=cache.tokenizer(),
        per_kind=holes,
        max_new=int(config.eval.max_new_tokens),
        positions=config.fim.positions,
      )
    )
  return out


def table(results: list[dict]) -> str:
  pct = lambda v: "-" if v is None else f"{100 * v:.0f}"
  head = (
    "| variant | AR loss | line: first / inside / EOM acc % | yaml: first / inside / EOM % "
    "| split: first / inside / EOM % | exact % "
    + " / ".join(HOLE_KINDS)
    + " | line stop % | valid after fill % |"
  )
  lines = [head, "|" + "---|" * 8]
  for r in results:
    probes = [
      " / ".join(pct(r.get(f"{p}_fim_{k}_acc")) for k in ("first", "inside", "eom"))
      for p in ("line", "yaml", "split")
    ]
    exact = " / ".join(pct(r.get(f"infill_exact_{k}")) for k in HOLE_KINDS)
    lines.append(
      f"| {r['variant']} | {r['eval_loss']:.4f} | {' | '.join(probes)} | {exact} | "
      f"{pct(r.get('infill_exact_line_stop'))} | {pct(r.get('infill_valid_after_fill'))} |"
    )
  return "\n".join(lines)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--config", default="configs/tiny.py")
  ap.add_argument("--workdir", default="runs/ablation")
  ap.add_argument("--steps", type=int, default=0, help="train.steps (0 = the config's)")
  ap.add_argument("--variants", default=",".join(VARIANTS))
  ap.add_argument("--holes", type=int, default=32, help="held-out holes per kind")
  ap.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="FIELD=VALUE",
    help="extra override for every variant (JSON value), e.g. fim.rate=0.7",
  )
  ap.add_argument("--out", default="", help="JSON path (default bench/results/fim_ablation-<date>)")
  ap.add_argument("--list", action="store_true")
  args = ap.parse_args()
  if args.list:
    for k, v in VARIANTS.items():
      print(f"{k}: {v}")
    return
  from fimjax import config_base  # pylint: disable=g-import-not-at-top

  base = config_base.load_config_file(args.config)
  root = pathlib.Path(args.workdir)
  extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
  with base.unlocked():
    for k, v in {
      **extra,
      "eval.in_loop": False,
      "train.progress": False,
      "data.cache_dir": str((root / "cache").resolve()),
    }.items():
      _set(base, k, v)
    if args.steps:
      base.train.steps = args.steps
  results = []
  for name in args.variants.split(","):
    print(f"== {name}: {VARIANTS[name]}", flush=True)
    results.append(run_variant(base, name, {**VARIANTS[name]}, root, args.holes))
    print(table(results[-1:]), flush=True)
  report = {
    "machine": common.machine(),
    "config": args.config,
    "steps": int(base.train.steps),
    "holes_per_kind": args.holes,
    "extra": extra,
    "results": results,
  }
  out = pathlib.Path(args.out or common.RESULTS / f"fim_ablation-{report['machine']['date']}.json")
  out.write_text(json.dumps(report, indent=1))
  md = table(results)
  out.with_suffix(".md").write_text(
    f"{args.config}, {base.train.steps} steps, {args.holes} holes per kind; "
    f"{report['machine']['cpu']} x{report['machine']['cores']}\n\n{md}\n"
  )
  print(f"\n{md}\n\nwrote {out}")


if __name__ == "__main__":
  main()
