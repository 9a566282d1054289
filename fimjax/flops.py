"""Model FLOPs per token, peak FLOP/s per device, and MFU.

Training FLOPs per token (forward + backward = 3x forward, 2 FLOPs per multiply-add):

  6 * N_matmul + 6 * L * ctx * d

N_matmul = L * (4 d^2 + 2 * mlp_ratio * d^2) + d * V is the parameters used in matmuls (attention
projections, MLP, head over the padded vocab V; embedding lookups are gathers, not matmuls).
Attention scores QK^T and the weighted sum PV cost 2 * 2 * ctx * d per token and layer forward,
12 * L * ctx * d with the backward pass; with causal masking only half of it is useful, so it is
counted once: 6 * L * ctx * d. Elementwise work (norms, softmax, RoPE) is not counted.
"""

import time

import jax
import jax.numpy as jnp

# Dense (non-sparse) bf16 peak TFLOP/s per chip, by substring of `device.device_kind` (lower
# case); first match wins, so longer names come first.
PEAK_BF16_TFLOPS = (
  ("gh200", 989.0),
  ("h200", 989.0),
  ("h100", 989.0),
  ("h800", 989.0),
  ("b200", 2250.0),
  ("a100", 312.0),
  ("a800", 312.0),
  ("l40s", 362.0),
  ("l4", 121.0),
  ("a10g", 70.0),
  ("v100", 125.0),
  ("t4", 65.0),
  ("tpu v6 lite", 918.0),
  ("tpu v6e", 918.0),
  ("tpu v5 lite", 197.0),
  ("tpu v5e", 197.0),
  ("tpu v5p", 459.0),
  ("tpu v5", 459.0),
  ("tpu v4", 275.0),
  ("tpu v3", 123.0),
)

_MEASURED: dict[str, float] = {}


def matmul_flops_per_token(model_cfg) -> int:
  """N_matmul: parameters that take part in a matmul for every token."""
  d, l, r = model_cfg.d_model, model_cfg.num_layers, model_cfg.mlp_ratio
  return l * (4 * d * d + 2 * r * d * d) + d * model_cfg.vocab_size


def model_flops_per_token(model_cfg) -> int:
  """Training FLOPs per token: 6 * N_matmul + 6 * L * ctx * d (see module docstring)."""
  attn = 6 * model_cfg.num_layers * model_cfg.context * model_cfg.d_model
  return 6 * matmul_flops_per_token(model_cfg) + attn


def table_peak_flops(device_kind: str) -> float | None:
  kind = device_kind.lower()
  for key, tflops in PEAK_BF16_TFLOPS:
    if key in kind:
      return tflops * 1e12
  return None


def measure_matmul_flops(
  device=None, n: int = 2048, dtype=None, repeats: int = 7, cached: bool = True
) -> float:
  """Measured FLOP/s of a jitted n x n matmul (best of `repeats`); cached per process.

  The best, not the median: on a shared machine other processes only ever slow it down.
  """
  device = device or jax.devices()[0]
  dtype = dtype or (jnp.float32 if device.platform == "cpu" else jnp.bfloat16)
  key = f"{device.device_kind}/{device.platform}/{n}/{jnp.dtype(dtype).name}"
  if key not in _MEASURED or not cached:
    a = jax.device_put(jnp.ones((n, n), dtype), device)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      f(a, a).block_until_ready()
      times.append(time.perf_counter() - t0)
    _MEASURED[key] = max(2 * n**3 / min(times), 0.0 if cached else _MEASURED.get(key, 0.0))
  return _MEASURED[key]


def peak_flops_per_device(override_tflops: float = 0.0, device=None) -> float:
  """FLOP/s per device: the override, else the table's dense bf16 peak, else measured.

  On CPU (and unknown accelerators) the peak is a measured jitted matmul (f32 on CPU, bf16
  elsewhere), so MFU there means "fraction of what this machine's matmul reaches".
  """
  if override_tflops and override_tflops > 0:
    return float(override_tflops) * 1e12
  device = device or jax.devices()[0]
  if device.platform != "cpu":
    peak = table_peak_flops(device.device_kind)
    if peak:
      return peak
  return measure_matmul_flops(device)


def mfu(
  tokens_per_second: float, flops_per_token: float, num_devices: int, peak_per_device: float
) -> float:
  """Model FLOPs utilisation: achieved model FLOP/s over the devices' total peak."""
  return tokens_per_second * flops_per_token / (num_devices * peak_per_device)
