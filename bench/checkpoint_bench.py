"""Checkpoint cost for the `small` model on this machine: how long an asynchronous save blocks
the training loop, how long until it is on disk, and how long a restore takes; compared with one
`small` train step.

    python bench/checkpoint_bench.py [--repeat 5] [--batch 8] [--step_s 0] [--out FILE]

Each figure is the median (with spread) of `--repeat` runs. `--step_s` gives the step time to
compare with (e.g. from the train-step bench) instead of timing steps here.
Target (issue): a save blocks the loop for less than one `small` step.
"""

import argparse
import pathlib
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench import common  # noqa: E402  pylint: disable=g-import-not-at-top
from fimjax import checkpoint as checkpoint_lib  # noqa: E402
from fimjax import config_base  # noqa: E402
from fimjax import sharding  # noqa: E402
from fimjax import step as step_lib  # noqa: E402
from fimjax.data import cache as cache_lib  # noqa: E402
from fimjax.data import pipeline  # noqa: E402

VOCAB = 8197  # 8192 + 5 special ids
QUICK = {"repeat": 5, "batch": 4}


def parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--repeat", type=int, default=5)
  p.add_argument("--batch", type=int, default=8, help="rows per step for the step-time reference")
  p.add_argument(
    "--step_s",
    type=float,
    default=0.0,
    help="a measured small step's seconds to compare with (0 = time steps here)",
  )
  p.add_argument("--out", default=None)
  return p


def step_times(config, mesh, state, data_iter, repeat):
  """Seconds of `repeat` train steps after a compiling one, and the state after them."""
  train_step = step_lib.make_train_step(config, VOCAB, mesh)

  def one():
    nonlocal state
    state, metrics = train_step(state, step_lib.shard_batch(next(data_iter), mesh))
    jax.block_until_ready(metrics)

  times, _ = common.timed(one, repeat, warmup=1)
  return times, state


def randomized(state):
  """`state` with noise added to its floats: as incompressible as a trained state (a fresh one's
  optimizer moments are zeros, which a checkpoint stores in far fewer bytes)."""
  leaves, tree = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(0), len(leaves))
  return tree.unflatten(
    [
      x + jax.random.normal(k, x.shape, x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
      for x, k in zip(leaves, keys)
    ]
  )


def run(quick: bool = False, **kw) -> dict:
  o = common.options(parser(), QUICK, quick, kw)
  config = config_base.base_config("small")
  config.model.dtype = "float32"  # the CPU's fast path, as in the step benchmark
  config.train.batch_size = o["batch"]
  mesh = sharding.make_mesh(config.mesh)
  state = step_lib.create_train_state(config, VOCAB, mesh)
  rng = np.random.default_rng(0)
  docs = cache_lib.Documents.from_lists(
    [list(rng.integers(0, 8191, int(n))) for n in rng.integers(50, 2000, 64)]
  )
  special = {"pad": 8191, "bos": 8192, "eos": 8193, "mask": 8194, "mid": 8195, "eom": 8196}
  data_iter = iter(pipeline.make_train_dataset(config, docs, special))
  if o["step_s"]:
    steps, step_what = [o["step_s"]], "small train step (given)"
    state = randomized(state)
  else:
    steps, state = step_times(config, mesh, state, data_iter, o["repeat"])
    step_what = f"small train step (batch {o['batch']}x{config.model.context})"

  workdir = tempfile.mkdtemp(prefix="fimjax-ckpt-bench-")
  try:
    ckpts = checkpoint_lib.Checkpoints(workdir, keep=2)
    blocking, total = [], []
    for i in range(o["repeat"]):
      t = time.perf_counter()
      ckpts.save(i + 1, state, data_iter, config=config.to_dict(), meta={})
      blocking.append(time.perf_counter() - t)
      ckpts.wait()
      total.append(time.perf_counter() - t)
    abstract = step_lib.abstract_train_state(config, VOCAB, mesh)
    restores, _ = common.timed(
      lambda: jax.block_until_ready(ckpts.restore_latest(abstract, data_iter)[1]), o["repeat"]
    )
    ckpts.close()
    latest = pathlib.Path(str(ckpts.directory)) / str(o["repeat"])
    size = sum(f.stat().st_size for f in latest.rglob("*") if f.is_file())
  finally:
    shutil.rmtree(workdir, ignore_errors=True)

  rows = [
    common.row(step_what, steps, "s"),
    common.row("checkpoint save (small): blocks the loop", blocking, "s"),
    common.row("checkpoint save (small): until on disk", total, "s"),
    common.row("checkpoint restore (small)", restores, "s"),
  ]
  ratio = rows[1]["of_step"] = rows[1]["median"] / rows[0]["median"]
  print(common.table(rows, ["what", "median", "min", "max", "spread"]) + " (seconds)")
  print(
    f"checkpoint size {size / 2**20:.1f} MiB; save blocks for {ratio:.3f} of a step "
    f"(target < 1: {'met' if ratio < 1 else 'NOT met'})"
  )
  return {
    "bench": "checkpoint_bench",
    "rows": rows if not o["step_s"] else rows[1:],
    "step_s": rows[0],
    "checkpoint_mib": size / 2**20,
    "save_blocking_over_step": ratio,
    "targets": {"save_blocks_less_than_a_step": ratio < 1},
  }


def main(argv=None):
  args = parser().parse_args(argv)
  common.save("checkpoint_bench", run(**vars(args)), args.out)


if __name__ == "__main__":
  main()
