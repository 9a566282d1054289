"""Compile the train step ahead of time, for local devices or a slice that is not here.

`analyse` lowers and compiles the real train step (`step.make_train_step` on the abstract
state of `step.abstract_train_state`: nothing is allocated) for a list of devices. Those can be
compile-only devices of a target (`target_devices`):

  - a TPU slice, e.g. `v5e:2x2`, `v4:2x2x1`, `v5p:2x2x1`, `v6e:2x2` (any name the topology API
    of libtpu accepts; `pip install libtpu`, in the `dev` extra), compiled on a CPU-only machine;
  - `h100` or `h100:N` (N GPUs of one host), with the CUDA plugin installed (`pip install
    jax-cuda12-plugin jax-cuda12-pjrt`, no GPU needed) and the H100 target description below.

Memory per device comes from XLA's `memory_analysis()`; `estimate_bytes` is the analytic figure
it is checked against. The step time is XLA's `optimal_seconds` when its cost model gives one
(plus the splash kernel's flops at peak: custom kernels are not costed); when it gives none
(some programs with a custom kernel) a roofline from XLA's cost analysis:
max((flops + the kernel's attention flops) / peak, bytes accessed / HBM bandwidth). Neither
counts communication, and XLA's bytes count every fusion's operands (it can overstate HBM
traffic): the MFU they imply is an estimate, not a measurement. XLA costs
the microbatch loop's body once; it is scaled by the loop's count. Compile-only GPUs have no
cost analysis at all: no step time there.
"""

import importlib.util
import math
import time

import jax
from jax.experimental import topologies

from fimjax import attention as attention_lib
from fimjax import flops
from fimjax import model as model_lib
from fimjax import sharding as shd
from fimjax import step as step_lib

# HBM per chip (GiB) by `device_kind` substring, lower case; first match wins.
HBM_GIB = (
  ("tpu v6 lite", 32),
  ("tpu v6e", 32),
  ("tpu v5 lite", 16),
  ("tpu v5e", 16),
  ("tpu v5", 95),
  ("tpu v4", 32),
  ("h100", 79),
  ("h200", 141),
)
HBM_GBS = (
  ("tpu v6 lite", 1640),
  ("tpu v6e", 1640),
  ("tpu v5 lite", 819),
  ("tpu v5e", 819),
  ("tpu v5", 2765),
  ("tpu v4", 1228),
  ("h100", 3350),
  ("h200", 4800),
)
TPU_EXAMPLES = "v5e:2x2, v4:2x2x1, v5p:2x2x1, v6e:2x2"

# GpuTargetConfigProto of an H100 SXM (the fields XLA's compiler reads; values as in OpenXLA's
# h100_sxm.txtpb spec, Apache-2.0): lets the CUDA plugin compile with no GPU attached.
H100_TARGET = """
gpu_device_info {
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132
  fpus_per_core: 128 block_dim_limit_x: 2147483647 block_dim_limit_y: 65535
  block_dim_limit_z: 65535 memory_bandwidth: 3352320000000 l2_cache_size: 52428800
  clock_rate_ghz: 1.98 device_memory_size: 84942979072 shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 feature_extension: ACCELERATED_FEATURES }
  registers_per_core_limit: 65536 registers_per_block_limit: 65536
  thread_dim_limit_x: 1024 thread_dim_limit_y: 1024 thread_dim_limit_z: 64
  device_vendor: "NVIDIA Corporation" platform_version: "Compute Capability 9.0a"
  name: "NVIDIA H100 80GB HBM3" mem_clock_ghz: 2.619 reserved_shared_memory_per_block: 1024
  max_blocks_per_multiprocessor: 32 dnn_version: "9.8.0"
}
platform_name: "CUDA"
device_description_str: "NVIDIA H100 80GB HBM3"
"""


