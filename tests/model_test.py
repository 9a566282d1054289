"""Model tests: parameter counts of every config, segment isolation, causality, FIM dependence."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fimjax import attention as attention_lib
from fimjax import config_base
from fimjax import model as model_lib
from fimjax import step as step_lib
from fimjax.data import fim
from tests.step_test import micro_config

REPO = pathlib.Path(__file__).resolve().parent.parent
VOCAB = 8197  # 8192 tokenizer ids (PAD included) + 5 specials
# The design's table: 2*V*d + 12*L*d^2 at V=8192, in millions (one decimal).
DESIGN_PARAMS_M = {
  "small": 20.4,
  "medium_small": 27.5,
  "medium": 83.4,
  "medium_512": 83.4,
  "large_512": 167.8,
  "large": 167.8,
}


def micro_cfg(**kw):
  c = micro_config()
  for k, v in kw.items():
    setattr(c.model, k, v)
  return model_lib.ModelConfig.from_config(c, VOCAB)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.py")), ids=lambda p: p.stem)
def test_param_count_matches_design(path):
  c = config_base.load_config_file(path)
  cfg = model_lib.ModelConfig.from_config(c, VOCAB)
  d, l, ctx = c.model.d_model, c.model.num_layers, c.model.context
  assert cfg.vocab_size == 8320
  design = 2 * 8192 * d + 12 * l * d * d
  # + special-id and vocab-padding rows (8320 - 8192) in embedding and head, + gap rows.
  expected = design + 2 * (8320 - 8192) * d + (ctx + 1) * d
  shapes = jax.eval_shape(lambda: model_lib.init_params(cfg, 0))
  assert sum(x.size for x in jax.tree.leaves(shapes)) == expected == model_lib.num_params(cfg)
  if path.stem in DESIGN_PARAMS_M:
    assert round(design / 1e6, 1) == DESIGN_PARAMS_M[path.stem]


def _logits(cfg, params, tokens, pos, gap, seg):
  f = jax.jit(model_lib.apply, static_argnums=0)
  return np.asarray(
    f(cfg, params, *(jnp.asarray(a, jnp.int32)[None] for a in (tokens, pos, gap, seg)))[0]
  )


@pytest.fixture(scope="module")
def micro():
  cfg = micro_cfg()
  return cfg, jax.jit(lambda: model_lib.init_params(cfg, 0))()


def test_segments_isolated(micro):
  cfg, params = micro
  rng = np.random.default_rng(0)
  la, lb, n = 12, 15, cfg.context
  a, b = rng.integers(0, 8192, la), rng.integers(0, 8192, lb)
  packed = np.zeros(n, np.int64)
  packed[:la], packed[la : la + lb] = a, b
  pos = np.zeros(n, np.int64)
  pos[:la], pos[la : la + lb] = np.arange(la), np.arange(lb)
  seg = np.zeros(n, np.int64)
  seg[:la], seg[la : la + lb] = 1, 2
  got = _logits(cfg, params, packed, pos, np.zeros(n), seg)
  for toks, start in ((a, 0), (b, la)):
    k = len(toks)
    alone = np.zeros(n, np.int64)
    alone[:k] = toks
    ref = _logits(
      cfg,
      params,
      alone,
      np.where(np.arange(n) < k, np.arange(n), 0),
      np.zeros(n),
      (np.arange(n) < k).astype(np.int64),
    )
    np.testing.assert_allclose(got[start : start + k], ref[:k], atol=2e-5, rtol=1e-5)


def test_causal(micro):
  cfg, params = micro
  n = cfg.context
  toks = np.random.default_rng(1).integers(0, 8192, n)
  base = _logits(cfg, params, toks, np.arange(n), np.zeros(n), np.ones(n))
  toks2 = toks.copy()
  toks2[20] = (toks2[20] + 1) % 8192
  out = _logits(cfg, params, toks2, np.arange(n), np.zeros(n), np.ones(n))
  np.testing.assert_array_equal(base[:20], out[:20])
  assert np.all(np.abs(base[20:] - out[20:]).max(axis=-1) > 1e-6)


def _fim_row(rng, n):
  """prefix(6), MASK, suffix(7), MID, middle(5) as training builds it (fim.fim_example, default
  positions): tokens, pos, gap, segment ids, and the indices of MID and the middle."""
  sp = {"mask": 8194, "mid": 8195, "eom": 8196}
  pre, suf, mid = (rng.integers(0, 8192, k).tolist() for k in (6, 7, 5))
  ex = fim.fim_example(
    pre + mid + suf, 6, 5, fim.PSM, sp, positions=config_base.base_config("tiny").fim.positions
  )
  pad = np.zeros(n - len(ex["tokens"]), np.int64)
  row = [np.concatenate([np.asarray(ex[k], np.int64), pad]) for k in ("tokens", "pos", "gap")]
  return (*row, np.concatenate([np.ones(len(ex["tokens"])), pad]), np.arange(14, 20))


def test_fim_middle_depends_on_suffix(micro):
  cfg, params = micro
  toks, pos, gap, seg, middle = _fim_row(np.random.default_rng(2), cfg.context)
  base = _logits(cfg, params, toks, pos, gap, seg)
  toks2 = toks.copy()
  toks2[10] = (toks2[10] + 7) % 8192  # a suffix token
  out = _logits(cfg, params, toks2, pos, gap, seg)
  assert np.all(np.abs(base[middle] - out[middle]).max(axis=-1) > 1e-6)
  np.testing.assert_array_equal(base[:10], out[:10])


def test_gap_embedding_changes_logits(micro):
  cfg, params = micro
  toks, pos, gap, seg, middle = _fim_row(np.random.default_rng(3), cfg.context)
  base = _logits(cfg, params, toks, pos, gap, seg)
  out = _logits(cfg, params, toks, pos, np.zeros_like(gap), seg)
  np.testing.assert_array_equal(base[:14], out[:14])  # gap is 0 there either way
  assert np.all(np.abs(base[middle] - out[middle]).max(axis=-1) > 1e-6)


def test_remat_and_attention_blocks_same_loss(micro):
  cfg, params = micro
  rng = np.random.default_rng(4)
  n = cfg.context
  batch = {
    "tokens": rng.integers(0, 8192, (2, n)),
    "pos": np.tile(np.arange(n), (2, 1)),
    "gap": np.zeros((2, n)),
    "targets": rng.integers(0, 8192, (2, n)),
    "segment_ids": np.ones((2, n)),
  }
  batch = {k: jnp.asarray(v, jnp.int32) for k, v in batch.items()}

  def loss_and_grad(c):
    f = lambda p: jnp.mean(step_lib.token_losses(c, p, batch))
    return jax.jit(jax.value_and_grad(f))(params)

  ref_loss, ref_grad = loss_and_grad(cfg)
  for other in (micro_cfg(remat=True), micro_cfg(attn_block=8)):
    loss, grad = loss_and_grad(other)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grad, ref_grad
    )


def test_cache_gives_the_logits_of_the_whole_row(micro):
  """The module fed a row in two chunks through its KV cache equals one pass over the row."""
  cfg, params = micro
  n = cfg.context
  toks = jnp.asarray(np.random.default_rng(6).integers(0, 8192, (2, n)), jnp.int32)
  pos, gap = jnp.tile(jnp.arange(n, dtype=jnp.int32), (2, 1)), jnp.zeros_like(toks)
  whole = model_lib.apply(cfg, params, toks, pos, gap)
  model, start = model_lib.from_params(cfg, params), jnp.zeros((2,), jnp.int32)
  a, cache = model(
    toks[:, :10], pos[:, :10], gap[:, :10], cache=model_lib.init_cache(cfg, 2, n), cache_start=start
  )
  b, _ = model(toks[:, 10:], pos[:, 10:], gap[:, 10:], cache=cache, cache_start=start + 10)
  np.testing.assert_allclose(jnp.concatenate([a, b], axis=1), whole, atol=2e-5, rtol=1e-5)


def _packed_qkv(seed=5, b=2, l=256, h=2, k=32):
  """q (pre-scaled), k, v [B, L, H, K] fp32 and segment ids of packed rows with padding."""
  rng = np.random.default_rng(seed)
  q, kk, v = (jnp.asarray(rng.normal(size=(b, l, h, k)), jnp.float32) for _ in range(3))
  seg = np.zeros((b, l), np.int32)
  seg[0, :100], seg[0, 100:230], seg[1, :] = 1, 2, 1  # row 0: two segments, then padding (0)
  return q * k**-0.5, kk, v, jnp.asarray(seg)


@pytest.mark.parametrize("with_segments", [True, False])
def test_splash_matches_xla_in_interpret_mode(with_segments):
  """The TPU kernel's own code, run by the Pallas interpreter on CPU: forward and gradients.

  What this checks: the kernel call (layout, causal mask, segment ids, vmap over rows) and its
  backward; not Mosaic's TPU lowering (the AOT test in fit_test.py compiles that for a slice).
  """
  q, k, v, seg = _packed_qkv()
  seg = seg if with_segments else None

  def loss(fn):
    return jax.jit(jax.value_and_grad(lambda *a: jnp.sum(jnp.sin(fn(*a))), argnums=(0, 1, 2)))

  splash = loss(lambda q, k, v: attention_lib.splash_attention(q, k, v, seg, interpret=True))
  xla = loss(lambda q, k, v: attention_lib.attention(q, k, v, seg, block=128, impl="xla"))
  (ls, gs), (lx, gx) = splash(q, k, v), xla(q, k, v)
  np.testing.assert_allclose(ls, lx, rtol=1e-5)
  for a, b in zip(gs, gx):
    np.testing.assert_allclose(a, b, atol=2e-5)


def test_splash_under_a_mesh_runs_per_device(micro):
  """Under a mesh the kernel runs in a shard_map (Mosaic kernels are not auto-partitioned)."""
  from fimjax import sharding as shd

  q, k, v, seg = _packed_qkv(b=4)
  mesh = shd.make_mesh(micro_config().mesh, jax.devices()[:1])
  with jax.set_mesh(mesh):
    out = jax.jit(lambda *a: attention_lib.splash_attention(*a, interpret=True))(q, k, v, seg)
  ref = attention_lib.attention(q, k, v, seg, block=128, impl="xla")
  np.testing.assert_allclose(out, ref, atol=2e-6)


def test_attention_auto_resolves_by_platform():
  r = attention_lib.resolve_attention
  assert r("auto", "tpu", 1024) == "splash"
  assert r("auto", "tpu", 200) == "xla"  # splash tiles are 128 tokens
  assert r("auto", "gpu", 1024) == r("auto", "cpu", 1024) == "xla"
  assert r("cudnn", "tpu", 1024) == "cudnn" and r("xla", "tpu", 1024) == "xla"
  c = micro_config()
  assert c.model.attention == "auto"
  assert model_lib.ModelConfig.from_config(c, VOCAB).attention == "xla"  # on this CPU
  assert "model.attention" not in config_base.FIXED_ON_RESUME


def test_cudnn_takes_the_xla_path_for_packed_rows():
  """No dense [B, 1, L, L] bias: with segment ids the cudnn choice computes the xla attention
  (on CPU a cuDNN call would raise, so equal outputs show it was not made)."""
  q, k, v, seg = _packed_qkv(l=32)
  out = attention_lib.attention(q, k, v, seg, block=8, impl="cudnn")
  np.testing.assert_allclose(out, attention_lib.attention(q, k, v, seg, block=8), atol=1e-6)
