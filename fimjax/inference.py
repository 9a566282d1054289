"""What the tools do with a model's params, apart from loading it: fill `<FILL>` holes in a text,
generate whole documents (and check them), score a document's tokens.

Holes (`find_holes`, `fill`): a marker alone on its line (indentation allowed) is a *line hole*,
filled with that whole line (newline and indentation included, possibly several lines); inside a
line it is a *span hole* (spaces right before the marker belong to it: BPE words carry their
leading space). Holes are filled left to right, each seeing the file before it with the earlier
holes filled (prefix) and the text up to the next hole (suffix; no EOS after it: training's window
that ends mid-document); the last hole's suffix runs to the end of the file, then EOS. A hole
ends where the model writes EOM; `stop="line"` also ends a line hole before a token holding a
newline. See docs/infill.md.

Generation (`generate_tokens`): documents longer than the context are written in windows: when
the cache is full, the last half-context of tokens (true positions, no BOS) prompts the next.
`check` counts a sample `decoded` (ended with EOS; BPE: valid UTF-8, TCT: every token consumed),
`parsed` (a YAML/JSON mapping) and `schema_valid` (passes the JSON schema).

The core under `fimjax.api` and the CLIs; it imports none of them.
"""

import dataclasses
import functools
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from fimjax import model as model_lib
from fimjax import sample as sample_lib
from fimjax import step as step_lib
from fimjax.data import corpus

# -------------------------------------------------------------------------------------- holes


MARKER = "<FILL>"
_LINE = re.compile(r"^[ \t]*" + re.escape(MARKER) + r"[ \t]*$")


