"""Device mesh from the config, and the logical-axis -> mesh-axis rule table.

Mesh axes: `data` (pure data parallel: params replicated), `fsdp` (batch split *and* params
sharded along their `embed` dimension, gathered per layer by XLA), `tensor` (heads / MLP hidden /
vocab split). Sizes come from `config.mesh`; one of them may be -1 (= the rest of the devices).
"""

import math

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis name -> mesh axis (or tuple of axes, or None = replicated).
RULES = {
  "batch": ("data", "fsdp"),
  "embed": "fsdp",
  "heads": "tensor",
  "mlp": "tensor",
  "vocab": "tensor",
}


def mesh_shape(mesh_config, num_devices: int) -> tuple[int, int, int]:
  """Resolve the (data, fsdp, tensor) sizes; one -1 takes the remaining devices."""
  sizes = [int(mesh_config[a]) for a in MESH_AXES]
  desc = ", ".join(f"{a}={s}" for a, s in zip(MESH_AXES, sizes))
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"mesh sizes ({desc}): at most one may be -1, the rest positive")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f"mesh sizes ({desc}) do not divide the {num_devices} devices")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(
      f"mesh sizes ({desc}) multiply to {math.prod(sizes)}, but there are {num_devices} devices"
    )
  return tuple(sizes)


def make_mesh(mesh_config, devices=None) -> jax.sharding.Mesh:
  """Mesh with axes ("data", "fsdp", "tensor") over `devices` (default: all devices)."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_config, len(devices))
  # Auto axes: Explicit ones fail on the embedding gather in this JAX version.
  return jax.make_mesh(
    shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices
  )


def logical_to_spec(logical) -> P:
  """PartitionSpec of logical names -> PartitionSpec of mesh axes (by `RULES`)."""
  return P(*(RULES.get(name) if name is not None else None for name in logical))


def logical_to_sharding(logical, mesh) -> NamedSharding:
  return NamedSharding(mesh, logical_to_spec(logical))


def tree_shardings(logical_tree, mesh):
  """Map a tree of logical PartitionSpecs to NamedShardings on `mesh`."""
  return jax.tree.map(
    lambda s: logical_to_sharding(s, mesh), logical_tree, is_leaf=lambda x: isinstance(x, P)
  )


def batch_sharding(mesh) -> NamedSharding:
  """Rows (axis 0) over ("data", "fsdp"); other axes replicated (any rank)."""
  return NamedSharding(mesh, P(RULES["batch"]))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def constrain(x, logical):
  """with_sharding_constraint by logical names when a mesh is set (`jax.set_mesh`), else x."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or tuple(mesh.axis_names) != MESH_AXES:
    return x
  spec = logical_to_spec(logical)
  # Skip axes that do not divide the dimension (e.g. tiny test shapes).
  fixed = []
  for dim, ax in zip(x.shape, spec):
    axes = (ax,) if isinstance(ax, str) else (ax or ())
    size = math.prod(mesh.shape[a] for a in axes)
    fixed.append(ax if dim % size == 0 else None)
  return jax.lax.with_sharding_constraint(x, P(*fixed))


def shard_batch(batch: dict, mesh) -> dict:
  """Process-local numpy rows -> global jax.Arrays split over ("data", "fsdp").

  Every process passes its own `B_local` rows; the global batch is `B_local * process_count`.
  """
  sharding = batch_sharding(mesh)
  return {
    k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
  }
