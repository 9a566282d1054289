"""Train-step speed: tokens/s and MFU per config, compile time separately.

  .venv/bin/python bench/train_step_bench.py --configs tiny,small --batch 8 --steps 5

Runs on the default device(s) with a synthetic packed batch (two segments per row, a FIM-like
gap run). MFU uses `fimjax.flops` (model FLOPs per token over the peak: the accelerator's dense
bf16 peak, or on CPU a measured float32 jitted matmul). On CPU the compute dtype defaults to
float32 (bf16 matmuls are slower there); `--dtype config` keeps the config's.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from fimjax import flops  # noqa: E402
from fimjax import model as model_lib  # noqa: E402
from fimjax import sharding as shd  # noqa: E402
from fimjax import step as step_lib  # noqa: E402

VOCAB = 8197


def load_config(name):
  spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def synthetic_batch(b, l, seed=0):
  rng = np.random.default_rng(seed)
  half = l // 2
  pos = np.concatenate([np.arange(half), np.arange(l - half)])
  seg = np.concatenate([np.ones(half), np.full(l - half, 2)])
  gap = np.zeros(l)
  gap[-l // 8:] = np.arange(1, l // 8 + 1)
  rows = lambda a, dt: np.tile(a.astype(dt), (b, 1))
  return {"tokens": rng.integers(0, 8192, (b, l)).astype(np.int32),
          "targets": rng.integers(0, 8192, (b, l)).astype(np.int32),
          "pos": rows(pos, np.int32), "gap": rows(gap, np.int32),
          "segment_ids": rows(seg, np.int32), "loss_mask": np.ones((b, l), np.float32)}


def bench_one(name, args):
  c = load_config(name)
  if args.batch:
    c.train.batch_size = args.batch
  if args.microbatches:
    c.train.microbatches = args.microbatches
  if args.dtype != "config":
    c.model.dtype = args.dtype if args.dtype != "auto" else (
        "float32" if jax.devices()[0].platform == "cpu" else c.model.dtype)
  if args.attn_block is not None:
    c.model.attn_block = args.attn_block
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
  times, cpu_times = [], []
  for i in range(args.warmup + args.steps):
    t0, c0 = time.perf_counter(), time.process_time()
    state, m = compiled(state, batch)
    jax.block_until_ready((state, m))
    if i >= args.warmup:
      times.append(time.perf_counter() - t0)
      cpu_times.append(time.process_time() - c0)
  if jax.devices()[0].platform == "cpu" and not c.train.peak_tflops:
    # Best matmul before and after the steps: other load on a shared machine only lowers it.
    peak = max(peak, flops.measure_matmul_flops(cached=False))
  med = statistics.median(times)
  tps = b * l / med
  fpt = flops.model_flops_per_token(cfg)
  return {"config": name, "batch": b, "context": l, "dtype": cfg.dtype,
          "attn_block": cfg.attn_block, "params": model_lib.num_params(cfg),
          "compile_s": round(compile_s, 2), "step_s_median": round(med, 4),
          "step_s_min": round(min(times), 4), "step_s_max": round(max(times), 4),
          "tokens_per_s": round(tps, 1), "flops_per_token": fpt,
          "model_tflops": round(tps * fpt / 1e12, 4), "peak_tflops": round(peak / 1e12, 4),
          "mfu": round(flops.mfu(tps, fpt, jax.device_count(), peak), 4),
          "cpu_s_median": round(statistics.median(cpu_times), 3),
          "load_avg_1m": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
          "loss": float(m["loss"]), "devices": jax.device_count(),
          "device_kind": jax.devices()[0].device_kind}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--configs", default="tiny,small")
  p.add_argument("--batch", type=int, default=0, help="rows per step (0 = config's)")
  p.add_argument("--microbatches", type=int, default=0)
  p.add_argument("--dtype", default="auto", help="auto | config | float32 | bfloat16")
  p.add_argument("--attn_block", type=int, default=None)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--json", default=str(REPO / "bench" / "train_step_bench.json"))
  args = p.parse_args()
  rows = [bench_one(name, args) for name in args.configs.split(",")]
  if jax.devices()[0].platform == "cpu":
    # One peak for all rows: the best matmul measured in this process.
    best = max(r["peak_tflops"] for r in rows)
    for r in rows:
      r["peak_tflops"] = best
      r["mfu"] = round(r["model_tflops"] / (best * r["devices"]), 4)
  hdr = ("config", "batch", "context", "dtype", "compile_s", "step_s_median", "step_s_min",
         "step_s_max", "tokens_per_s", "model_tflops", "peak_tflops", "mfu", "load_avg_1m")
  print(" ".join(f"{h:>13}" for h in hdr))
  for r in rows:
    print(" ".join(f"{r[h]!s:>13}" for h in hdr))
  pathlib.Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
