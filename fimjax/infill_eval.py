"""Infill exact match on the holes users make, by kind, on fixed held-out holes.

Kinds (`KINDS`): `value` (a YAML value after `key:` or `- `), `line` (one whole line), `step` (a
list item that is a mapping, such as a step), `block` (a `key:` line with its block), from the
cache's structure marks (`fimjax.data.structure`; BPE only), and random spans of 1, 2-8, 9-32
and 33+ tokens. Each kind gets up to `per_kind` holes of at most `max_new - 1` tokens, drawn with
a fixed seed from the documents given (the validation split, or a held-out folder); a kind with
fewer candidates reports how many it had (`infill_n_<kind>`).

Per hole, greedy infilling from the document's own prefix and suffix (cropped around the hole to
fit the context) gives:
  exact       the middle's tokens, then EOM (the model wrote it and stopped by itself),
  written     the middle's tokens were written (stopping not required),
  line_stop   (line holes) exact once the middle is cut before its first token holding a
              newline: the `--stop line` rule of `fimjax.infill`, reported apart from `exact`,
  valid       (BPE; holes of documents that pass the schema) the filled document still parses
              as a workflow and passes the JSON schema.

`demo` fills one such hole of a run and shows it (the end of `python -m fimjax.main`).
"""

import json

import numpy as np

from fimjax import checkpoint
from fimjax import model as model_lib
from fimjax import sample as sample_lib
from fimjax.data import corpus
from fimjax.data import structure

HOLE_SEED = 20_240
STRUCTURE_KINDS = {
  "value": structure.VALUE,
  "line": structure.TEXT,
  "step": structure.STEP,
  "block": structure.BLOCK,
}
SPAN_BUCKETS = (
  ("span1", 1, 1),
  ("span2_8", 2, 8),
  ("span9_32", 9, 32),
  ("span33plus", 33, 1 << 30),
)
KINDS = tuple(STRUCTURE_KINDS) + tuple(b[0] for b in SPAN_BUCKETS)


def candidates(docs, kind: str, longest: int) -> list[tuple[int, int, int]]:
  """(doc, start, length) of every `kind` node (or single line) of at most `longest` tokens."""
  if docs.flags is None:
    return []
  out = []
  for d in range(len(docs)):
    s, n = int(docs.starts[d]), int(docs.lengths[d])
    fl = np.asarray(docs.flags[s : s + n]).astype(np.int64)
    if kind == "line":
      ends = np.append(np.flatnonzero(fl & structure.LINE), n)
      starts = np.flatnonzero(fl & structure.TEXT)
      length = ends[np.searchsorted(ends, starts, side="right")] - starts
    else:
      starts = np.flatnonzero(fl & STRUCTURE_KINDS[kind])
      length = np.asarray(docs.span[s : s + n])[starts].astype(np.int64)
    ok = (length >= 1) & (length <= longest)
    out.extend((d, int(a), int(m)) for a, m in zip(starts[ok], length[ok]))
  return out


def make_holes(
  docs, per_kind: int | None, max_new: int, *, seed: int = HOLE_SEED, kinds=KINDS
) -> list[dict]:
  """Fixed holes: dicts (doc, start, length, kind), up to `per_kind` of each of `kinds`.

  `per_kind=None` takes every structure node of the documents (exact match is then the split's
  own, not a sample's) and one random span per document in each length bucket. A kind's holes
  do not depend on which other kinds are asked for (all are drawn, then the asked ones kept).
  """
  if unknown := sorted(set(kinds) - set(KINDS)):
    raise ValueError(f"unknown hole kinds {unknown}: choose among {', '.join(KINDS)}")
  rng = np.random.default_rng(seed)
  longest = max(1, max_new - 1)  # the sampler also writes EOM
  holes = []
  for kind in STRUCTURE_KINDS:
    cands = candidates(docs, kind, longest)
    for i in sorted(rng.permutation(len(cands))[:per_kind]):
      d, a, m = cands[i]
      holes.append({"doc": d, "start": a, "length": m, "kind": kind})
  lengths = np.asarray(docs.lengths)
  for name, lo, hi in SPAN_BUCKETS:
    hi = min(hi, longest)
    usable = np.flatnonzero(lengths >= lo)
    if lo > hi or not len(usable):
      continue
    for n in range(len(usable) if per_kind is None else per_kind):
      d = int(usable[n] if per_kind is None else rng.choice(usable))
      m = int(rng.integers(lo, min(hi, lengths[d]) + 1))
      holes.append(
        {"doc": d, "start": int(rng.integers(0, lengths[d] - m + 1)), "length": m, "kind": name}
      )
  return [h for h in holes if h["kind"] in kinds]


