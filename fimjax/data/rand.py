"""Counter-based randomness: every draw is a hash of (seed, epoch, index, stream), so an example
is a pure function of where it sits in the stream (exact resume, no two hosts alike)."""

import numpy as np

# Streams: independent uniforms per (seed, epoch, index).
S_OFFSET, S_FIM, S_SPM, S_G, S_M, S_ROWS, S_KIND, S_PICK, S_LINES = range(1, 10)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
  """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
  x = x ^ (x >> np.uint64(30))
  x = x * _M1
  x = x ^ (x >> np.uint64(27))
  x = x * _M2
  return x ^ (x >> np.uint64(31))


def hash_u64(seed: int, epoch: int | np.ndarray, index: np.ndarray, stream: int) -> np.ndarray:
  """A uint64 hash per element of (seed, epoch, index, stream); epoch may be an array."""
  index = np.atleast_1d(np.asarray(index)).astype(np.uint64)
  epoch = np.asarray(epoch).astype(np.uint64)
  key = np.array([(seed + stream * int(_GOLDEN)) % 2**64], np.uint64)
  with np.errstate(over="ignore"):
    return _mix(_mix(_mix(key) + epoch * _GOLDEN + np.uint64(1)) ^ (index * _GOLDEN + np.uint64(2)))


def uniform(h: np.ndarray) -> np.ndarray:
  """Floats in [0, 1) from uint64 hashes."""
  return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def below(h: np.ndarray, n) -> np.ndarray:
  """Uniform ints in [0, n) (n >= 1, broadcast) from uint64 hashes."""
  return np.minimum((uniform(h) * n).astype(np.int64), np.asarray(n, np.int64) - 1)
