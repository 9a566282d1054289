"""The sampler: KV-cached decoding equals recomputing the sequence, stops, determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fimjax import model as model_lib
from fimjax import sample as sample_lib

V = 99  # tokenizer vocab (PAD = 98); specials after it
SP = {"pad": 98, "bos": 99, "eos": 100, "mask": 101, "mid": 102, "eom": 103}
MODEL_VOCAB = 104
CFG = model_lib.ModelConfig(
  vocab_size=128, d_model=32, num_layers=2, num_heads=2, context=64, dtype="float32"
)


@pytest.fixture(scope="module")
def params():
  return model_lib.init_params(CFG, 0)


def _prompts(seed=0):
  rng = np.random.default_rng(seed)
  return [
    sample_lib.infill_prompt(
      rng.integers(0, 98, 5), rng.integers(0, 98, 9), SP, positions="continued"
    ),
    sample_lib.infill_prompt(
      rng.integers(0, 98, 14), rng.integers(0, 98, 2), SP, positions="continued"
    ),
  ]


_apply = jax.jit(lambda p, t, q, g: model_lib.apply(CFG, p, t, q, g))


def _reference(params, prompt, mode, n):
  """Greedy decoding recomputing the whole sequence with model.apply at every step."""
  toks, pos, gap = (list(map(int, a)) for a in (prompt.tokens, prompt.pos, prompt.gap))
  allowed = sample_lib.allowed_ids(SP, CFG.vocab_size, MODEL_VOCAB, mode)
  stop = SP["eom" if mode == sample_lib.INFILL else "eos"]
  out, logits = [], []
  width = len(toks) + n  # fixed shape (one compilation); causal: later padding is not seen
  pad = lambda a: jnp.array([a + [0] * (width - len(a))])
  for _ in range(n):
    lg = np.asarray(_apply(params, pad(toks), pad(pos), pad(gap))[0, len(toks) - 1])
    logits.append(lg)
    t = int(np.argmax(np.where(allowed, lg, -np.inf)))
    out.append(t)
    if t == stop:
      break
    toks.append(t)
    pos.append(pos[-1] + 1)  # generation, and an infilled middle under "continued"
    gap.append(gap[-1] + (mode == sample_lib.INFILL))
  return out, np.stack(logits)


@pytest.mark.parametrize("mode", [sample_lib.INFILL, sample_lib.GENERATE])
def test_cached_decoding_equals_recomputing(params, mode):
  if mode == sample_lib.INFILL:
    prompts = _prompts()
  else:
    prompts = [sample_lib.generate_prompt(SP), sample_lib.generate_prompt(SP, [5, 6, 7, 8])]
  sc = sample_lib.SampleConfig(temperature=0.0, max_new=8)
  res = sample_lib.sample(CFG, params, prompts, SP, MODEL_VOCAB, mode=mode, sc=sc, with_logits=True)
  nocache = sample_lib.sample(
    CFG, params, prompts, SP, MODEL_VOCAB, mode=mode, sc=sc, use_cache=False
  )
  for i, p in enumerate(prompts):
    ref, ref_logits = _reference(params, p, mode, 8)
    assert res.tokens[i] == [t for t in ref if t != SP["eom"]]
    assert nocache.tokens[i] == res.tokens[i]
    np.testing.assert_allclose(res.logits[i, : len(ref)], ref_logits, atol=2e-5, rtol=1e-5)


def test_infill_layout_positions():
  p = sample_lib.infill_prompt([7, 8], [9], SP, positions="continued")
  assert p.tokens.tolist() == [SP["bos"], 7, 8, SP["mask"], 9, SP["eos"], SP["mid"]]
  assert p.pos.tolist() == [0, 1, 2, 3, 4, 5, 3]
  assert p.gap.tolist() == [0, 0, 0, 0, 0, 0, 1]
  cropped = sample_lib.infill_prompt(
    [7, 8], [9], SP, start=10, bos=False, eos=False, positions="continued"
  )
  assert cropped.pos.tolist() == [10, 11, 12, 13, 12]
  seq = sample_lib.infill_prompt([7, 8], [9], SP, positions="sequential")
  assert seq.pos.tolist() == list(range(7))


def test_stop_before_ends_a_row_without_keeping_the_token(params):
  sc = sample_lib.SampleConfig(temperature=0.0, max_new=6)
  forced = _forced(params, 5)
  stop = np.zeros(V, bool)
  stop[5] = True
  plain = sample_lib.sample(CFG, forced, _prompts(), SP, MODEL_VOCAB, mode=sample_lib.INFILL, sc=sc)
  assert plain.tokens == [[5] * 6] * 2 and plain.stopped == [False, False]
  cut = sample_lib.sample(
    CFG, forced, _prompts(), SP, MODEL_VOCAB, mode=sample_lib.INFILL, sc=sc, stop_before=stop
  )
  assert cut.tokens == [[5], [5]] and cut.stopped == [True, True]  # the first token is kept


def _forced(params, token):
  """Params under which every step's logits prefer `token`: zero blocks, constant embedding."""
  out = jax.tree.map(jnp.zeros_like, params)
  out["embed"] = jnp.ones_like(params["embed"])
  out["head"] = out["head"].at[:, token].set(1.0)
  return out


