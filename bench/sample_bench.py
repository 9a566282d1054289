"""Decode speed of the sampler: tokens/s with and without the KV cache, per config and batch.

  .venv/bin/python bench/sample_bench.py [--configs tiny,small] [--batches 1,16] [--prompt 64]
                                         [--new 128] [--out bench/results/sample_bench.json]

Random-init parameters (speed does not depend on the weights), f32 compute on CPU (bf16 matmuls
are slower there; `--dtype config` keeps the config's). Each row is one `sample` call: a prompt of
`--prompt` tokens, then `--new` greedy tokens (the stop token is banned, so every row decodes
them all). `tok/s` = batch * new / seconds: the median (with spread) of `--reps` timed calls
after a compiling one; prefill is included. Without the cache every step recomputes the whole
(static-length) sequence with `model.apply`, as a sampler without one would (`--kv_cache yes`
leaves that out).
"""

import argparse
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench import common  # noqa: E402  pylint: disable=g-import-not-at-top
from bench.train_step_bench import load_config  # noqa: E402
from fimjax import model as model_lib  # noqa: E402
from fimjax import sample as sample_lib  # noqa: E402

VOCAB = 8192
SP = {
  "pad": VOCAB - 1,
  "bos": VOCAB,
  "eos": VOCAB + 1,
  "mask": VOCAB + 2,
  "mid": VOCAB + 3,
  "eom": VOCAB + 4,
}
QUICK = {"batches": "1,8", "new": 64, "reps": 3, "kv_cache": "yes"}


def parser():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--configs", default="tiny,small")
  p.add_argument("--batches", default="1,16")
  p.add_argument("--prompt", type=int, default=64)
  p.add_argument("--new", type=int, default=128)
  p.add_argument("--reps", type=int, default=2)
  p.add_argument("--dtype", default="float32", help="compute dtype, or 'config'")
  p.add_argument("--kv_cache", default="both", choices=["both", "yes", "no"])
  p.add_argument("--out", default=str(common.RESULTS / "sample_bench.json"))
  return p


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
    out = sample_lib._sample(
      params,
      tokens,
      pos,
      gap,
      length,
      allowed,
      np.int32(SP["eos"]),
      np.zeros(cfg.vocab_size, bool),
      jax.random.key(0),
      cfg=cfg,
      sc=sc,
      mode=sample_lib.GENERATE,
      use_cache=use_cache,
    )
    return jax.block_until_ready(out)

  (compile_s,), _ = common.timed(call, 1)
  seconds, out = common.timed(call, reps)
  assert int(np.asarray(out[1]).min()) == new
  return {
    "seconds": common.stats(seconds),
    "compile_s": compile_s,
    "samples": common.rates(batch * new, seconds),
  }


def run(quick: bool = False, **kw) -> dict:
  o = common.options(parser(), QUICK, quick, kw)
  configs, batches = o["configs"].split(","), [int(b) for b in o["batches"].split(",")]
  caches = {"both": (True, False), "yes": (True,), "no": (False,)}[o["kv_cache"]]
  rows = []
  print(
    f"device: {jax.devices()[0].device_kind}; prompt {o['prompt']}, {o['new']} new tokens, "
    f"greedy; load {os.getloadavg()[0]:.1f}"
  )
  print(
    f"{'config':<8}{'batch':>6}{'cache':>7}{'tok/s':>10}{'spread':>7}{'s/call':>9}{'compile s':>11}"
  )
  for name in configs:
    c = load_config(name)
    if o["dtype"] != "config":
      c.model.dtype = o["dtype"]
    cfg = model_lib.ModelConfig.from_config(c, VOCAB + 5)
    params = model_lib.init_params(cfg, 0)
    for batch in batches:
      for use_cache in caches:
        r = bench_one(cfg, params, batch, o["prompt"], o["new"], use_cache, o["reps"])
        rows.append(
          common.row(
            f"sampler {name}, batch {batch}, {'with' if use_cache else 'without'} KV cache",
            r.pop("samples"),
            "tokens/s",
            config=name,
            batch=batch,
            kv_cache=use_cache,
            prompt=o["prompt"],
            new_tokens=o["new"],
            dtype=cfg.dtype,
            **r,
          )
        )
        x = rows[-1]
        print(
          f"{name:<8}{batch:>6}{'yes' if use_cache else 'no':>7}{x['median']:>10.0f}"
          f"{x['spread']:>7.0%}{x['seconds']['median']:>9.2f}{x['compile_s']:>11.1f}",
          flush=True,
        )
  speedups = {}
  for name in configs:
    for batch in batches:
      on, off = (
        [
          r["median"]
          for r in rows
          if r["config"] == name and r["batch"] == batch and r["kv_cache"] == k
        ]
        for k in (True, False)
      )
      if on and off:
        speedups[f"{name}/{batch}"] = on[0] / off[0]
        print(f"{name} batch {batch}: KV cache speed-up x{on[0] / off[0]:.1f}")
  return {
    "bench": "sample_bench",
    "rows": rows,
    "kv_cache_speedup": speedups,
    "load_avg_1m": os.getloadavg()[0],
  }


def main(argv=None):
  args = parser().parse_args(argv)
  common.save("sample_bench", run(**vars(args)), args.out)


if __name__ == "__main__":
  main()
