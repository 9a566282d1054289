"""Mesh construction, rule table, and 1-device equivalence of sharded layouts (8 CPU devices)."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import ml_collections
import pytest
from jax.sharding import PartitionSpec as P

from fimjax import sharding as shd

HERE = pathlib.Path(__file__).resolve().parent


def mesh_cfg(data, fsdp, tensor):
  return ml_collections.ConfigDict({"data": data, "fsdp": fsdp, "tensor": tensor})


def test_mesh_shape_resolves_minus_one():
  assert shd.mesh_shape(mesh_cfg(-1, 1, 1), 8) == (8, 1, 1)
  assert shd.mesh_shape(mesh_cfg(2, -1, 2), 8) == (2, 2, 2)
  assert shd.mesh_shape(mesh_cfg(1, 1, -1), 4) == (1, 1, 4)


@pytest.mark.parametrize(
  "sizes,msg",
  [
    ((2, 2, 1), "multiply to 4, but there are 8 devices"),
    ((3, -1, 1), "do not divide the 8 devices"),
    ((-1, -1, 1), "at most one may be -1"),
  ],
)
def test_mesh_shape_errors(sizes, msg):
  with pytest.raises(ValueError, match=msg):
    shd.mesh_shape(mesh_cfg(*sizes), 8)


def test_make_mesh_default_and_rules():
  mesh = shd.make_mesh(mesh_cfg(-1, 1, 1))
  assert mesh.axis_names == ("data", "fsdp", "tensor")
  assert mesh.devices.size == jax.device_count()
  assert shd.logical_to_spec(P("embed", "mlp")) == P("fsdp", "tensor")
  assert shd.logical_to_spec(P("vocab", None)) == P("tensor", None)
  assert shd.batch_sharding(mesh).spec == P(("data", "fsdp"))


def test_layouts_match_one_device():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
    [sys.executable, str(HERE / "sharding_worker.py")],
    env=env,
    capture_output=True,
    text=True,
    timeout=240,
    cwd=HERE.parent,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  results = json.loads(line[len("RESULT ") :])
  for layout, r in results.items():
    assert r["loss_rel"] < 2e-5, (layout, r)
    assert r["param_abs"] < 1e-5, (layout, r)
  specs = results["(2, 2, 2)/mb1"]["specs"]
  assert specs["w_up"] == str(P("fsdp", "tensor")) and specs["wo"] == str(P("tensor", None, "fsdp"))