def target_devices(topology: str) -> list:
  """Compile-only devices of `topology`; ValueError (one line naming the flag) otherwise."""
  name = topology.strip()
  if name.lower().startswith("h100"):
    n = name.partition(":")[2] or "1"
    if not n.isdigit() or int(n) < 1:
      raise ValueError(f"--topology={topology}: GPU targets are h100 or h100:N (N GPUs)")
    try:
      return topologies.get_topology_desc(
        platform="cuda", target_config=H100_TARGET, topology=f"1x1x{n}"
      ).devices
    except Exception as e:  # no CUDA plugin: jax raises RuntimeError or NotImplementedError
      raise ValueError(
        f"--topology={topology} needs the CUDA plugin (no GPU needed): pip install "
        f"jax-cuda12-plugin jax-cuda12-pjrt ({str(e).splitlines()[0]})"
      ) from None
  if importlib.util.find_spec("libtpu") is None:
    raise ValueError(
      f"--topology={topology} needs libtpu to compile for TPU: pip install libtpu "
      "(or pip install -e '.[dev]')"
    )
  # v4 runs one device per chip (megacore); its default chip config has one per TensorCore.
  kw = {"chip_config_name": "megacore"} if name.startswith("v4") else {}
  try:
    return topologies.get_topology_desc(topology_name=name, platform="tpu", **kw).devices
  except Exception as e:  # jax's JaxRuntimeError INVALID_ARGUMENT, with libtpu's reason
    reason = str(e).splitlines()[0].split(": ", 1)[-1][:160]
    raise ValueError(
      f"--topology={topology}: not a slice libtpu knows ({reason}); use "
      f"GENERATION:SHAPE, e.g. {TPU_EXAMPLES}"
    ) from None


def hbm_bandwidth(device_kind: str) -> float | None:
  """HBM bytes/s per chip (public spec sheets)."""
  kind = device_kind.lower()
  return next((gbs * 1e9 for key, gbs in HBM_GBS if key in kind), None)


def hbm_bytes(device_kind: str) -> int | None:
  kind = device_kind.lower()
  return next((gib * 2**30 for key, gib in HBM_GIB if key in kind), None)


def _shard_bytes(tree) -> int:
  """Bytes of one device's shard of a tree of ShapeDtypeStructs with shardings."""
  return sum(
    math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree)
  )


