"""Decode speed of the sampler: tokens/s with and without the KV cache, per config and batch.

  .venv/bin/python bench/sample_bench.py [--configs tiny,small] [--batches 1,16] [--prompt 64]
                                         [--new 128] [--out bench/results/sample_bench.json]

Random-init parameters (speed does not depend on the weights), f32 compute on CPU (bf16 matmuls
are slower there; `--dtype config` keeps the config's). Each row is one `sample` call: a prompt of
`--prompt` tokens, then `--new` greedy tokens (the stop token is banned, so every row decodes
them all). `tok/s` = batch * new / seconds of the best of `--reps` timed calls after a compiling
one; prefill is included. Without the cache every step recomputes the whole (static-length)
sequence with `model.apply`, as a sampler without one would.
"""

import argparse
import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.train_step_bench import load_config  # noqa: E402
from fimjax import model as model_lib  # noqa: E402
from fimjax import sample as sample_lib  # noqa: E402

VOCAB = 8192
SP = {"pad": VOCAB - 1, "bos": VOCAB, "eos": VOCAB + 1, "mask": VOCAB + 2, "mid": VOCAB + 3,
      "eom": VOCAB + 4}


def bench_one(cfg, params, batch, prompt, new, use_cache, reps):
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, VOCAB - 1, (batch, prompt)).astype(np.int32)
  pos = np.tile(np.arange(prompt, dtype=np.int32), (batch, 1))
  gap = np.zeros_like(pos)
  length = np.full(batch, prompt, np.int32)
  allowed = sample_lib.allowed_ids(SP, cfg.vocab_size, VOCAB + 5, sample_lib.GENERATE)
  allowed[SP["eos"]] = False  # never stop early: every row decodes `new` tokens
  sc = sample_lib.SampleConfig(temperature=0.0, max_new=new)

  def call():
    out = sample_lib._sample(params, tokens, pos, gap, length, allowed, np.int32(SP["eos"]),
                             jax.random.key(0), cfg=cfg, sc=sc, mode=sample_lib.GENERATE,
                             use_cache=use_cache)
    return jax.block_until_ready(out)
  t0 = time.perf_counter()
  call()
  compile_s = time.perf_counter() - t0
  best = float("inf")
  for _ in range(reps):
    t0 = time.perf_counter()
    out = call()
    best = min(best, time.perf_counter() - t0)
  assert int(np.asarray(out[1]).min()) == new
  return {"tokens_per_s": batch * new / best, "seconds": best, "compile_s": compile_s}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--configs", default="tiny,small")
  p.add_argument("--batches", default="1,16")
  p.add_argument("--prompt", type=int, default=64)
  p.add_argument("--new", type=int, default=128)
  p.add_argument("--reps", type=int, default=2)
  p.add_argument("--dtype", default="float32", help="compute dtype, or 'config'")
  p.add_argument("--out", default=str(REPO / "bench/results/sample_bench.json"))
  args = p.parse_args()
  rows = []
  print(f"device: {jax.devices()[0].device_kind}; prompt {args.prompt}, {args.new} new tokens, "
        f"greedy; load {os.getloadavg()[0]:.1f}")
  print(f"{'config':<8}{'batch':>6}{'cache':>7}{'tok/s':>10}{'s/call':>9}{'compile s':>11}")
  for name in args.configs.split(","):
    c = load_config(name)
    if args.dtype != "config":
      c.model.dtype = args.dtype
    cfg = model_lib.ModelConfig.from_config(c, VOCAB + 5)
    params = model_lib.init_params(cfg, 0)
    for batch in (int(b) for b in args.batches.split(",")):
      for use_cache in (True, False):
        r = bench_one(cfg, params, batch, args.prompt, args.new, use_cache, args.reps)
        rows.append({"config": name, "batch": batch, "kv_cache": use_cache,
                     "prompt": args.prompt, "new_tokens": args.new, "dtype": cfg.dtype, **r})
        print(f"{name:<8}{batch:>6}{'yes' if use_cache else 'no':>7}{r['tokens_per_s']:>10.0f}"
              f"{r['seconds']:>9.2f}{r['compile_s']:>11.1f}", flush=True)
  for name in args.configs.split(","):
    for batch in (int(b) for b in args.batches.split(",")):
      on, off = (next(r["tokens_per_s"] for r in rows if r["config"] == name
                      and r["batch"] == batch and r["kv_cache"] == k) for k in (True, False))
      print(f"{name} batch {batch}: KV cache speed-up x{on / off:.1f}")
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump({"device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
               "load_avg_1m": os.getloadavg()[0], "rows": rows}, f, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
