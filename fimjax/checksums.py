"""Checksums of a train state's arrays, saved with each checkpoint and checked on restore.

A restore that reads arrays which differ from what was saved (bits flipped on disk, a torn
write that still parses) is caught here, so `fimjax.checkpoint` can fall back to the previous
step instead of training on damaged weights.
"""

from typing import Any

import jax
from jax import lax
import jax.numpy as jnp


class ChecksumError(ValueError):
  """A checkpoint's arrays read back but differ from the checksums saved with them."""


def _words(x: jax.Array) -> jax.Array:
  """The bits of `x` as uint32, one per element (8-byte elements folded into one)."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  size = x.dtype.itemsize
  if size == 4:
    return lax.bitcast_convert_type(x, jnp.uint32)
  if size < 4:
    return lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * size}")).astype(jnp.uint32)
  halves = lax.bitcast_convert_type(x, jnp.uint32)  # 8 bytes: a trailing axis of 2
  return halves[..., 0] ^ (halves[..., 1] * jnp.uint32(0x9E3779B1))


def _fmix32(h: jax.Array) -> jax.Array:
  """MurmurHash3's finalizer: every input bit flips each output bit with probability ~1/2."""
  h ^= h >> 16
  h *= jnp.uint32(0x85EBCA6B)
  h ^= h >> 13
  h *= jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


@jax.jit
def _digest(x: jax.Array) -> jax.Array:
  """[2] uint32: two position-weighted sums of the bits of `x`.

  Computed where the array is (no second copy to host beside the save's own) in wrapping integer
  arithmetic, so the result is exact whatever the mesh, the sharding or the number of processes
  (a reduction's result is replicated). The first sum weighs element i by the odd 2i+1, so any
  single flipped bit changes it; the second sums a hash of (bits, i), which also catches what
  cancels in the first (two flipped sign bits). One jit per leaf, not per tree: a tree's program
  takes seconds to compile, and leaves share shapes.
  """
  u = _words(x)
  idx, stride = jnp.zeros(u.shape, jnp.uint32), 1
  for d in reversed(range(u.ndim)):
    idx += lax.broadcasted_iota(jnp.uint32, u.shape, d) * jnp.uint32(stride % 2**32)
    stride *= u.shape[d]
  return jnp.stack(
    [
      jnp.sum(u * (2 * idx + 1), dtype=jnp.uint32),
      jnp.sum(_fmix32(u + idx * jnp.uint32(0x9E3779B9)), dtype=jnp.uint32),
    ]
  )


def state_checksums(state: Any) -> dict[str, str]:
  """{array path ("params/head"): 16 hex digits} of a state's arrays; see `_digest`."""
  flat = jax.tree_util.tree_flatten_with_path(state)[0]
  sums = jax.device_get([_digest(leaf) for _, leaf in flat])  # one sync for all
  return {
    jax.tree_util.keystr(path, simple=True, separator="/"): f"{int(a):08x}{int(b):08x}"
    for (path, _), (a, b) in zip(flat, sums)
  }


def verify_checksums(state: Any, saved: dict[str, str] | None, where: str) -> None:
  """Raises ChecksumError naming `where` and the first array whose digest differs from `saved`
  (None: a checkpoint from before checksums, accepted as it reads)."""
  if saved is None:
    return
  now = state_checksums(state)
  for path in sorted(saved.keys() | now.keys()):
    if saved.get(path) != now.get(path):
      raise ChecksumError(
        f"{where}: array {path} differs from the checksum saved with it "
        f"(saved {saved.get(path)}, read {now.get(path)}): damaged on disk"
      )
