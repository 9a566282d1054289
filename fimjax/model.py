"""Decoder-only transformer (Flax NNX) with two position ids: RoPE on `pos`, a learned `gap`.

Architecture (DESIGN.md "Model"): token embedding + gap embedding, parameter-free RMSNorm after
the embedding, before attention, before the MLP and before the head; QK-norm; RoPE on `pos`;
ReLU^2 MLP; no biases; untied head; logits soft-capped as `cap * tanh(x / cap)`.

Attention is causal *within a segment*: a token at i sees token j iff j <= i and
segment_ids[i] == segment_ids[j] (block-diagonal causal; padding, segment 0, only sees padding).
One module serves training, evaluation and sampling: given a KV cache (`init_cache`), the tokens
are written into it and attend to what it holds (`Transformer.__call__`'s `cache`).

Parameters are kept in `param_dtype` (fp32) and cast to `dtype` (bf16) at use. Every parameter
carries logical axis names (`vocab`, `embed`, `heads`, `mlp`, or None); `fimjax.sharding` maps
them to mesh axes.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from fimjax import attention as attention_lib
from fimjax import sharding as shd

VOCAB_MULTIPLE = 128


def padded_vocab_size(model_vocab_size: int) -> int:
  return -(-model_vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Static model hyperparameters (hashable, so usable as a jit static argument)."""

  vocab_size: int  # padded to a multiple of 128
  d_model: int
  num_layers: int
  num_heads: int
  context: int
  mlp_ratio: int = 4
  logit_softcap: float = 15.0
  rope_base: float = 10_000.0
  dtype: str = "bfloat16"
  param_dtype: str = "float32"
  remat: bool = False
  # "xla": einsum attention, causal part computed in query blocks of `attn_block` (skips most of
  # the masked upper triangle); "cudnn": jax.nn.dot_product_attention(implementation="cudnn")
  # for rows without segments; "splash": the Pallas TPU kernel. Never "auto" (resolved).
  attention: str = "xla"
  attn_block: int = 128
  # Residual dropout on each block's attention and MLP outputs, in training only (a step's
  # dropout key comes from the seed and the step: exact resume holds). Not part of inference.
  dropout: float = 0.0

  @classmethod
  def from_config(cls, config, model_vocab_size: int) -> "ModelConfig":
    m = config.model
    return cls(
      vocab_size=padded_vocab_size(model_vocab_size),
      d_model=m.d_model,
      num_layers=m.num_layers,
      num_heads=m.num_heads,
      context=m.context,
      mlp_ratio=m.mlp_ratio,
      logit_softcap=float(m.logit_softcap),
      rope_base=float(m.rope_base),
      dtype=m.dtype,
      param_dtype=m.param_dtype,
      remat=bool(m.remat),
      attention=attention_lib.resolve_attention(
        m.get("attention", "auto"), jax.default_backend(), m.context
      ),
      attn_block=int(m.get("attn_block", 128)),
      dropout=float(m.get("dropout", 0.0)),
    )

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads


def num_params(cfg: ModelConfig) -> int:
  """Exact parameter count: embeddings (padded vocab, gap rows = context+1), blocks, head."""
  d, l = cfg.d_model, cfg.num_layers
  per_block = 4 * d * d + 2 * cfg.mlp_ratio * d * d
  return cfg.vocab_size * d + (cfg.context + 1) * d + l * per_block + d * cfg.vocab_size


def rms_norm(x, eps: float = 1e-6):
  """Parameter-free RMSNorm over the last axis, computed in fp32, returned in x's dtype."""
  x32 = x.astype(jnp.float32)
  y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
  return y.astype(x.dtype)


