"""Train-step speed: tokens/s and MFU per config, compile time and memory separately.

  .venv/bin/python bench/train_step_bench.py --configs tiny,small --batch 8 --steps 5

Runs on the default device(s) with a synthetic packed batch (two segments per row, a FIM-like
gap run); `name@512` sets the config's context. Each figure is the median (with spread) of
`--steps` steps after `--warmup`. MFU uses `fimjax.flops` (model FLOPs per token over the peak:
the accelerator's dense bf16 peak, or on CPU the best float32 jitted matmul measured in this
process, one peak for all rows). On CPU the compute dtype defaults to float32 (bf16 matmuls are
slower there); `--dtype config` keeps the config's. Memory: XLA's compiled estimate (arguments +
outputs + temporaries - aliased), and on an accelerator its peak bytes in use.
On a GPU/TPU (jax's default backend) the default configs are `small` and `medium_512` in bf16
at their own batch size; target (issue): MFU >= 40% for `medium_512` on an H100.
"""

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench import common  # noqa: E402  pylint: disable=g-import-not-at-top
from fimjax import config_base  # noqa: E402
from fimjax import flops  # noqa: E402
from fimjax import model as model_lib  # noqa: E402
from fimjax import sharding as shd  # noqa: E402
from fimjax import step as step_lib  # noqa: E402

VOCAB = 8197
ON_CPU = jax.default_backend() == "cpu"
# Quick sizes: under two minutes on 2 CPU cores; on an accelerator the configs' own batches.
QUICK = (
  {"configs": "tiny,small,small@512", "batch": 4, "steps": 3, "warmup": 1}
  if ON_CPU
  else {"configs": "small,medium_512", "steps": 10, "warmup": 3}
)
MFU_TARGET = ("medium_512", "h100", 0.40)  # config, device kind, MFU


def parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument(
    "--configs",
    default="tiny,small" if ON_CPU else "small,medium_512",
    help="comma-separated config names, `name@context` to set the context",
  )
  p.add_argument("--batch", type=int, default=0, help="rows per step (0 = config's)")
  p.add_argument("--microbatches", type=int, default=0)
  p.add_argument("--dtype", default="auto", help="auto | config | float32 | bfloat16")
  p.add_argument("--attn_block", type=int, default=None)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--json", default=str(common.REPO / "bench" / "train_step_bench.json"))
  return p


def load_config(name):
  """configs/<name>.py's config; `name@context` also sets model.context."""
  name, _, context = name.partition("@")
  c = config_base.load_config_file(common.REPO / "configs" / f"{name}.py")
  if context:
    c.model.context = int(context)
  return c