def fill_holes(
  cfg,
  params,
  docs,
  special_ids,
  model_vocab_size,
  holes,
  *,
  max_new: int,
  positions: str,
  batch_size: int = 16,
) -> list[tuple[list[int], bool]]:
  """(written tokens, stopped with EOM) of greedy infilling, per hole."""
  sc = sample_lib.SampleConfig(temperature=0.0, max_new=max_new)
  out = []
  for b0 in range(0, len(holes), batch_size):
    prompts = []
    for h in holes[b0 : b0 + batch_size]:
      toks = np.asarray(docs[h["doc"]]).tolist()
      s, e = h["start"], h["start"] + h["length"]
      prompts.append(
        sample_lib.hole_prompt(
          toks[:s], toks[e:], special_ids, cfg.context, max_new, last=True, positions=positions
        )
      )
    res = sample_lib.sample(
      cfg,
      params,
      prompts,
      special_ids,
      model_vocab_size,
      mode=sample_lib.INFILL,
      sc=sc,
      positions=positions,
      rows=batch_size,
    )
    out.extend(zip(res.tokens, res.stopped))
  return out


def _is_valid_workflow(text: str, validator) -> bool:
  try:
    obj = corpus.load_workflow(text)
    return isinstance(obj, dict) and validator.is_valid(json.loads(corpus.to_json(obj)))
  except Exception:  # pylint: disable=broad-except  # any YAML/JSON failure means not valid
    return False


def score(holes, outputs, docs, *, tokenizer=None, newline=None, validator=None) -> list[dict]:
  """Per hole: exact, written, line_stop (line holes, with `newline` ids), valid (BPE with a
  `validator`, when the original document is valid; else None)."""
  original_ok = {}
  rows = []
  for h, (toks, stopped) in zip(holes, outputs):
    doc = np.asarray(docs[h["doc"]]).tolist()
    s, e = h["start"], h["start"] + h["length"]
    truth = doc[s:e]
    r = {"kind": h["kind"], "written": toks[: len(truth)] == truth}
    r["exact"] = r["written"] and stopped and len(toks) == len(truth)
    if newline is not None and h["kind"] == "line":
      cut = next((i for i in range(1, len(toks)) if newline[toks[i]]), len(toks))
      r["line_stop"] = toks[:cut] == truth and (stopped or cut < len(toks))
    if validator is not None and tokenizer is not None:
      if h["doc"] not in original_ok:
        original_ok[h["doc"]] = _is_valid_workflow(tokenizer.decode(doc), validator)
      r["valid"] = (
        _is_valid_workflow(tokenizer.decode(doc[:s] + toks + doc[e:]), validator)
        if original_ok[h["doc"]]
        else None
      )
    rows.append(r)
  return rows


def standard_error(rate: float, n: int) -> float:
  """Of a rate measured on n holes (binomial): a 96-hole sample at 30% is +-4.7 points."""
  return float(np.sqrt(rate * (1 - rate) / n)) if n else float("nan")


def summary(rows: list[dict]) -> dict:
  """infill_exact / _written (all holes), per kind infill_{exact,written}_<kind>,
  infill_n_<kind> and infill_se_<kind> (the standard error of its exact match),
  infill_exact_line_stop, infill_valid_after_fill (and its count)."""
  out = {}
  if rows:
    out["infill_exact"] = float(np.mean([r["exact"] for r in rows]))
    out["infill_written"] = float(np.mean([r["written"] for r in rows]))
    out["infill_n"] = len(rows)
  for kind in KINDS:
    sel = [r for r in rows if r["kind"] == kind]
    if sel:
      out[f"infill_exact_{kind}"] = float(np.mean([r["exact"] for r in sel]))
      out[f"infill_written_{kind}"] = float(np.mean([r["written"] for r in sel]))
      out[f"infill_n_{kind}"] = len(sel)
      out[f"infill_se_{kind}"] = standard_error(out[f"infill_exact_{kind}"], len(sel))
  stop = [r["line_stop"] for r in rows if "line_stop" in r]
  if stop:
    out["infill_exact_line_stop"] = float(np.mean(stop))
  valid = [r["valid"] for r in rows if r.get("valid") is not None]
  if valid:
    out["infill_valid_after_fill"] = float(np.mean(valid))
    out["infill_n_valid_checked"] = len(valid)
  return out