def rope(x_BxLxHxK, pos_BxL, base: float):
  """Rotary embedding (half-split convention) at integer positions `pos`."""
  k = x_BxLxHxK.shape[-1]
  freq = base ** (-jnp.arange(0, k // 2, dtype=jnp.float32) / (k // 2))
  ang_BxLxK2 = pos_BxL.astype(jnp.float32)[..., None] * freq
  cos, sin = jnp.cos(ang_BxLxK2)[:, :, None, :], jnp.sin(ang_BxLxK2)[:, :, None, :]
  x1, x2 = jnp.split(x_BxLxHxK.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BxLxHxK.dtype)


def dense(x_NxD, w_DxF, dtype, out_dtype=None):
  """x @ w over the last axis of x, as one 2-D matmul (w's trailing axes flattened).

  Flattening the leading axes first matters on CPU: XLA's dot with two batch-like contraction
  axes in the weight gradient ran ~2x slower than the 2-D form.
  """
  lead, trail = x_NxD.shape[:-1], w_DxF.shape[1:]
  y = jnp.dot(
    x_NxD.reshape(-1, x_NxD.shape[-1]).astype(dtype),
    w_DxF.reshape(w_DxF.shape[0], -1).astype(dtype),
    preferred_element_type=out_dtype,
  )
  return y.reshape(lead + trail)


def _param(rngs, init, shape, names, dtype):
  return nnx.Param(nnx.with_partitioning(init, names)(rngs.params(), shape, dtype))


def init_cache(cfg: ModelConfig, batch: int, length: int) -> list:
  """Per layer (k, v) [B, H, S, K] in the compute dtype, zeros (heads-major: a decode step's
  attention reads it without a transpose; ~15% more tokens/s than [B, S, H, K] for `small` at
  batch 16 on CPU)."""
  shape = (batch, cfg.num_heads, length, cfg.head_dim)
  dt = jnp.dtype(cfg.dtype)
  return [(jnp.zeros(shape, dt), jnp.zeros(shape, dt)) for _ in range(cfg.num_layers)]


def _write(cache_BxHxSxK, new_BxTxHxK, start_B):
  """Writes each row's T new entries at its own slot `start_B[b]`."""
  upd = lambda c, n, s: jax.lax.dynamic_update_slice(c, n, (0, s, 0))
  new_BxHxTxK = new_BxTxHxK.astype(cache_BxHxSxK.dtype).transpose(0, 2, 1, 3)
  return jax.vmap(upd)(cache_BxHxSxK, new_BxHxTxK, start_B)


class Block(nnx.Module):
  """Pre-norm attention + ReLU^2 MLP block."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d, h, k, f = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.mlp_ratio * cfg.d_model
    pd = jnp.dtype(cfg.param_dtype)
    init_in = nnx.initializers.normal(1.0 / math.sqrt(d))
    out_scale = 1.0 / math.sqrt(2 * cfg.num_layers)
    self.wq = _param(rngs, init_in, (d, h, k), ("embed", "heads", None), pd)
    self.wk = _param(rngs, init_in, (d, h, k), ("embed", "heads", None), pd)
    self.wv = _param(rngs, init_in, (d, h, k), ("embed", "heads", None), pd)
    self.wo = _param(
      rngs,
      nnx.initializers.normal(out_scale / math.sqrt(d)),
      (h, k, d),
      ("heads", None, "embed"),
      pd,
    )
    self.w_up = _param(rngs, init_in, (d, f), ("embed", "mlp"), pd)
    self.w_down = _param(
      rngs, nnx.initializers.normal(out_scale / math.sqrt(f)), (f, d), ("mlp", "embed"), pd
    )

  def __call__(
    self, x_BxLxD, pos_BxL, seg_BxL=None, cache=None, cache_start=None, dropout_key=None
  ):
    """(x_BxLxD, new cache). Without `cache` the L tokens attend within the row (`attention`);
    with one ((k, v) of `init_cache`) they are written at slots cache_start [B] + [0, L) and
    attend to the slots up to their own (`cached_attention`); the new cache is None without.
    `dropout_key` (training): drop `cfg.dropout` of each branch's outputs."""
    cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
    h_BxLxD = rms_norm(x_BxLxD)
    q, k, v = (dense(h_BxLxD, w[...], dt) for w in (self.wq, self.wk, self.wv))
    q = rope(rms_norm(q), pos_BxL, cfg.rope_base) * jnp.asarray(cfg.head_dim**-0.5, dt)
    k = rope(rms_norm(k), pos_BxL, cfg.rope_base)
    if cache is None:
      q, k, v = (shd.constrain(t, ("batch", None, "heads", None)) for t in (q, k, v))
      o_BxLxHxK = attention_lib.attention(
        q, k, v, seg_BxL, block=cfg.attn_block, impl=cfg.attention
      )
    else:
      cache = (_write(cache[0], k, cache_start), _write(cache[1], v, cache_start))
      o_BxLxHxK = attention_lib.cached_attention(q, *cache, cache_start)
    b, l = o_BxLxHxK.shape[:2]
    wo_HKxD = self.wo[...].reshape(-1, cfg.d_model)
    drop = _dropout(cfg.dropout, dropout_key)
    x_BxLxD = x_BxLxD + drop(dense(o_BxLxHxK.reshape(b, l, -1), wo_HKxD, dt), 0)
    x_BxLxD = shd.constrain(x_BxLxD, ("batch", None, None))
    h_BxLxF = dense(rms_norm(x_BxLxD), self.w_up[...], dt)
    h_BxLxF = shd.constrain(jnp.square(jax.nn.relu(h_BxLxF)), ("batch", None, "mlp"))
    x_BxLxD = x_BxLxD + drop(dense(h_BxLxF, self.w_down[...], dt), 1)
    return shd.constrain(x_BxLxD, ("batch", None, None)), cache


def _dropout(rate: float, key):
  """branch, i -> the branch with `rate` of its entries zeroed (the rest scaled by 1 / keep),
  drawn with fold_in(key, i); the identity without a key or at rate 0 (no op in the graph)."""
  if key is None or rate <= 0:
    return lambda x, i: x

  def drop(x, i):
    keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)

  return drop


def _block_out(block, x, pos, seg, key):
  return block(x, pos, seg, dropout_key=key)[0]


class Transformer(nnx.Module):
  """tokens, pos, gap (, segment_ids) [B, L] int32 -> logits [B, L, vocab_size] float32."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d, v, pd = cfg.d_model, cfg.vocab_size, jnp.dtype(cfg.param_dtype)
    emb_init = nnx.initializers.normal(0.02)
    self.embed = _param(rngs, emb_init, (v, d), ("vocab", "embed"), pd)
    # gap counts 1.. along MID and the middle; it never exceeds the context.
    self.gap_embed = _param(rngs, emb_init, (cfg.context + 1, d), (None, "embed"), pd)
    # String attribute names (not nnx.List) so the params are a dict with string keys.
    for i in range(cfg.num_layers):
      setattr(self, f"block_{i}", Block(cfg, rngs=rngs))
    self.head = _param(rngs, nnx.initializers.normal(0.02), (d, v), ("embed", "vocab"), pd)

  def __call__(
    self,
    tokens_BxL,
    pos_BxL,
    gap_BxL,
    segment_ids_BxL=None,
    *,
    cache=None,
    cache_start=None,
    dropout_key=None,
  ):
    """Logits; with `cache` (`init_cache`) and cache_start [B] (the slot of each row's first
    token: see `Block`), (logits, new cache). Training and evaluation pass no cache (rows are
    whole, packed by segment ids); the sampler passes one (segment ids are not used).
    `dropout_key`: training's residual dropout (`cfg.dropout`), a key per block."""
    cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
    gap_BxL = jnp.clip(gap_BxL, 0, cfg.context)
    x_BxLxD = jnp.take(self.embed[...], tokens_BxL, axis=0) + jnp.take(
      self.gap_embed[...], gap_BxL, axis=0
    )
    x_BxLxD = shd.constrain(rms_norm(x_BxLxD).astype(dt), ("batch", None, None))
    run = nnx.remat(_block_out) if cfg.remat else _block_out
    new_cache = []
    for i in range(cfg.num_layers):
      block = getattr(self, f"block_{i}")
      if cache is None:
        key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
        x_BxLxD = run(block, x_BxLxD, pos_BxL, segment_ids_BxL, key)
      else:  # sampling: no gradients, so no remat
        x_BxLxD, layer_cache = block(x_BxLxD, pos_BxL, segment_ids_BxL, cache[i], cache_start)
        new_cache.append(layer_cache)
    logits_BxLxV = dense(rms_norm(x_BxLxD), self.head[...], dt, jnp.float32)
    logits_BxLxV = shd.constrain(logits_BxLxV, ("batch", None, "vocab"))
    cap = cfg.logit_softcap
    logits_BxLxV = cap * jnp.tanh(logits_BxLxV / cap) if cap else logits_BxLxV
    return logits_BxLxV if cache is None else (logits_BxLxV, new_cache)


@functools.lru_cache(maxsize=16)
def abstract_split(cfg: ModelConfig):
  """(graphdef, State of ShapeDtypeStruct Params); independent of any mesh in context."""
  box = {}

  def build():
    with nnx.use_eager_sharding(False):
      graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
    box["graphdef"] = graphdef
    return state

  state = jax.eval_shape(build)
  return box["graphdef"], state


def from_params(cfg: ModelConfig, params: dict) -> Transformer:
  """The Transformer holding `params` (a pure dict, `init_params` layout; arrays not copied)."""
  return nnx.merge(abstract_split(cfg)[0], params)


def init_params(cfg: ModelConfig, seed: int) -> dict:
  """Fresh parameters as a pure nested dict of arrays (call under jit for sharded output)."""
  with nnx.use_eager_sharding(False):
    model = Transformer(cfg, rngs=nnx.Rngs(seed))
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def param_logical_axes(cfg: ModelConfig) -> dict:
  """Pure dict (same structure as the params) of PartitionSpecs of logical axis names."""
  return nnx.to_pure_dict(nnx.get_partition_spec(abstract_split(cfg)[1]))


def apply(
  cfg: ModelConfig,
  params: dict,
  tokens,
  pos,
  gap,
  segment_ids=None,
  *,
  cache=None,
  cache_start=None,
  dropout_key=None,
):
  """`Transformer.__call__` on a pure params dict (training, evaluation, sampling, export)."""
  return from_params(cfg, params)(
    tokens, pos, gap, segment_ids, cache=cache, cache_start=cache_start, dropout_key=dropout_key
  )