def synthetic_batch(b, l, seed=0):
  rng = np.random.default_rng(seed)
  half = l // 2
  pos = np.concatenate([np.arange(half), np.arange(l - half)])
  seg = np.concatenate([np.ones(half), np.full(l - half, 2)])
  gap = np.zeros(l)
  gap[-l // 8 :] = np.arange(1, l // 8 + 1)
  rows = lambda a, dt: np.tile(a.astype(dt), (b, 1))
  return {
    "tokens": rng.integers(0, 8192, (b, l)).astype(np.int32),
    "targets": rng.integers(0, 8192, (b, l)).astype(np.int32),
    "pos": rows(pos, np.int32),
    "gap": rows(gap, np.int32),
    "segment_ids": rows(seg, np.int32),
    "loss_mask": np.ones((b, l), np.float32),
  }


def memory_mib(compiled) -> dict:
  """XLA's per-device estimate of the step's memory, and the device's peak where it has one."""
  m = compiled.memory_analysis()
  size = lambda k: int(getattr(m, f"{k}_size_in_bytes", 0) or 0) if m else 0
  out = {"memory_mib": (size("argument") + size("output") + size("temp") - size("alias")) / 2**20}
  try:
    out["device_peak_mib"] = jax.devices()[0].memory_stats()["peak_bytes_in_use"] / 2**20
  except Exception:  # pylint: disable=broad-except  # CPU devices have no memory stats
    pass
  return out


def bench_one(name, o):
  c = load_config(name)
  if o["batch"]:
    c.train.batch_size = o["batch"]
  if o["microbatches"]:
    c.train.microbatches = o["microbatches"]
  if o["dtype"] != "config":
    c.model.dtype = o["dtype"] if o["dtype"] != "auto" else ("float32" if ON_CPU else c.model.dtype)
  if o["attn_block"] is not None:
    c.model.attn_block = o["attn_block"]
  mesh = shd.make_mesh(c.mesh)
  cfg = model_lib.ModelConfig.from_config(c, VOCAB)
  state = step_lib.create_train_state(c, VOCAB, mesh)
  train_step = step_lib.make_train_step(c, VOCAB, mesh)
  b, l = int(c.train.batch_size), cfg.context
  batch = step_lib.shard_batch(synthetic_batch(b, l), mesh)
  t0 = time.perf_counter()
  compiled = train_step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  peak = flops.peak_flops_per_device(float(c.train.peak_tflops))
  cpu_times, m = [], None

  def one_step():
    nonlocal state, m
    state, m = compiled(state, batch)
    jax.block_until_ready((state, m))

  times, _ = common.timed(one_step, o["steps"], o["warmup"], cpu_times)
  if ON_CPU and not c.train.peak_tflops:
    # Best matmul before and after the steps: other load on a shared machine only lowers it.
    peak = max(peak, flops.measure_matmul_flops(cached=False))
  fpt = flops.model_flops_per_token(cfg)
  tps = common.stats(common.rates(b * l, times))["median"]
  return common.row(
    f"train step {name} ({b}x{l}, {cfg.dtype})",
    common.rates(b * l, times),
    "tokens/s",
    config=name,
    batch=b,
    context=l,
    dtype=cfg.dtype,
    attn_block=cfg.attn_block,
    params=model_lib.num_params(cfg),
    compile_s=round(compile_s, 2),
    step_s=common.stats(times),
    tokens_per_s=round(tps, 1),
    flops_per_token=fpt,
    model_tflops=round(tps * fpt / 1e12, 4),
    peak_tflops=round(peak / 1e12, 4),
    mfu=round(flops.mfu(tps, fpt, jax.device_count(), peak), 4),
    cpu_s_median=round(common.stats(cpu_times)["median"], 3),
    load_avg_1m=common.load_avg()[0],
    loss=float(m["loss"]),
    devices=jax.device_count(),
    device_kind=jax.devices()[0].device_kind,
    **memory_mib(compiled),
  )


def run(quick: bool = False, **kw) -> dict:
  o = common.options(parser(), QUICK, quick, kw)
  rows = []
  for name in o["configs"].split(","):
    rows.append(bench_one(name, o))
    print(
      f"{name}: {rows[-1]['tokens_per_s']:.1f} tokens/s, compiled in {rows[-1]['compile_s']} s",
      flush=True,
    )
  if ON_CPU:
    # One peak for all rows: the best matmul measured in this process.
    best = max(r["peak_tflops"] for r in rows)
    for r in rows:
      r["peak_tflops"] = best
      r["mfu"] = round(r["model_tflops"] / (best * r["devices"]), 4)
  hdr = (
    "config",
    "batch",
    "context",
    "dtype",
    "compile_s",
    "tokens_per_s",
    "spread",
    "model_tflops",
    "peak_tflops",
    "mfu",
    "memory_mib",
    "load_avg_1m",
  )
  print(" ".join(f"{h:>13}" for h in hdr))
  for r in rows:
    print(" ".join(f"{round(r[h], 3) if isinstance(r[h], float) else r[h]!s:>13}" for h in hdr))
  config, kind, target = MFU_TARGET
  targets = {
    f"{config}_mfu_at_least_{target}_on_{kind}": r["mfu"] >= target
    for r in rows
    if r["config"] == config and kind in r["device_kind"].lower()
  }
  if targets:
    print(f"targets: {targets}")
  return {"bench": "train_step_bench", "rows": rows, "targets": targets}


def main(argv=None):
  args = parser().parse_args(argv)
  common.save("train_step_bench", run(**vars(args)), args.json)


if __name__ == "__main__":
  main()