class InfillError(ValueError):
  """A hole that cannot be filled; the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class Hole:
  start: int  # characters [start, end) of the file are replaced by the middle
  end: int
  kind: str  # "line" | "span"


def find_holes(text: str) -> list[Hole]:
  """Holes in file order. A line hole spans the newline before its line and the line itself."""
  holes = []
  for m in re.finditer(re.escape(MARKER), text):
    line_start = text.rfind("\n", 0, m.start()) + 1
    line_end = text.find("\n", m.end())
    line_end = len(text) if line_end < 0 else line_end
    if _LINE.match(text[line_start:line_end]):
      # BPE tokens start a line with "\n" + indentation: the hole begins at that newline.
      holes.append(Hole(max(line_start - 1, 0), line_end, "line"))
    else:  # BPE words carry their leading space: spaces before the marker join the hole
      start = m.start()
      while start > line_start and text[start - 1] in " \t":
        start -= 1
      holes.append(Hole(start, m.end(), "span"))
  return holes


def fill(
  text: str,
  tokenizer,
  cfg,
  params,
  special_ids: dict,
  model_vocab_size: int,
  *,
  sc: sample_lib.SampleConfig,
  positions: str,
  seed: int = 0,
  stop: str = "eom",
  log=None,
) -> str:
  """`text` with every hole filled (left to right). `positions`: the run's fim.positions;
  `stop="line"` ends line holes at the end of their first line."""
  if not find_holes(text):
    raise InfillError(
      f"no hole: mark one with {MARKER} (alone on a line for a whole line, "
      "inside a line for a span)"
    )
  if getattr(tokenizer, "name", "") != "bpe":
    raise InfillError(
      f"the {tokenizer.name} tokenizer encodes whole JSON documents only, so a "
      f"{MARKER} hole in the text cannot be expressed; infilling needs a model "
      "trained with --config.data.tokenizer=bpe (see docs/infill.md)"
    )
  out = fill_texts(
    [text],
    tokenizer,
    cfg,
    params,
    special_ids,
    model_vocab_size,
    sc=sc,
    positions=positions,
    seed=seed,
    stop=stop,
    log=log,
  )[0]
  if isinstance(out, InfillError):
    raise out
  return out


def fill_texts(
  texts: list[str],
  tokenizer,
  cfg,
  params,
  special_ids: dict,
  model_vocab_size: int,
  *,
  sc: sample_lib.SampleConfig,
  positions: str,
  seed: int = 0,
  stop: str = "eom",
  rows: int = 0,
  newlines=None,
  log=None,
  on_call=None,
) -> list:
  """Each text with its holes filled as `fill` fills one, hole i of every text in one sampler
  call (two with stop "line": only line holes stop at a newline); an InfillError in place of a
  text whose hole does not fit. `rows`: pad every call to this many rows (one shape to
  compile); `newlines`: `sample.newline_ids(tokenizer)`, if already known; `log(message)` hears
  of holes without an end of middle; `on_call()` runs after each sampler call."""
  if stop == "line" and newlines is None:
    newlines = sample_lib.newline_ids(tokenizer)
  holes = [find_holes(t) for t in texts]
  done, cursor, out = [""] * len(texts), [0] * len(texts), [None] * len(texts)
  for i in range(max(map(len, holes), default=0)):
    groups = {False: [], True: []}  # by: stops at a newline
    for r, text in enumerate(texts):
      if out[r] is not None or i >= len(holes[r]):
        continue
      hole, nxt = holes[r][i], (holes[r][i + 1].start if i + 1 < len(holes[r]) else len(text))
      done[r] += text[cursor[r] : hole.start]
      try:
        prompt = sample_lib.hole_prompt(
          tokenizer.encode(done[r]),
          tokenizer.encode(text[hole.end : nxt]),
          special_ids,
          cfg.context,
          sc.max_new,
          last=i + 1 == len(holes[r]),
          positions=positions,
        )
      except ValueError as e:
        out[r] = InfillError(str(e))
        continue
      groups[stop == "line" and hole.kind == "line"].append((r, prompt))
    for lines, group in groups.items():
      if not group:
        continue
      prompts = [p for _, p in group]
      res = sample_lib.sample(
        cfg,
        params,
        prompts,
        special_ids,
        model_vocab_size,
        mode=sample_lib.INFILL,
        sc=sc,
        seed=seed + i,
        positions=positions,
        stop_before=newlines if lines else None,
        rows=rows,
      )
      if on_call is not None:
        on_call()
      for j, (r, _) in enumerate(group):
        done[r] += tokenizer.decode(res.tokens[j])
        cursor[r] = holes[r][i].end
        if log is not None and not res.stopped[j]:
          h = holes[r][i]
          log(
            f"warning: hole {i + 1} ({h.kind}, line {texts[r].count(chr(10), 0, h.start) + 1}):"
            f" no end of middle within {sc.max_new} tokens; kept what was written"
          )
  return [o if o is not None else done[r] + texts[r][cursor[r] :] for r, o in enumerate(out)]


# ---------------------------------------------------------------------------------- generation


@dataclasses.dataclass
class Sample:
  tokens: list[int]
  finished: bool  # ended with EOS
  text: str | None = None
  decoded: bool = False
  parsed: bool = False
  schema_valid: bool = False
  error: str = ""


def generate_tokens(
  cfg,
  params,
  special_ids,
  model_vocab_size,
  num: int,
  *,
  sc,
  max_tokens: int,
  seed: int = 0,
  batch_size: int = 16,
) -> list[tuple[list[int], bool]]:
  """(document tokens, ended with EOS) for `num` samples of at most `max_tokens` tokens."""
  window = min(sc.max_new, cfg.context - 1)
  keep = cfg.context // 2
  out = []
  for b0 in range(0, num, batch_size):
    n = min(batch_size, num - b0)
    # done[i]: None while sampling, True after EOS, False when out of tokens (not decoded).
    docs, done = [[] for _ in range(n)], [None if max_tokens > 0 else False] * n
    chunk = 0
    while any(d is None for d in done):
      rows = [i for i in range(n) if done[i] is None]
      prompts = [continuation_prompt(docs[i], special_ids, keep) for i in rows]
      room = cfg.context - max(len(p.tokens) for p in prompts)
      budget = max(len(docs[i]) for i in rows)
      step_sc = dataclasses.replace(sc, max_new=min(window, room, max(max_tokens - budget, 1)))
      res = sample_lib.sample(
        cfg,
        params,
        prompts,
        special_ids,
        model_vocab_size,
        mode=sample_lib.GENERATE,
        sc=step_sc,
        seed=seed * 100_003 + b0 * 1009 + chunk,
        rows=batch_size,
      )
      chunk += 1
      for j, i in enumerate(rows):
        docs[i].extend(res.tokens[j])
        if res.stopped[j]:
          done[i] = True
        elif len(docs[i]) >= max_tokens:
          docs[i], done[i] = docs[i][:max_tokens], False  # ran out of tokens: leaves the loop
    out.extend((d, f is True) for d, f in zip(docs, done))
  return out


def continuation_prompt(doc_tokens: list[int], special_ids: dict, keep: int) -> sample_lib.Prompt:
  """BOS + a document's tokens, or, past `keep` - 1 tokens, its last `keep` at their true
  positions (no BOS): the prompt that continues it."""
  start = max(0, len(doc_tokens) - keep + 1)
  return sample_lib.generate_prompt(
    special_ids, doc_tokens[start - 1 :] if start else doc_tokens, start
  )


def check(sample: Sample, tokenizer, validator) -> Sample:
  """Fills decoded / parsed / schema_valid of a sample."""
  if not sample.finished:
    sample.error = "no EOS within the token limit"
    return sample
  try:
    if getattr(tokenizer, "name", "") == "tct":
      text, consumed, total = tokenizer.decode_full(sample.tokens)
      if consumed != total:
        raise ValueError(f"TCT consumed {consumed} of {total} tokens")
    else:
      text = tokenizer.decode(sample.tokens)
      if "\ufffd" in text:
        raise ValueError("invalid UTF-8")
    sample.text, sample.decoded = text, True
  except Exception as e:  # pylint: disable=broad-except  # any decoder failure counts the same
    sample.error = f"decode: {e}"
    return sample
  try:
    obj = corpus.load_workflow(text, json_file=text.lstrip().startswith("{"))
    if not isinstance(obj, dict):
      raise ValueError(f"a {type(obj).__name__}, not a mapping")
    obj = json.loads(corpus.to_json(obj))  # JSON-compatible, as the schema sees it
    sample.parsed = True
  except Exception as e:  # pylint: disable=broad-except  # YAML/JSON errors of many types
    sample.error = f"parse: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return sample
  if validator is not None:
    errors = sorted(validator.iter_errors(obj), key=lambda x: list(x.path))
    sample.schema_valid = not errors
    if errors:
      sample.error = f"schema: {errors[0].message[:200]}"
  return sample


def make_validator(schema_path: str = "", *, fix: str = "fix --schema"):
  """The validator of the JSON schema `schema_path`, default the workflow schema shipped with
  fimjax; a one-line ValueError ending with `fix` (the flag to change) when it cannot be read."""
  if schema_path and not os.path.isfile(schema_path):
    raise ValueError(f"JSON schema not found: {schema_path}; {fix}")
  try:
    return corpus.schema_validator(schema_path)
  except (OSError, ValueError) as e:  # not JSON
    raise ValueError(
      f"{schema_path}: not a JSON schema ({str(e).splitlines()[0]}); {fix}"
    ) from None


def counts(samples: list[Sample]) -> dict:
  return {
    "num": len(samples),
    "decoded": sum(s.decoded for s in samples),
    "parsed": sum(s.parsed for s in samples),
    "schema_valid": sum(s.schema_valid for s in samples),
  }


# ------------------------------------------------------------------------------------ scoring


SCORE_BATCH = 4  # windows per forward pass (one shape: one compilation)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _window_losses(params, tokens_BxL, pos_BxL, targets_BxL, *, cfg):
  logits_BxLxV = model_lib.apply(cfg, params, tokens_BxL, pos_BxL, jnp.zeros_like(tokens_BxL))
  return step_lib.cross_entropy(cfg, logits_BxLxV, targets_BxL)


def token_losses(cfg, params, doc_tokens, special_ids: dict) -> np.ndarray:
  """[len(doc_tokens) + 1] fp32: the next-token loss (nats) of each token and of the EOS after
  them, given BOS and what precedes, as `eval_loss` counts them. A document longer than the
  context is read in windows that start half a context back (true positions, no BOS)."""
  seq = np.asarray([special_ids["bos"], *doc_tokens, special_ids["eos"]], np.int32)
  n, c = len(seq) - 1, cfg.context  # target t is seq[t + 1], predicted at input t
  windows, done = [], 0  # (first input, first target it scores)
  while done < n:
    start = 0 if done == 0 else done - c // 2
    windows.append((start, done))
    done = start + c
  out = np.empty(n, np.float32)
  for b0 in range(0, len(windows), SCORE_BATCH):
    batch = windows[b0 : b0 + SCORE_BATCH]
    tokens = np.full((SCORE_BATCH, c), special_ids["pad"], np.int32)
    targets, pos = np.zeros_like(tokens), np.zeros_like(tokens)
    for i, (start, _) in enumerate(batch):
      part = seq[start : start + c + 1]
      tokens[i, : len(part) - 1], targets[i, : len(part) - 1] = part[:-1], part[1:]
      pos[i] = np.arange(start, start + c)
    losses = np.asarray(jax.device_get(_window_losses(params, tokens, pos, targets, cfg=cfg)))
    for i, (start, first) in enumerate(batch):
      last = min(start + c, n)
      out[first:last] = losses[i, first - start : last - start]
  return out
