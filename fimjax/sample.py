"""Jitted batched sampling with a KV cache: infilling (until EOM) and generation (until EOS).

The forward pass is the training model's (`model.apply` on the pure params dict) with a KV cache
(`model.init_cache`); `tests/sample_test.py` checks it against recomputing the whole sequence
without one at each step (`use_cache=False` samples that way).

Layout (as in training: the prompt is `fim.fim_example`'s inputs up to MID):
  infill      prompt `[BOS] prefix MASK suffix [EOS] MID`; prefix/MASK/suffix keep document
              positions (the span collapsed to MASK's position), MID and the middle follow the
              run's `fim.positions` with gap 1 (MID), 2, 3, ...; sampling stops at EOM, or
              (`stop_before`) before a token of a given set, such as one starting a new line.
  generation  prompt `BOS` (or any document start), pos 0, 1, ..., gap 0; stops at EOS.

A batch of prompts of different lengths is right-padded; each row writes its generated tokens
into the cache at its own slot (prompt length + t), so padding is overwritten before any query
can see it. The decode loop is a `lax.while_loop` over static shapes that ends when every row
has stopped or `max_new` tokens are out.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from fimjax import model as model_lib
from fimjax.data import fim as fim_lib

INFILL, GENERATE = "infill", "generate"
PROMPT_BUCKET = 32  # prompt lengths are padded to a multiple of this (fewer recompilations)


@dataclasses.dataclass(frozen=True)
class SampleConfig:
  """How tokens are drawn (hashable: a static jit argument). temperature 0 = greedy."""

  temperature: float = 1.0
  top_k: int = 0  # 0 = off
  top_p: float = 1.0  # 1.0 = off (nucleus sampling otherwise)
  max_new: int = 256  # generated tokens per row at most (stop token included)

  @property
  def greedy(self) -> bool:
    return self.temperature <= 0.0 or self.top_k == 1


# ------------------------------------------------------------------------------------ sampling


def filter_logits(logits_BxV, sc: SampleConfig, allowed_V):
  """Logits with banned ids, and those outside top-k / top-p, set to -inf (temperature applied)."""
  neg = jnp.finfo(jnp.float32).min
  x = jnp.where(allowed_V[None], logits_BxV, neg)
  if sc.greedy:
    return x
  x = x / sc.temperature
  if sc.top_k > 0:
    kth = jax.lax.top_k(x, sc.top_k)[0][:, -1:]
    x = jnp.where(x >= kth, x, neg)
  if sc.top_p < 1.0:
    sorted_BxV = jnp.sort(x, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(sorted_BxV, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly above each sorted entry
    keep = before < sc.top_p  # the top entry is always kept
    cut = jnp.min(jnp.where(keep, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
    x = jnp.where(x >= cut, x, neg)
  return x


def choose(key, logits_BxV, sc: SampleConfig, allowed_V):
  x = filter_logits(logits_BxV, sc, allowed_V)
  if sc.greedy:
    return jnp.argmax(x, axis=-1).astype(jnp.int32)
  return jax.random.categorical(key, x, axis=-1).astype(jnp.int32)


@functools.partial(
  jax.jit, static_argnames=("cfg", "sc", "mode", "d_pos", "use_cache", "with_logits")
)
def _sample(
  params,
  tokens_BxP,
  pos_BxP,
  gap_BxP,
  length_B,
  allowed_V,
  stop_id,
  stop_before_V,
  key,
  *,
  cfg,
  sc,
  mode,
  d_pos=1,
  use_cache=True,
  with_logits=False,
):
  """Tokens [B, N] (after each row's prompt), count [B] (stop token included), stopped [B].

  `d_pos`: how pos moves per generated token; a token in `stop_before_V` drawn after the first
  ends its row without being kept."""
  b, p = tokens_BxP.shape
  n, s = sc.max_new, p + sc.max_new
  rows = jnp.arange(b)
  last = length_B - 1
  d_gap = 1 if mode == INFILL else 0
  pos0_B = pos_BxP[rows, last] + d_pos  # position / gap of the first generated token
  gap0_B = gap_BxP[rows, last] + d_gap
  pad_tokens = lambda a: jnp.pad(a, ((0, 0), (0, n)))
  seq = (
    None
    if use_cache
    else {"tokens": pad_tokens(tokens_BxP), "pos": pad_tokens(pos_BxP), "gap": pad_tokens(gap_BxP)}
  )
  if use_cache:
    logits_BxPxV, cache = model_lib.apply(
      cfg,
      params,
      tokens_BxP,
      pos_BxP,
      gap_BxP,
      cache=model_lib.init_cache(cfg, b, s),
      cache_start=jnp.zeros((b,), jnp.int32),
    )
    first_BxV = logits_BxPxV[rows, last]
  else:
    cache = None
    first_BxV = model_lib.apply(cfg, params, seq["tokens"], seq["pos"], seq["gap"])[rows, last]

  def pick(step, logits_BxV):
    return choose(jax.random.fold_in(key, step), logits_BxV, sc, allowed_V)

  tok0 = pick(0, first_BxV)
  out = jnp.zeros((b, n), jnp.int32).at[:, 0].set(tok0)
  logit_buf = (
    jnp.zeros((b, n, first_BxV.shape[-1]), jnp.float32).at[:, 0].set(first_BxV)
    if with_logits
    else jnp.zeros((), jnp.float32)
  )
  state = {
    "t": jnp.ones((), jnp.int32),
    "out": out,
    "done": tok0 == stop_id,
    "count": jnp.ones((b,), jnp.int32),
    "cache": cache,
    "logits": logit_buf,
    "seq": seq,
  }

  def cond(st):
    return (st["t"] < n) & ~jnp.all(st["done"])

  def body(st):
    t = st["t"]
    fed_B = st["out"][:, t - 1]  # token t-1 is fed at slot length + t - 1
    pos_B, gap_B = pos0_B + (t - 1) * d_pos, gap0_B + (t - 1) * d_gap
    slot_B = length_B + t - 1
    st = dict(st)
    if use_cache:
      logits_Bx1xV, st["cache"] = model_lib.apply(
        cfg,
        params,
        fed_B[:, None],
        pos_B[:, None],
        gap_B[:, None],
        cache=st["cache"],
        cache_start=slot_B,
      )
      logits_BxV = logits_Bx1xV[:, 0]
    else:
      seq = {
        k: st["seq"][k].at[rows, slot_B].set(v)
        for k, v in (("tokens", fed_B), ("pos", pos_B), ("gap", gap_B))
      }
      st["seq"] = seq
      logits_BxV = model_lib.apply(cfg, params, seq["tokens"], seq["pos"], seq["gap"])[rows, slot_B]
    tok_B = pick(t, logits_BxV)
    cut_B = stop_before_V[tok_B]
    st["out"] = st["out"].at[:, t].set(jnp.where(st["done"] | cut_B, 0, tok_B))
    st["count"] = st["count"] + (~st["done"] & ~cut_B).astype(jnp.int32)
    st["done"] = st["done"] | (tok_B == stop_id) | cut_B
    if with_logits:
      st["logits"] = st["logits"].at[:, t].set(logits_BxV)
    st["t"] = t + 1
    return st

  st = jax.lax.while_loop(cond, body, state)
  count = st["count"]
  out = jnp.where(jnp.arange(n)[None] < count[:, None], st["out"], 0)
  return out, count, st["done"], st["logits"]


# ------------------------------------------------------------------------------ numpy front end


@dataclasses.dataclass
class Prompt:
  """One row: tokens with their position ids (numpy int arrays of equal length)."""

  tokens: np.ndarray
  pos: np.ndarray
  gap: np.ndarray


@dataclasses.dataclass
class Result:
  tokens: list[list[int]]  # generated tokens per row, stop token removed
  stopped: list[bool]  # the row ended with its stop token (EOM / EOS)
  logits: np.ndarray | None = None  # [B, N, V] with `with_logits`


def newline_ids(tokenizer) -> np.ndarray:
  """[vocab] bool: ids whose text holds a newline (where the `line` stop rule ends a middle)."""
  return np.array(["\n" in tokenizer.decode([i]) for i in range(tokenizer.vocab_size)], bool)


def allowed_ids(special_ids: dict, vocab_size: int, model_vocab_size: int, mode: str) -> np.ndarray:
  """[vocab_size] bool: content ids and the mode's stop token (EOM infill, EOS generation)."""
  ok = np.zeros(vocab_size, bool)
  ok[: min(special_ids["bos"], model_vocab_size)] = True  # the tokenizer's ids
  ok[special_ids["pad"]] = False
  ok[special_ids["eom" if mode == INFILL else "eos"]] = True
  return ok


def infill_prompt(
  prefix, suffix, special_ids, *, positions: str, start: int = 0, bos: bool = True, eos: bool = True
) -> Prompt:
  """`[BOS] prefix MASK suffix [EOS] MID` with training's positions (`fim.positions`).

  `start` is the document position of the prompt's first token: 0 for BOS; a prefix cropped
  from the left has no BOS and keeps its true positions (BOS is position 0, the doc's token k is
  at k + 1).
  """
  sp = special_ids
  pre = ([sp["bos"]] if bos else []) + list(prefix)
  suf = list(suffix) + ([sp["eos"]] if eos else [])
  ex = fim_lib.fim_example(
    pre + suf, len(pre), 0, fim_lib.PSM, sp, start=start, positions=positions
  )
  return Prompt(*(np.asarray(ex[k], np.int32) for k in ("tokens", "pos", "gap")))


def crop(prefix: list[int], suffix: list[int], budget: int) -> tuple[int, int]:
  """(prefix tokens dropped from the left, suffix tokens kept): the hole's nearest context."""
  half = budget // 2
  keep_suf = min(len(suffix), max(half, budget - len(prefix)))
  keep_pre = min(len(prefix), budget - keep_suf)
  return len(prefix) - keep_pre, keep_suf


def hole_prompt(
  prefix: list[int],
  suffix: list[int],
  special_ids: dict,
  context: int,
  max_new: int,
  *,
  last: bool,
  positions: str,
) -> Prompt:
  """The FIM prompt of one hole, cropped to leave `max_new` tokens in `context`."""
  budget = context - max_new - 4  # BOS, MASK, EOS, MID
  if budget < 2:
    raise ValueError(
      f"--max-tokens {max_new} leaves no room for context in the model's "
      f"context of {context} tokens"
    )
  drop, keep = crop(prefix, suffix, budget)
  return infill_prompt(
    prefix[drop:],
    suffix[:keep],
    special_ids,
    positions=positions,
    start=drop + 1 if drop else 0,
    bos=drop == 0,
    eos=last and keep == len(suffix),
  )


def generate_prompt(special_ids, doc_tokens=(), start: int = 0) -> Prompt:
  """A document start: `[BOS] doc_tokens` (BOS only when `start == 0`), pos start.., gap 0."""
  toks = ([special_ids["bos"]] if start == 0 else []) + list(doc_tokens)
  p0 = 0 if start == 0 else start
  return Prompt(
    np.asarray(toks, np.int32),
    np.arange(p0, p0 + len(toks), dtype=np.int32),
    np.zeros(len(toks), np.int32),
  )


def sample(
  cfg: model_lib.ModelConfig,
  params,
  prompts: list[Prompt],
  special_ids: dict,
  model_vocab_size: int,
  *,
  mode: str,
  sc: SampleConfig,
  seed: int = 0,
  positions: str = "continued",
  stop_before: np.ndarray | None = None,
  use_cache: bool = True,
  with_logits: bool = False,
  rows: int = 0,
) -> Result:
  """Samples a batch of prompts; every prompt plus `sc.max_new` must fit in `cfg.context`.

  `positions`: the run's `fim.positions` (how an infilled middle's pos moves); `stop_before`:
  [vocab] bool, ids that end a row (not kept) when drawn after its first token; `rows`: run a
  batch of at least this many rows, the first prompt repeated (a fixed batch shape compiles
  once), and return the given prompts' results only."""
  given = len(prompts)
  prompts = prompts + prompts[:1] * max(rows - given, 0)
  if mode not in (INFILL, GENERATE):
    raise ValueError(f"mode must be {INFILL!r} or {GENERATE!r}, not {mode!r}")
  lengths = np.array([len(p.tokens) for p in prompts], np.int32)
  if lengths.min() < 1:
    raise ValueError("empty prompt")
  if lengths.max() + sc.max_new > cfg.context:
    raise ValueError(
      f"prompt of {lengths.max()} tokens + {sc.max_new} new tokens exceeds the "
      f"model's context {cfg.context}"
    )
  width = min(-(-int(lengths.max()) // PROMPT_BUCKET) * PROMPT_BUCKET, cfg.context - sc.max_new)
  arr = {k: np.zeros((len(prompts), width), np.int32) for k in ("tokens", "pos", "gap")}
  arr["tokens"][:] = special_ids["pad"]
  for i, p in enumerate(prompts):
    for k in arr:
      arr[k][i, : len(p.tokens)] = getattr(p, k)
  allowed = allowed_ids(special_ids, cfg.vocab_size, model_vocab_size, mode)
  stop = special_ids["eom" if mode == INFILL else "eos"]
  cut = np.zeros(cfg.vocab_size, bool)
  if stop_before is not None:
    cut[: len(stop_before)] = stop_before
  d_pos = fim_lib.middle_pos_step(positions) if mode == INFILL else 1
  out, count, done, logits = jax.device_get(
    _sample(
      params,
      arr["tokens"],
      arr["pos"],
      arr["gap"],
      lengths,
      allowed,
      np.int32(stop),
      cut,
      jax.random.key(seed),
      cfg=cfg,
      sc=sc,
      mode=mode,
      d_pos=d_pos,
      use_cache=use_cache,
      with_logits=with_logits,
    )
  )
  toks = [[int(t) for t in out[i, : count[i]] if t != stop] for i in range(given)]
  return Result(toks, [bool(d) for d in done[:given]], logits[:given] if with_logits else None)