def estimate_bytes(config, cfg, mesh_shape: dict, state_bytes: int, params_bytes: int) -> dict:
  """Analytic per-device bytes of a train step, from the model shape and the mesh.

  state (params + Adam moments, exact from the shardings) + gradients (fp32 like the params;
  twice with microbatches: the scan's running sum and one microbatch's) + activations of one
  microbatch of r = batch / (microbatches * data * fsdp) rows of L tokens:

    - kept for the backward pass, per layer and token (bf16): the block input, d, with remat;
      else 11 d + 3 F (norm outputs, q, k, v, attention output, MLP hidden and its square,
      residuals), plus the xla attention's fp32 scores and bf16 probabilities over the causal
      half, 3 H L / 2 (splash keeps none);
    - the larger of two phases that are not live at once: the logits in fp32 with ~1.5 copies
      (logits, their gradient), 6 V bytes per token; and, with remat, one recomputed block,
      14 d + 3 F per token (bf16).

  The constants were fitted to six TPU compiles of small and large (splash attention, with and
  without remat and microbatches, 2-12 layers) and two H100 compiles (xla attention); each of
  those, and the table in launch/README.md, is within 10% of XLA's figure.
  """
  d, l, v, f = cfg.d_model, cfg.context, cfg.vocab_size, cfg.mlp_ratio * cfg.d_model
  split = mesh_shape["data"] * mesh_shape["fsdp"]
  micro = int(config.train.microbatches)
  tokens = max(1, int(config.train.batch_size) // (micro * split)) * l
  grads = params_bytes * (2 if micro > 1 else 1)
  per_layer = d if cfg.remat else 11 * d + 3 * f
  if not cfg.remat and cfg.attention != "splash":
    per_layer += 3 * cfg.num_heads * l // 2
  kept = 2 * tokens * cfg.num_layers * per_layer
  phase = max(
    6 * tokens * v // mesh_shape["tensor"], 2 * tokens * (14 * d + 3 * f) if cfg.remat else 0
  )
  total = state_bytes + grads + kept + phase
  return {"state": state_bytes, "grads": grads, "activations": kept + phase, "total": total}


def analyse(config, model_vocab_size: int, devices) -> dict:
  """Compile the train step on a mesh over `devices`; sizes, memory and cost per device."""

  platform = devices[0].platform
  config = config.copy_and_resolve_references()
  config.model.attention = attention_lib.resolve_attention(
    config.model.get("attention", "auto"), platform, config.model.context
  )
  mesh = shd.make_mesh(config.mesh, devices)
  spec = step_lib.state_spec(config, model_vocab_size, mesh)
  cfg, state = spec.cfg, spec.abstract
  b, l = int(config.train.batch_size), cfg.context
  bsh = shd.batch_sharding(mesh)
  batch = {
    k: jax.ShapeDtypeStruct((b, l), "float32" if k == "loss_mask" else "int32", sharding=bsh)
    for k in ("tokens", "pos", "gap", "targets", "loss_mask", "segment_ids")
  }
  t0 = time.perf_counter()
  lowered = step_lib.make_train_step(config, model_vocab_size, mesh, spec=spec).lower(state, batch)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  parts = {
    k: int(getattr(mem, f"{k}_size_in_bytes", 0) or 0)
    for k in ("argument", "output", "temp", "alias", "generated_code")
  }
  per_device = parts["argument"] + parts["output"] + parts["temp"] - parts["alias"]
  params_b, state_b = _shard_bytes(state["params"]), _shard_bytes(state)
  limit = None
  try:
    limit = (devices[0].memory_stats() or {}).get("bytes_limit")
  except Exception:  # CPU and compile-only devices have no memory stats
    pass
  limit = limit or hbm_bytes(devices[0].device_kind)
  r = {
    "config": config.name,
    "devices": len(devices),
    "platform": platform,
    "device_kind": devices[0].device_kind,
    "mesh": dict(mesh.shape),
    "batch_size": b,
    "microbatches": int(config.train.microbatches),
    "context": l,
    "dtype": cfg.dtype,
    "remat": cfg.remat,
    "attention": cfg.attention,
    "params": model_lib.num_params(cfg),
    "flops_per_token": flops.model_flops_per_token(cfg),
    "per_device_bytes": per_device,
    "memory": parts,
    # per_device = params + optimizer + batch + temporaries (activations, grads, scratch).
    "split": {
      "params": params_b,
      "optimizer": state_b - params_b,
      "batch": parts["argument"] - state_b,
      "temporaries": parts["temp"] + parts["output"] - parts["alias"],
    },
    "estimate_bytes": estimate_bytes(config, cfg, dict(mesh.shape), state_b, params_b)["total"],
    "device_bytes_limit": limit,
    "fits": None if limit is None else per_device <= limit,
    "compile_s": round(compile_s, 2),
  }
  if platform != "cpu":
    r.update(_step_time(compiled, lowered, cfg, r, devices[0].device_kind))
  return r


def _step_time(compiled, lowered, cfg, r: dict, device_kind: str) -> dict:
  """XLA's estimated step time and the MFU it implies (see the module docstring)."""
  peak, bw = flops.table_peak_flops(device_kind), hbm_bandwidth(device_kind)
  cost = {}
  for source in (compiled, lowered):  # the GPU compiler returns no cost analysis
    try:
      c = source.cost_analysis()
    except Exception:  # a compile-only client may not implement it
      c = None
    c = c[0] if isinstance(c, (list, tuple)) and c else c
    if c:
      cost = c
      break
  if not cost:
    return {
      "est_step_s": None,
      "mfu": None,
      "est_method": "none: XLA gives no cost analysis for compile-only GPUs",
    }
  # The microbatch loop's body is costed once: scale by its trip count (this also scales the
  # optimizer update, which is small next to forward + backward).
  micro = r["microbatches"]
  xla_flops = float(cost.get("flops", 0.0)) * micro
  xla_bytes = float(cost.get("bytes accessed", 0.0)) * micro
  optimal = float(cost.get("optimal_seconds", -1.0))
  out = {
    "xla_flops": xla_flops,
    "xla_bytes": xla_bytes,
    "xla_optimal_s": optimal,
    "est_step_s": None,
    "mfu": None,
  }
  uncosted = 0.0
  if cfg.attention == "splash":  # the kernel's useful (causal half) flops on one device
    uncosted = 6 * cfg.num_layers * cfg.d_model * r["context"] ** 2 * r["batch_size"]
    uncosted /= r["devices"]
  if optimal > 0:  # the custom kernel is costed at 0 there: add it at peak
    out.update(
      est_step_s=optimal * micro + (uncosted / peak if peak else 0.0),
      est_method="xla optimal_seconds",
    )
  elif peak:
    compute = (xla_flops + uncosted) / peak
    memory = xla_bytes / bw if bw else 0.0
    out.update(
      est_step_s=max(compute, memory),
      est_method="roofline: max(flops / peak, bytes / HBM bandwidth)",
    )
  if peak and out["est_step_s"]:
    model_step = r["flops_per_token"] * r["batch_size"] * r["context"]
    out.update(peak_flops=peak, mfu=model_step / (out["est_step_s"] * r["devices"] * peak))
  return out