def test_eom_stops_infill_and_eos_stops_generation(params):
  sc = sample_lib.SampleConfig(temperature=0.0, max_new=6)
  res = sample_lib.sample(
    CFG, _forced(params, SP["eom"]), _prompts(), SP, MODEL_VOCAB, mode=sample_lib.INFILL, sc=sc
  )
  assert res.stopped == [True, True] and res.tokens == [[], []]
  # EOS is banned while infilling, EOM while generating.
  res = sample_lib.sample(
    CFG, _forced(params, SP["eos"]), _prompts(), SP, MODEL_VOCAB, mode=sample_lib.INFILL, sc=sc
  )
  assert res.stopped == [False, False] and all(len(t) == 6 for t in res.tokens)
  assert all(t < 98 for row in res.tokens for t in row)
  gen = sample_lib.sample(
    CFG,
    _forced(params, SP["eos"]),
    [sample_lib.generate_prompt(SP)],
    SP,
    MODEL_VOCAB,
    mode=sample_lib.GENERATE,
    sc=sc,
  )
  assert gen.stopped == [True] and gen.tokens == [[]]


def test_top_k_1_is_greedy_and_seeds_are_deterministic(params):
  prompts = _prompts(1)
  run = lambda sc, seed: (
    sample_lib.sample(
      CFG, params, prompts, SP, MODEL_VOCAB, mode=sample_lib.INFILL, sc=sc, seed=seed
    ).tokens
  )
  greedy = run(sample_lib.SampleConfig(temperature=0.0, max_new=8), 0)
  assert run(sample_lib.SampleConfig(temperature=1.5, top_k=1, max_new=8), 3) == greedy
  hot = sample_lib.SampleConfig(temperature=2.0, max_new=8)
  assert run(hot, 5) == run(hot, 5)
  assert run(hot, 5) != run(hot, 6)
  # A tiny nucleus keeps only the top token: greedy again.
  assert run(sample_lib.SampleConfig(temperature=1.0, top_p=1e-6, max_new=8), 9) == greedy


def test_rows_pads_the_batch_and_returns_the_given_prompts_only(params):
  prompts = _prompts(2)
  sc = sample_lib.SampleConfig(temperature=0.0, max_new=8)
  run = lambda ps, rows: sample_lib.sample(
    CFG, params, ps, SP, MODEL_VOCAB, mode=sample_lib.INFILL, sc=sc, rows=rows, with_logits=True
  )
  alone, padded = run(prompts, 0), run(prompts, 5)
  assert len(padded.tokens) == len(padded.stopped) == len(padded.logits) == 2
  assert padded.tokens == alone.tokens and padded.stopped == alone.stopped
  np.testing.assert_allclose(padded.logits, alone.logits, atol=1e-5)
  assert run(prompts[1:], 4).tokens == alone.tokens[1:]  # padded with copies of its own prompt


def test_filter_logits_top_k_and_top_p():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  allowed = np.ones(4, bool)
  kept = lambda sc: np.asarray(sample_lib.filter_logits(logits, sc, allowed))[0] > -1e30
  assert kept(sample_lib.SampleConfig(top_k=2)).tolist() == [True, True, False, False]
  assert kept(sample_lib.SampleConfig(top_p=0.7)).tolist() == [True, True, False, False]
  assert kept(sample_lib.SampleConfig(top_p=0.9)).tolist() == [True, True, True, False]
  allowed[0] = False
  assert kept(sample_lib.SampleConfig()).tolist() == [False, True, True, True]


def test_prompt_too_long_is_refused(params):
  long = sample_lib.generate_prompt(SP, list(range(60)))
  with pytest.raises(ValueError, match="exceeds the model's context"):
    sample_lib.sample(
      CFG,
      params,
      [long],
      SP,
      MODEL_VOCAB,
      mode=sample_lib.GENERATE,
      sc=sample_lib.SampleConfig(max_new=8),
    )


@pytest.mark.parametrize("max_tokens, calls", [(10, [8, 2] * 2), (0, [])])
def test_generate_without_eos_stops_at_max_tokens(monkeypatch, max_tokens, calls):
  # A sample that never draws EOS is "not decoded" and leaves the loop at --max-tokens: no
  # one-token calls after it (the old loop sampled it until EOS and counted it decoded).
  from fimjax import inference

  seen = []

  def fake_sample(cfg, params, prompts, *args, sc, **kw):
    seen.append(sc.max_new)
    return sample_lib.Result([[5] * sc.max_new for _ in prompts], [False] * len(prompts))

  monkeypatch.setattr(sample_lib, "sample", fake_sample)
  out = inference.generate_tokens(
    CFG,
    None,
    SP,
    MODEL_VOCAB,
    3,
    sc=sample_lib.SampleConfig(max_new=8),
    max_tokens=max_tokens,
    batch_size=2,
  )
  assert seen == calls  # two batches of 2 rows: 8 tokens, then the last 2 of 10
  assert [(len(d), f) for d, f in out] == [(max_tokens, False)] * 3


def test_generate_counts_eos_as_finished(monkeypatch):
  from fimjax import inference

  monkeypatch.setattr(
    sample_lib,
    "sample",
    lambda cfg, params, prompts, *a, sc, **kw: sample_lib.Result(
      [[7, 7] for _ in prompts], [True] * len(prompts)
    ),
  )
  out = inference.generate_tokens(
    CFG, None, SP, MODEL_VOCAB, 2, sc=sample_lib.SampleConfig(), max_tokens=10, batch_size=2
  )
  assert out == [([7, 7], True), ([7, 7], True)]
