"""Run by sharding_test.py in a subprocess with 8 emulated CPU devices (flag set before jax).

Trains a tiny float32 model two steps on several (data, fsdp, tensor) meshes and prints, as JSON,
each layout's largest deviation from the 1-device run: losses and updated parameters.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
)

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step_test import VOCAB, micro_config, synthetic_batch  # noqa: E402

from fimjax import sharding as shd  # noqa: E402
from fimjax import step as step_lib  # noqa: E402

# (data, fsdp, tensor), microbatches, whether to initialise on the mesh (else: copy the
# 1-device init there; initialising costs a compile, and the test must stay fast).
LAYOUTS = [
  ((8, 1, 1), 1, False),
  ((1, 8, 1), 1, False),
  ((2, 2, 2), 1, True),
  ((1, 1, 2), 1, False),
  ((2, 2, 2), 2, False),
]


def run(shape, microbatches, init_on_mesh=True, init_state=None):
  c = micro_config(batch_size=8, microbatches=microbatches)
  c.model.num_layers, c.model.num_heads = 1, 4
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = shape
  mesh = shd.make_mesh(c.mesh, jax.devices()[: int(np.prod(shape))])
  if init_on_mesh:
    state = step_lib.create_train_state(c, VOCAB, mesh)
  else:
    state = jax.device_put(init_state, step_lib.state_shardings(c, VOCAB, mesh))
  init = jax.tree.map(np.asarray, state)
  train_step = step_lib.make_train_step(c, VOCAB, mesh)
  losses = []
  for seed in (0, 1):
    state, m = train_step(state, step_lib.shard_batch(synthetic_batch(8, 32, seed), mesh))
    losses.append(float(m["loss"]))
  specs = {k: str(v.sharding.spec) for k, v in state["params"]["block_0"].items()}
  return losses, jax.tree.map(np.asarray, state["params"]), specs, init


def main():
  assert jax.device_count() == 8, jax.devices()
  ref_losses, ref_params, _, init = run((1, 1, 1), 1)
  out = {}
  for shape, mb, init_on_mesh in LAYOUTS:
    losses, params, specs, _ = run(shape, mb, init_on_mesh, init)
    diffs = jax.tree.leaves(
      jax.tree.map(lambda a, b: float(np.abs(a - b).max()), params, ref_params)
    )
    out[f"{shape}/mb{mb}"] = {
      "loss_rel": max(abs(a - b) / abs(b) for a, b in zip(losses, ref_losses)),
      "param_abs": max(diffs),
      "losses": losses,
      "ref_losses": ref_losses,
      "specs": specs,
    }
  print("RESULT " + json.dumps(out))


if __name__ == "__main__":
  main()
