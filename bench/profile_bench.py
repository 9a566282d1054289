"""Where a train step's time goes: a jax.profiler trace of a few steps, top ops by time.

  .venv/bin/python bench/profile_bench.py --config small --batch 4 --steps 2

Compiles the real train step (fimjax.step) for `configs/<config>.py` on the default device with a
synthetic packed batch (bench/train_step_bench.py), runs one warm-up step, then traces `--steps`
steps with the same profiler as `--config.train.profile_steps` (fimjax.metrics.StepProfiler).
Reads the Perfetto trace it writes and prints the ops that took the most device time (on CPU:
one event per executed HLO op, named with the
jax operation it came from), as a table and JSON (bench/results/profile-<config>.json).
"""

import argparse
import collections
import gzip
import json
import pathlib
import re
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402

from bench import common  # noqa: E402
from bench import train_step_bench as tsb  # noqa: E402
from fimjax import metrics as metrics_lib  # noqa: E402
from fimjax import sharding as shd  # noqa: E402
from fimjax import step as step_lib  # noqa: E402


def op_sources(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> the jax operation it came from (its metadata's op_name)."""
  pattern = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{[^}]*op_name="([^"]+)"')
  return {m.group(1): m.group(2) for m in map(pattern.match, hlo_text.splitlines()) if m}


def top_ops(trace_path: pathlib.Path, n: int) -> tuple[list[dict], float]:
  """The `n` HLO ops with the most total time in the trace, and the time of all ops (ms)."""
  with gzip.open(trace_path) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  total, count = collections.Counter(), collections.Counter()
  for e in events:  # one complete event per executed HLO op (the thunk executor's wrapper has none)
    op = e.get("args", {}).get("hlo_op") if e.get("ph") == "X" else None
    if op:
      total[op] += e["dur"] / 1e3
      count[op] += 1
  all_ms = sum(total.values())
  return [
    {"op": k, "ms": round(v, 2), "share": round(v / all_ms, 4), "count": count[k]}
    for k, v in total.most_common(n)
  ], all_ms


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="small")
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--steps", type=int, default=2)
  p.add_argument("--top", type=int, default=5)
  p.add_argument("--dtype", default="float32", help="compute dtype (bf16 is slow on CPU)")
  o = p.parse_args()
  c = tsb.load_config(o.config)
  c.train.batch_size, c.train.microbatches, c.model.dtype = o.batch, 1, o.dtype
  mesh = shd.make_mesh(c.mesh)
  state = step_lib.create_train_state(c, tsb.VOCAB, mesh)
  train_step = step_lib.make_train_step(c, tsb.VOCAB, mesh)
  batch = step_lib.shard_batch(tsb.synthetic_batch(o.batch, int(c.model.context)), mesh)
  sources = op_sources(train_step.lower(state, batch).compile().as_text())
  state, _ = train_step(state, batch)  # compile + warm up outside the trace
  jax.block_until_ready(state)
  with tempfile.TemporaryDirectory() as tmp:
    profiler = metrics_lib.StepProfiler((0, o.steps), tmp)
    for done in range(o.steps):
      profiler.before_step(done)
      state, _ = train_step(state, batch)
      profiler.after_step(done + 1, state)
    trace = next(pathlib.Path(tmp).rglob("perfetto_trace.json.gz"))
    ops, all_ms = top_ops(trace, o.top)
    by_source = collections.Counter()
    for r in top_ops(trace, None)[0]:
      by_source[sources.get(r["op"], r["op"]).split("/")[-1]] += r["ms"]
  for r in ops:
    r["source"] = sources.get(r["op"], "")
  result = {
    "config": o.config,
    "batch": o.batch,
    "context": int(c.model.context),
    "dtype": o.dtype,
    "steps": o.steps,
    "traced_op_ms": round(all_ms, 1),
    "top": ops,
    "by_operation_ms": {k: round(v, 1) for k, v in by_source.most_common(o.top)},
    "machine": common.machine(),
  }
  print(
    f"{o.config}, batch {o.batch} x {c.model.context}, {o.dtype}, {o.steps} steps traced "
    f"({all_ms:.0f} ms of ops) on {result['machine']['cpu']}"
  )
  print("| op | from | ms | share | calls |\n|---|---|---|---|---|")
  for r in ops:
    print(f"| {r['op']} | {r['source'][-70:]} | {r['ms']:.1f} | {r['share']:.1%} | {r['count']} |")
  print(
    "by jax operation: "
    + ", ".join(f"{k} {v / all_ms:.0%}" for k, v in by_source.most_common(o.top))
  )
  out = common.RESULTS / f"profile-{o.config}.json"
  out.write_text(json.dumps(result, indent=1) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
