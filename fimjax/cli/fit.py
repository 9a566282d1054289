"""Will it fit? Compile the train step for a config and devices, without running it.

  python -m fimjax.fit --config configs/large.py --devices 8 --config.mesh.fsdp=8 [--json]
  JAX_PLATFORMS=cpu python -m fimjax.fit --config configs/small.py --topology v5e:2x2

Nothing is allocated: the state is abstract (jax.eval_shape + target shardings) and the step is
lowered and compiled with ShapeDtypeStruct inputs (fimjax/aot.py). Prints the parameter count
(`params`), model FLOPs per token (`flops_per_token`) and the per-device memory of the compiled
executable from `memory_analysis()`:

  per_device_bytes = arguments + outputs + temps - aliased
                   = params + optimizer + batch + temporaries (activations, gradients, scratch)

(arguments: this device's shard of the state and batch; aliased: outputs written into donated
arguments -- the state -- counted once), next to the analytic estimate (`aot.estimate_bytes`).

`--topology` compiles for a slice that is not here (TPU, e.g. v5e:2x2, v4:2x2x1, v5p:2x2x1,
v6e:2x2, with libtpu installed; or h100[:N] with the CUDA plugin) on a CPU-only machine: it adds
the chip's HBM (fits or not), XLA's estimated step time and the MFU that implies.

With `--devices N` on a CPU-only machine that has fewer devices, the command re-executes itself
with `XLA_FLAGS=--xla_force_host_platform_device_count=N`. The figures then come from the CPU
compiler: a guide to the sharding's effect, not an exact GPU/TPU number.
"""

import json
import os
import sys

from absl import flags
import jax
from ml_collections import config_flags

from fimjax import aot
from fimjax.cli import common

PROG = "python -m fimjax.fit"
_REEXEC_FLAG = "--xla_force_host_platform_device_count"


def define(fv: flags.FlagValues) -> None:
  config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", flag_values=fv)
  flags.DEFINE_integer(
    "devices", 0, "Number of devices (0 = all available).", lower_bound=0, flag_values=fv
  )
  common.number(fv, "model_vocab_size", 8197, "Tokenizer vocab + specials.", low=1)
  flags.DEFINE_string(
    "topology",
    "",
    "Compile for this slice instead of local devices: a TPU topology "
    "(v5e:2x2, v4:2x2x1, v5p:2x2x1, v6e:2x2, ...; needs libtpu) or h100[:N] (CUDA plugin).",
    flag_values=fv,
  )
  flags.DEFINE_bool(
    "check",
    False,
    "Exit with status 3 when it does not fit the devices' "
    "memory (launch/tpu_pod.sh runs this before creating a slice).",
    flag_values=fv,
  )
  flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.", flag_values=fv)


def _maybe_reexec(n: int):
  """On CPU with too few devices, re-run this command with N emulated CPU devices."""
  if n <= jax.device_count():
    return
  if jax.devices()[0].platform != "cpu" or _REEXEC_FLAG in os.environ.get("XLA_FLAGS", ""):
    raise SystemExit(
      f"fit: --devices={n} but only {jax.device_count()} "
      f"{jax.devices()[0].platform} devices here (JAX_PLATFORMS=cpu emulates)"
    )
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {_REEXEC_FLAG}={n}".strip(),
  )
  os.execve(sys.executable, [sys.executable, "-m", "fimjax.fit"] + sys.argv[1:], env)


def _gib(n):
  return f"{n / 2**30:.2f} GiB"


def _target(topology: str):
  """Compile-only devices of `--topology` (CPU host only, so nothing probes for a TPU)."""
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-4")  # quiets libtpu's host probing
  # No TPU is used: let several compiles run at once (libtpu otherwise holds a lockfile).
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  if not os.environ.get("JAX_PLATFORMS"):
    jax.config.update("jax_platforms", "cpu")  # before any backend starts (jax is imported)
  return aot.target_devices(topology)


def body(fv: flags.FlagValues, args: list[str]) -> int:
  del args
  n = fv.devices
  try:
    if fv.topology:
      devices = _target(fv.topology)
    else:
      if n:
        _maybe_reexec(n)
      devices = jax.devices()[:n] if n else jax.devices()
    r = aot.analyse(fv.config, fv.model_vocab_size, devices)
  except ValueError as e:  # a topology, mesh or batch the devices cannot take (named in it)
    common.error(common.first_line(e))
    return 1
  if fv.topology:
    r["topology"] = fv.topology
  if fv.json:
    print(json.dumps(r))
  else:
    _print(r)
  return 3 if fv.check and r["fits"] is False else 0


def _print(r: dict):
  m, s = r["memory"], r["split"]
  print(
    f"config {r['config']}: {r['devices']} x {r['device_kind']} ({r['platform']}), "
    f"mesh {r['mesh']}, batch {r['batch_size']} x {r['context']} "
    f"in {r['microbatches']} microbatch(es), {r['dtype']}, remat={r['remat']}, "
    f"attention={r['attention']}"
  )
  print(f"params           {r['params']:,} ({r['params'] / 1e6:.1f}M)")
  print(f"flops_per_token  {r['flops_per_token']:,} ({r['flops_per_token'] / 1e6:.1f} MFLOP)")
  print(
    f"per_device_bytes {r['per_device_bytes']:,} ({_gib(r['per_device_bytes'])}) = "
    f"args {_gib(m['argument'])} + outputs {_gib(m['output'])} + temps {_gib(m['temp'])}"
    f" - aliased {_gib(m['alias'])}"
  )
  print(
    f"  = params {_gib(s['params'])} + optimizer {_gib(s['optimizer'])} + batch "
    f"{_gib(s['batch'])} + temporaries {_gib(s['temporaries'])}; "
    f"analytic estimate {_gib(r['estimate_bytes'])}"
  )
  if r["device_bytes_limit"]:
    print(
      f"device limit     {_gib(r['device_bytes_limit'])}: {'fits' if r['fits'] else 'DOES NOT FIT'}"
    )
  print(f"compile          {r['compile_s']} s")
  if r.get("est_method") and not r.get("est_step_s"):
    print(f"est. step time   {r['est_method']}")
  if r.get("est_step_s"):
    print(
      f"est. step time   {r['est_step_s'] * 1e3:.1f} ms ({r['est_method']}; no "
      f"communication), MFU ~{r['mfu']:.1%}"
    )


def main(argv=None) -> int:
  return common.run(PROG, __doc__, define, body, argv, required=("config",))
