"""FLOP accounting and peak lookup."""

import jax
import pytest

from fimjax import config_base
from fimjax import flops
from fimjax import model as model_lib


def test_small_flops_per_token_formula():
  cfg = model_lib.ModelConfig.from_config(config_base.base_config("small"), 8197)
  d, l, ctx, v = 384, 8, 1024, 8320
  n_matmul = 12 * l * d * d + d * v
  assert flops.matmul_flops_per_token(cfg) == n_matmul
  assert flops.model_flops_per_token(cfg) == 6 * n_matmul + 6 * l * ctx * d
  assert flops.model_flops_per_token(cfg) == 122_978_304  # ~123M FLOPs per token


@pytest.mark.parametrize(
  "kind,tflops",
  [
    ("NVIDIA H100 80GB HBM3", 989),
    ("NVIDIA H200", 989),
    ("NVIDIA A100-SXM4-40GB", 312),
    ("NVIDIA L4", 121),
    ("TPU v4", 275),
    ("TPU v5 lite", 197),
    ("TPU v5p", 459),
    ("TPU v6 lite", 918),
  ],
)
def test_peak_table(kind, tflops):
  assert flops.table_peak_flops(kind) == tflops * 1e12


def test_peak_override_and_unknown():
  assert flops.peak_flops_per_device(123.0) == 123e12
  assert flops.table_peak_flops("Some New Chip") is None


def test_cpu_peak_is_measured_and_cached():
  if jax.devices()[0].platform != "cpu":
    pytest.skip("CPU-only check")
  p1 = flops.measure_matmul_flops(n=256, repeats=3)
  p2 = flops.measure_matmul_flops(n=256, repeats=3)
  assert p1 == p2 > 1e8  # cached, and a plausible FLOP/s


def test_mfu():
  assert flops.mfu(1000.0, 1e8, 2, 1e11) == pytest.approx(0.5)


def test_fit_reports_memory_without_running():
  from fimjax import fit

  c = config_base.base_config("tiny")
  c.model.d_model, c.model.num_layers, c.model.num_heads, c.model.context = 32, 1, 2, 32
  c.train.batch_size, c.train.microbatches, c.model.remat = 4, 2, True  # bf16 by default
  r = fit.analyse(c, 8197, jax.devices()[:1])
  cfg = model_lib.ModelConfig.from_config(c, 8197)
  assert r["params"] == model_lib.num_params(cfg)
  assert r["flops_per_token"] == flops.model_flops_per_token(cfg)
  m = r["memory"]
  assert r["per_device_bytes"] == m["argument"] + m["output"] + m["temp"] - m["alias"]
  assert m["argument"] >= 3 * 4 * r["params"]  # params + two Adam moments, float32
