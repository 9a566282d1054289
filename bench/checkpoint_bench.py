"""Checkpoint cost for the `small` model on this machine: how long an asynchronous save blocks
the training loop, how long until it is on disk, and how long a restore takes; compared with one
`small` train step.

    python bench/checkpoint_bench.py [--repeat 5] [--batch 8] [--out FILE]

Target (issue): a save blocks the loop for less than one `small` step.
"""

import argparse
import pathlib
import shutil
import tempfile
import time

import common  # pylint: disable=g-bad-import-order  # sets sys.path to the repo

import absl.flags
import jax
import numpy as np

from fimjax import checkpoint as checkpoint_lib
from fimjax import config_base
from fimjax import sharding
from fimjax import step as step_lib
from fimjax.data import cache as cache_lib
from fimjax.data import pipeline

VOCAB = 8197  # 8192 + 5 special ids


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--repeat", type=int, default=5)
  p.add_argument("--batch", type=int, default=8, help="rows per step for the step-time reference")
  p.add_argument("--out", default=None)
  args = p.parse_args()
  absl.flags.FLAGS.mark_as_parsed()

  config = config_base.base_config("small")
  config.model.dtype = "float32"  # the CPU's fast path, as in the step benchmark
  config.train.batch_size = args.batch
  mesh = sharding.make_mesh(config.mesh)
  state = step_lib.create_train_state(config, VOCAB, mesh)
  rng = np.random.default_rng(0)
  docs = cache_lib.Documents.from_lists(
      [list(rng.integers(0, 8191, int(n))) for n in rng.integers(50, 2000, 64)])
  special = {"pad": 8191, "bos": 8192, "eos": 8193, "mask": 8194, "mid": 8195, "eom": 8196}
  data_iter = iter(pipeline.make_train_dataset(config, docs, special))

  train_step = step_lib.make_train_step(config, VOCAB, mesh)
  step_times = []
  for i in range(args.repeat + 1):
    batch = step_lib.shard_batch(next(data_iter), mesh)
    t = time.perf_counter()
    state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics)
    if i:  # the first includes compilation
      step_times.append(time.perf_counter() - t)

  workdir = tempfile.mkdtemp(prefix="fimjax-ckpt-bench-")
  try:
    ckpts = checkpoint_lib.Checkpoints(workdir, keep=2)
    blocking, total = [], []
    for i in range(args.repeat):
      t = time.perf_counter()
      ckpts.save(i + 1, state, data_iter, config=config.to_dict(), meta={})
      blocking.append(time.perf_counter() - t)
      ckpts.wait()
      total.append(time.perf_counter() - t)
    abstract = step_lib.abstract_train_state(config, VOCAB, mesh)
    restores = []
    for _ in range(args.repeat):
      t = time.perf_counter()
      _, restored = ckpts.restore_latest(abstract, data_iter)
      jax.block_until_ready(restored)
      restores.append(time.perf_counter() - t)
    ckpts.close()
    latest = pathlib.Path(str(ckpts.directory)) / str(args.repeat)
    size = sum(f.stat().st_size for f in latest.rglob("*") if f.is_file())
  finally:
    shutil.rmtree(workdir, ignore_errors=True)

  rows = [
      {"what": f"small train step (batch {args.batch}x{config.model.context})",
       **common.stats(step_times)},
      {"what": "save: blocks the loop", **common.stats(blocking)},
      {"what": "save: until on disk", **common.stats(total)},
      {"what": "restore", **common.stats(restores)},
  ]
  ratio = rows[1]["median"] / rows[0]["median"]
  print(common.table(rows, ["what", "median", "min", "max", "spread"]) + " (seconds)")
  print(f"checkpoint size {size / 2**20:.1f} MiB; save blocks for {ratio:.3f} of a step "
        f"(target < 1: {'met' if ratio < 1 else 'NOT met'})")
  path = common.write_json("checkpoint_bench", {
      "machine": common.machine(), "rows": rows, "checkpoint_mib": size / 2**20,
      "save_blocking_over_step": ratio, "target_met": ratio < 1}, args.out)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
