"""Model tests: parameter counts of every config, segment isolation, causality, FIM dependence."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fimjax import config_base
from fimjax import model as model_lib
from fimjax import step as step_lib
from fimjax.data import fim
from tests.step_test import micro_config

REPO = pathlib.Path(__file__).resolve().parent.parent
VOCAB = 8197  # 8192 tokenizer ids (PAD included) + 5 specials
# The design's table: 2*V*d + 12*L*d^2 at V=8192, in millions (one decimal).
DESIGN_PARAMS_M = {"small": 20.4, "medium_small": 27.5, "medium": 83.4, "medium_512": 83.4,
                   "large_512": 167.8, "large": 167.8}


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
  return np.asarray(f(cfg, params, *(jnp.asarray(a, jnp.int32)[None] for a in
                                     (tokens, pos, gap, seg)))[0])


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
  packed[:la], packed[la:la + lb] = a, b
  pos = np.zeros(n, np.int64)
  pos[:la], pos[la:la + lb] = np.arange(la), np.arange(lb)
  seg = np.zeros(n, np.int64)
  seg[:la], seg[la:la + lb] = 1, 2
  got = _logits(cfg, params, packed, pos, np.zeros(n), seg)
  for toks, start in ((a, 0), (b, la)):
    k = len(toks)
    alone = np.zeros(n, np.int64)
    alone[:k] = toks
    ref = _logits(cfg, params, alone, np.where(np.arange(n) < k, np.arange(n), 0),
                  np.zeros(n), (np.arange(n) < k).astype(np.int64))
    np.testing.assert_allclose(got[start:start + k], ref[:k], atol=2e-5, rtol=1e-5)


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
  ex = fim.fim_example(pre + mid + suf, 6, 5, fim.PSM, sp,
                       positions=config_base.base_config("tiny").fim.positions)
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
  batch = {"tokens": rng.integers(0, 8192, (2, n)), "pos": np.tile(np.arange(n), (2, 1)),
           "gap": np.zeros((2, n)), "targets": rng.integers(0, 8192, (2, n)),
           "segment_ids": np.ones((2, n))}
  batch = {k: jnp.asarray(v, jnp.int32) for k, v in batch.items()}

  def loss_and_grad(c):
    f = lambda p: jnp.mean(step_lib.token_losses(c, p, batch))
    return jax.jit(jax.value_and_grad(f))(params)
  ref_loss, ref_grad = loss_and_grad(cfg)
  for other in (micro_cfg(remat=True), micro_cfg(attn_block=8)):
    loss, grad = loss_and_grad(other)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
                 grad, ref_grad)
