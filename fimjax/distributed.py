"""Joining a multi-process run: `jax.distributed.initialize()` when, and only when, needed."""

import os

import jax

# Environments where JAX finds the coordinator by itself.
_AUTO_DETECTED = {
    "SLURM_NTASKS": "SLURM",
    "TPU_WORKER_HOSTNAMES": "TPU pod",
    "MEGASCALE_COORDINATOR_ADDRESS": "multislice TPU",
    "OMPI_COMM_WORLD_SIZE": "Open MPI",
}


def _auto_environment() -> str | None:
  for var, name in _AUTO_DETECTED.items():
    value = os.environ.get(var, "")
    if var == "TPU_WORKER_HOSTNAMES":
      if len([h for h in value.split(",") if h]) > 1:
        return name
    elif value and value != "1":
      return name
  return None


def maybe_initialize(coordinator: str | None, num_processes: int | None,
                     process_id: int | None) -> bool:
  """Initializes jax.distributed for explicit settings or a detected cluster; True if it did."""
  explicit = [coordinator, num_processes, process_id]
  if any(v is not None for v in explicit):
    if not all(v is not None for v in explicit):
      raise ValueError("multi-process runs need all of --coordinator_address, --num_processes "
                       "and --process_id (or FIMJAX_COORDINATOR / FIMJAX_NUM_PROCESSES / "
                       "FIMJAX_PROCESS_ID)")
    if num_processes == 1:
      return False
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return True
  if _auto_environment() is not None:
    jax.distributed.initialize()
    return True
  return False
