"""Will it fit? Compile the train step for a config and device count, without running it.

  python -m fimjax.fit --config configs/large.py --devices 8 --config.mesh.fsdp=8 [--json]

Nothing is allocated: the state is abstract (jax.eval_shape + target shardings) and the step is
lowered and compiled with ShapeDtypeStruct inputs. Prints the parameter count (`params`), model
FLOPs per token (`flops_per_token`) and the per-device memory of the compiled executable from
`memory_analysis()`:

  per_device_bytes = arguments + outputs + temps - aliased

(arguments: this device's shard of the state and batch; outputs: the new state and metrics;
temps: activations, gradients and other scratch; aliased: outputs written into donated
arguments -- the state -- which are counted once). Generated code is not included.

With `--devices N` on a CPU-only machine that has fewer devices, the command re-executes itself
with `XLA_FLAGS=--xla_force_host_platform_device_count=N`. The figures then come from the CPU
compiler: a guide to the sharding's effect, not an exact GPU/TPU number (run it on the target
accelerator for that; the device's memory limit is then shown too).
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

from fimjax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).")
_DEVICES = flags.DEFINE_integer("devices", 0, "Number of devices (0 = all available).",
                                lower_bound=0)
_VOCAB = flags.DEFINE_integer("model_vocab_size", 8197, "Tokenizer vocab + specials.")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")

_REEXEC_FLAG = "--xla_force_host_platform_device_count"


def _maybe_reexec(n: int):
  """On CPU with too few devices, re-run this command with N emulated CPU devices."""
  import jax
  if n <= jax.device_count():
    return
  if jax.devices()[0].platform != "cpu" or _REEXEC_FLAG in os.environ.get("XLA_FLAGS", ""):
    raise SystemExit(f"fit: --devices={n} but only {jax.device_count()} "
                     f"{jax.devices()[0].platform} devices here (JAX_PLATFORMS=cpu emulates)")
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {_REEXEC_FLAG}={n}".strip())
  os.execve(sys.executable, [sys.executable, "-m", "fimjax.fit"] + sys.argv[1:], env)


def analyse(config, model_vocab_size: int, devices) -> dict:
  """Compile the train step on a mesh over `devices`; return sizes and memory per device."""
  import jax
  from fimjax import flops
  from fimjax import model as model_lib
  from fimjax import sharding as shd
  from fimjax import step as step_lib

  mesh = shd.make_mesh(config.mesh, devices)
  cfg = model_lib.ModelConfig.from_config(config, model_vocab_size)
  state = step_lib.abstract_train_state(config, model_vocab_size, mesh)
  b, l = int(config.train.batch_size), cfg.context
  bsh = shd.batch_sharding(mesh)
  batch = {k: jax.ShapeDtypeStruct((b, l), "float32" if k == "loss_mask" else "int32",
                                   sharding=bsh)
           for k in ("tokens", "pos", "gap", "targets", "loss_mask", "segment_ids")}
  t0 = time.perf_counter()
  compiled = step_lib.make_train_step(config, model_vocab_size, mesh).lower(
      state, batch).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  parts = {k: int(getattr(mem, f"{k}_size_in_bytes", 0) or 0)
           for k in ("argument", "output", "temp", "alias", "generated_code")}
  per_device = parts["argument"] + parts["output"] + parts["temp"] - parts["alias"]
  limit = None
  try:
    limit = (devices[0].memory_stats() or {}).get("bytes_limit")
  except Exception:  # CPU devices have no memory stats
    pass
  return {
      "config": config.name, "devices": len(devices), "platform": devices[0].platform,
      "device_kind": devices[0].device_kind, "mesh": dict(mesh.shape),
      "batch_size": b, "microbatches": int(config.train.microbatches), "context": l,
      "dtype": cfg.dtype, "remat": cfg.remat,
      "params": model_lib.num_params(cfg), "flops_per_token": flops.model_flops_per_token(cfg),
      "per_device_bytes": per_device, "memory": parts, "device_bytes_limit": limit,
      "fits": None if limit is None else per_device <= limit, "compile_s": round(compile_s, 2)}


def _gib(n):
  return f"{n / 2**30:.2f} GiB"


def main(argv):
  del argv
  n = _DEVICES.value
  if n:
    _maybe_reexec(n)
  import jax
  devices = jax.devices()[:n] if n else jax.devices()
  try:
    r = analyse(_CONFIG.value, _VOCAB.value, devices)
  except ValueError as e:  # a mesh or batch the devices cannot split (the message names it)
    raise SystemExit(f"error: {str(e).splitlines()[0]}") from None
  if _JSON.value:
    print(json.dumps(r))
    return
  m = r["memory"]
  print(f"config {r['config']}: {r['devices']} x {r['device_kind']} ({r['platform']}), "
        f"mesh {r['mesh']}, batch {r['batch_size']} x {r['context']} "
        f"in {r['microbatches']} microbatch(es), {r['dtype']}, remat={r['remat']}")
  print(f"params           {r['params']:,} ({r['params'] / 1e6:.1f}M)")
  print(f"flops_per_token  {r['flops_per_token']:,} ({r['flops_per_token'] / 1e6:.1f} MFLOP)")
  print(f"per_device_bytes {r['per_device_bytes']:,} ({_gib(r['per_device_bytes'])}) = "
        f"args {_gib(m['argument'])} + outputs {_gib(m['output'])} + temps {_gib(m['temp'])}"
        f" - aliased {_gib(m['alias'])}")
  if r["device_bytes_limit"]:
    print(f"device limit     {_gib(r['device_bytes_limit'])}: "
          f"{'fits' if r['fits'] else 'DOES NOT FIT'}")
  print(f"compile          {r['compile_s']} s")


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main, flags_parser=cli.parse_flags)
