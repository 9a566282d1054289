"""`fimjax.fit --topology`: the real train step compiled for TPU slices on this CPU machine.

Each compile runs in its own process with JAX_PLATFORMS=cpu, so libtpu never loads into the test
process (other tests keep their CPU backend). The persistent compilation cache cannot help here
(an executable for compile-only devices cannot be loaded back), so each costs 2-3 minutes of a
core; the two run at once.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from fimjax import aot
from tests.conftest import REPO

HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(
  not HAS_LIBTPU,
  reason="libtpu not installed (pip install libtpu, or the dev extra): no compile-only TPU devices",
)


def _fit(*args, timeout=900):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
    [sys.executable, "-m", "fimjax.fit", *map(str, args)],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _error_line(proc) -> str:
  lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
  assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-2000:]
  return lines[0]


# (config, slice, flags): small on v5e, and tiny sharded over v5p chips (FSDP). `large` on v5p
# compiles the same code path at 2.5 more core-minutes: its figures are bench/aot_table.py's.
TARGETS = (("small", "v5e:2x2", ()), ("tiny", "v5p:2x2x1", ("--config.mesh.fsdp=4",)))


@needs_libtpu
@pytest.mark.timeout(900)
def test_compiles_for_tpu_slices_and_fits():
  """Both compiles at once (one process each), so the test takes the longer one's time."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "fimjax.fit",
        "--config",
        str(REPO / f"configs/{config}.py"),
        "--topology",
        topology,
        "--json",
        "--check",
        *flags,
      ],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for config, topology, flags in TARGETS
  ]
  outs = [p.communicate(timeout=880) for p in procs]
  for (config, topology, _), p, (out, err) in zip(TARGETS, procs, outs):
    assert p.returncode == 0, err[-3000:]
    r = json.loads(out.strip().splitlines()[-1])
    assert r["platform"] == "tpu" and r["devices"] == 4 and r["topology"] == topology
    assert r["attention"] == "splash"  # "auto" picks the Pallas kernel on TPU
    assert r["fits"] is True and r["per_device_bytes"] < r["device_bytes_limit"]
    s = r["split"]
    assert sum(s.values()) == r["per_device_bytes"]
    assert 0 <= s["optimizer"] - 2 * s["params"] < 64  # Adam mu, nu (fp32) + int32 counters
    if config == "tiny":  # fp32 params, every one sharded 4 ways: 4 bytes / 4 devices each
      assert r["mesh"]["fsdp"] == 4 and s["params"] == r["params"]
    else:  # tiny's fixed costs dwarf its state, so only a real model tests the estimate
      assert abs(r["per_device_bytes"] / r["estimate_bytes"] - 1) < 0.25, (
        config,
        r["per_device_bytes"],
        r["estimate_bytes"],
      )
    assert 0 < r["est_step_s"] and 0 < r["mfu"] <= 1


def test_without_libtpu_says_how_to_get_it(monkeypatch):
  real = importlib.util.find_spec
  monkeypatch.setattr(
    importlib.util, "find_spec", lambda name, *a: None if name == "libtpu" else real(name, *a)
  )
  with pytest.raises(ValueError, match=r"^--topology=v5e:2x2 needs libtpu .*pip install libtpu"):
    aot.target_devices("v5e:2x2")


@needs_libtpu
def test_a_bad_topology_is_one_line():
  line = _error_line(_fit("--config", REPO / "configs/tiny.py", "--topology", "v5e:3x7"))
  assert "--topology=v5e:3x7: not a slice libtpu knows" in line and "v5e:2x2" in line


def test_a_gpu_target_without_the_cuda_plugin_is_one_line():
  if any(importlib.util.find_spec(m) for m in ("jax_cuda12_plugin", "jax_cuda13_plugin")):
    pytest.skip("the CUDA plugin is installed here")
  line = _error_line(_fit("--config", REPO / "configs/tiny.py", "--topology", "h100"))
  assert "--topology=h100 needs the CUDA plugin" in line and "pip install" in line


def test_estimate_counts_state_grads_and_activations():
  from fimjax import config_base
  from fimjax import model as model_lib

  c = config_base.load_config_file(REPO / "configs/small.py")
  cfg = model_lib.ModelConfig.from_config(c, 8197)
  mesh = {"data": 4, "fsdp": 1, "tensor": 1}
  e = aot.estimate_bytes(c, cfg, mesh, state_bytes=300, params_bytes=100)
  assert e["state"] == 300 and e["grads"] == 200  # 4 microbatches: running sum + one
  assert e["total"] == 300 + 200 + e["activations"]
  c.model.remat = True
  remat = aot.estimate_bytes(c, model_lib.ModelConfig.from_config(c, 8197), mesh, 300, 100)
  assert remat["activations"] < e["activations"] / 2