def infill_metrics(
  cfg,
  params,
  docs,
  special_ids,
  model_vocab_size,
  *,
  tokenizer,
  per_kind: int | None,
  max_new: int,
  positions: str,
  schema_path: str = "",
  seed: int = HOLE_SEED,
  kinds=KINDS,
  batch_size: int = 16,
  validator=None,
) -> dict:
  """`summary` of greedy infilling on `make_holes(docs, per_kind, ..., kinds=kinds)`;
  valid-after-fill against `validator`, else the JSON schema `schema_path` (default: the bundled
  one)."""
  max_new = min(max_new, cfg.context // 2)
  holes = make_holes(docs, per_kind, max_new, seed=seed, kinds=kinds)
  outputs = fill_holes(
    cfg,
    params,
    docs,
    special_ids,
    model_vocab_size,
    holes,
    max_new=max_new,
    positions=positions,
    batch_size=batch_size,
  )
  bpe = getattr(tokenizer, "name", "") == "bpe"
  newline = None
  validator = None
  if bpe:
    newline = sample_lib.newline_ids(tokenizer)
    validator = validator or corpus.schema_validator(schema_path)
  return summary(
    score(
      holes,
      outputs,
      docs,
      tokenizer=tokenizer if bpe else None,
      newline=newline,
      validator=validator,
    )
  )


def demo(workdir: str, *, kind: str = "line", context_lines: int = 3) -> str:
  """A newcomer's look at the model: one fixed held-out hole of `kind` (a validation document's
  line with a `key: value`) filled greedily, with the lines around it and the file's own text."""
  config, cache, state, step = checkpoint.load_run(workdir)
  cfg = model_lib.ModelConfig.from_config(config, cache.model_vocab_size)
  params = state["params"]
  tok = cache.tokenizer()
  if tok.name != "bpe":
    return f"(no text hole to show: the {tok.name} tokenizer has no line structure)"
  docs = cache.documents("validation")
  max_new = min(int(config.eval.max_new_tokens), cfg.context // 2)
  holes = [h for h in make_holes(docs, 64, max_new) if h["kind"] == kind]
  text = lambda h, a, b: tok.decode(np.asarray(docs[h["doc"]][a:b]).tolist())  # noqa: E731
  holes = [h for h in holes if ": " in text(h, h["start"], h["start"] + h["length"])] or holes
  if not holes:
    return "(no held-out hole to show)"
  h = holes[0]
  end = h["start"] + h["length"]
  [(written, stopped)] = fill_holes(
    cfg,
    params,
    docs,
    cache.special_ids,
    cache.model_vocab_size,
    [h],
    max_new=max_new,
    positions=config.fim.positions,
    batch_size=1,
  )
  truth, wrote = text(h, h["start"], end), tok.decode(written)
  before = text(h, 0, h["start"]).split("\n")[-context_lines - 1 :]
  after = text(h, end, None).split("\n")[: context_lines + 1]
  hole_line = ("\n" if truth.startswith("\n") else "") + "<FILL>"
  shown = "\n".join(before) + hole_line + "\n".join(after)
  verdict = (
    "exact match"
    if wrote == truth and stopped
    else "right text, but it did not stop"
    if wrote.startswith(truth)
    else "differs"
  )
  return (
    f"One held-out hole (validation file {int(h['doc'])}, a {kind} hole), step {step}:\n"
    + "\n".join("  | " + line for line in shown.split("\n"))
    + f"\n  model wrote: {wrote!r}{'' if stopped else ' (no end of middle)'}"
    f"\n  the file has: {truth!r}  -> {verdict}"
  )
