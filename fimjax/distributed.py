"""Joining a multi-process run: `jax.distributed.initialize()` when, and only when, needed."""

import hashlib
import os

import jax
from jax.experimental import multihost_utils
import numpy as np

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


def maybe_initialize(
  coordinator: str | None, num_processes: int | None, process_id: int | None
) -> bool:
  """Initializes jax.distributed for explicit settings or a detected cluster; True if it did."""
  explicit = [coordinator, num_processes, process_id]
  if any(v is not None for v in explicit):
    if not all(v is not None for v in explicit):
      raise ValueError(
        "multi-process runs need all of --coordinator_address, --num_processes "
        "and --process_id (or FIMJAX_COORDINATOR / FIMJAX_NUM_PROCESSES / "
        "FIMJAX_PROCESS_ID)"
      )
    if num_processes == 1:
      return False
    jax.distributed.initialize(
      coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )
    return True
  if _auto_environment() is not None:
    jax.distributed.initialize()
    return True
  return False


def check_same_data(tokenizer: str, num_documents: int, num_tokens: int) -> None:
  """Stops every process, with one line, unless all of them have process 0's token cache.

  On a pod each worker may build its own cache from its own copy of the corpus; a worker with
  other files or another tokenizer would silently train on other token ids. One allgather.
  """
  if jax.process_count() == 1:
    return
  digest = int.from_bytes(hashlib.sha256(tokenizer.encode()).digest()[:7], "little")
  rows = np.asarray(
    multihost_utils.process_allgather(np.array([digest, num_documents, num_tokens], np.int64))
  )
  differ = [i for i in range(len(rows)) if (rows[i] != rows[0]).any()]
  if differ:
    what = [
      name
      for k, name in enumerate(("tokenizer", "documents", "tokens"))
      if (rows[differ[0], k] != rows[0, k])
    ]
    counts = lambda row: ", ".join(f"{n:,}" for n in row[1:])
    raise SystemExit(
      f"process {differ[0]} (of {len(rows)}; {len(differ)} differ) has another token cache "
      f"than process 0: {', '.join(what)} differ ({counts(rows[differ[0]])}"
      f" vs {counts(rows[0])} documents, tokens): build the cache "
      "once and share it (data.cache_dir on a shared disk or bucket), or give every worker "
      "the same corpus files"
    )
