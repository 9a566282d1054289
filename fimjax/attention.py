"""Attention kernels: segment-aware causal attention (xla, cuDNN, Pallas splash) and the KV-cache
form used by sampling. Queries arrive pre-scaled, in [B, L, H, K]; `fimjax.model` picks the
implementation from the config (`resolve_attention`).
"""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from fimjax import sharding as shd

SPLASH_BLOCK = 128  # the splash kernel's tile; with segment ids its kv tile must be 128k


def resolve_attention(impl: str, platform: str, context: int) -> str:
  """`auto` -> splash on TPU (if the context splits into 128-token tiles), else xla.

  GPUs get xla too: training rows are packed, and cuDNN cannot take their segments (see
  `attention`). Only the config's string says "auto", so resuming is unaffected.
  """
  if impl != "auto":
    return impl
  return "splash" if platform == "tpu" and context % SPLASH_BLOCK == 0 else "xla"


def _attend(q_BxHxQxK, k_BxHxSxK, v_BxHxSxK, mask_BxQxS):
  s_BxHxQxS = jnp.einsum(
    "bhqk,bhsk->bhqs", q_BxHxQxK, k_BxHxSxK, preferred_element_type=jnp.float32
  )
  s_BxHxQxS = jnp.where(mask_BxQxS[:, None], s_BxHxQxS, -1e30)
  p_BxHxQxS = jax.nn.softmax(s_BxHxQxS, axis=-1).astype(v_BxHxSxK.dtype)
  return jnp.einsum("bhqs,bhsk->bhqk", p_BxHxQxS, v_BxHxSxK)


def attention(q, k, v, seg_BxL, *, block: int, impl: str = "xla"):
  """Segment-aware causal attention; q is pre-scaled. Shapes [B, L, H, K]."""
  l = q.shape[1]
  if impl == "splash":
    return splash_attention(q, k, v, seg_BxL)
  if impl == "cudnn" and seg_BxL is None:
    # cuDNN's fused kernel takes padding lengths, not segments: packed rows would need a dense
    # [B, 1, L, L] bias (memory ~ L^2), so rows with segment ids take the xla path below.
    return jax.nn.dot_product_attention(q, k, v, scale=1.0, is_causal=True, implementation="cudnn")
  # Heads-major layout: batched dots with leading batch axes (2x faster on CPU than BLHK).
  q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
  idx = jnp.arange(l)
  outs = []
  # Query block i only needs keys [0, end_i): the masked upper triangle is mostly skipped.
  block = block if (block and l % block == 0) else l
  for start in range(0, l, block):
    end = start + block
    mask_BxQxS = (idx[start:end, None] >= idx[None, :end])[None]
    if seg_BxL is not None:
      mask_BxQxS = mask_BxQxS & (seg_BxL[:, start:end, None] == seg_BxL[:, None, :end])
    outs.append(_attend(q[:, :, start:end], k[:, :, :end], v[:, :, :end], mask_BxQxS))
  o_BxHxLxK = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=2)
  return o_BxHxLxK.transpose(0, 2, 1, 3)


def _splash_kernel(heads: int, l: int, interpret: bool):
  """A splash MHA kernel, causal for every head (made per trace: it holds jax arrays)."""
  from jax.experimental.pallas.ops.tpu import splash_attention as sa  # TPU-only module

  b = min(SPLASH_BLOCK, l)
  sizes = sa.BlockSizes(
    block_q=b,
    block_kv=b,
    block_kv_compute=b,
    block_q_dkv=b,
    block_kv_dkv=b,
    block_kv_dkv_compute=b,
    block_q_dq=b,
    block_kv_dq=b,
  )
  mask = sa.MultiHeadMask([sa.CausalMask((l, l)) for _ in range(heads)])
  return sa.make_splash_mha(
    mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret
  )


def splash_attention(q, k, v, seg_BxL, *, interpret: bool = False):
  """Pallas splash attention: causal, and within a segment when `seg_BxL` is given.

  The kernel works on one row [H, L, K]: vmapped over rows, and under a mesh run per device in
  a shard_map over rows (data, fsdp) and heads (tensor), since Mosaic kernels cannot be
  partitioned automatically. `interpret` runs the Pallas interpreter (CPU tests).
  """
  from jax.experimental.pallas.ops.tpu import splash_attention as sa  # TPU-only module

  l = q.shape[1]

  def local(q, k, v, *seg):
    kernel = _splash_kernel(q.shape[1], l, interpret)
    if not seg:
      return jax.vmap(kernel)(q, k, v)
    return jax.vmap(lambda q, k, v, s: kernel(q, k, v, segment_ids=sa.SegmentIds(s, s)))(
      q, k, v, seg[0]
    )

  args = [x.transpose(0, 2, 1, 3) for x in (q, k, v)]  # [B, H, L, K]
  if seg_BxL is not None:
    args.append(seg_BxL.astype(jnp.int32))
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or tuple(mesh.axis_names) != shd.MESH_AXES:
    out = local(*args)
  else:
    # Split only the axes that divide (as shd.constrain); the others are replicated.
    split = mesh.shape["data"] * mesh.shape["fsdp"]
    rows = ("data", "fsdp") if q.shape[0] % split == 0 else None
    heads = "tensor" if q.shape[2] % mesh.shape["tensor"] == 0 else None
    spec = P(rows, heads, None, None)
    specs = (spec,) * 3 + ((P(rows, None),) if seg_BxL is not None else ())
    out = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=spec, check_vma=False)(*args)
  return out.transpose(0, 2, 1, 3)


def cached_attention(q_BxTxHxK, k_BxHxSxK, v_BxHxSxK, start_B):
  """Attention of T queries at cache slots start_B + [0, T) over the slots up to their own; q
  is pre-scaled. Returns [B, T, H, K]."""
  t, s = q_BxTxHxK.shape[1], k_BxHxSxK.shape[2]
  slot_BxT = start_B[:, None] + jnp.arange(t)
  mask_BxTxS = jnp.arange(s)[None, None, :] <= slot_BxT[:, :, None]
  s_BxHxTxS = jnp.einsum(
    "bthk,bhsk->bhts", q_BxTxHxK, k_BxHxSxK, preferred_element_type=jnp.float32
  )
  s_BxHxTxS = jnp.where(mask_BxTxS[:, None], s_BxHxTxS, -1e30)
  p_BxHxTxS = jax.nn.softmax(s_BxHxTxS, axis=-1).astype(v_BxHxSxK.dtype)
  return jnp.einsum("bhts,bhsk->bthk", p_BxHxTxS, v_BxHxSxK)
