"""Evaluation of a model: validation losses, infill exact match, generation validity.

  python -m fimjax.evaluate --workdir DIR [--out report.json] [--step S] [--infill-holes N]
                            [--generate-samples N] [--max-new-tokens N] [--schema PATH]

`validation_losses` runs the whole validation split exactly once per variant with fixed seeds:
  eval_loss      next-token loss of plain (AR) windows: the left-to-right quality,
  eval_fim_loss  loss on the middle tokens of FIM windows: the infilling quality,
  eval_fim_context_loss  loss on prefix/suffix tokens of those FIM windows.

`infill_metrics`: greedy infilling of a fixed set of held-out holes (validation documents,
HOLE_SEED): a middle counts as an exact match (`infill_exact*`) when the sampler writes exactly
its tokens and then EOM; `infill_written*` only asks that it writes them (stopping not required:
a small model learns the middle long before it learns where to stop). Span holes draw a length
bucket uniformly (1 token, 2-8, 9-32, 33+, up to max_new_tokens - 1), then a length and a place;
with the BPE tokenizer another `infill_holes // 4` holes are whole lines
(from a token starting with a newline to the next one: newline, indentation and content).
Prefix and suffix are the rest of the document, cropped around the hole to fit the context. Holes
are token spans, so this works with any tokenizer (TCT included).

`generation_metrics`: `generate_samples` workflows sampled from scratch (temperature 1, GEN_SEED);
rates that decode (ending with EOS within GEN_MAX_TOKENS), parse and pass the workflow JSON schema
(fimjax.generate).
"""

import argparse
import json
import logging
import math
import sys

import jax
import ml_collections
import numpy as np

from fimjax import step as step_lib
from fimjax.data import pipeline

log = logging.getLogger(__name__)
HOLE_SEED, GEN_SEED = 20_240, 7
BUCKETS = (("len1", 1, 1), ("len2_8", 2, 8), ("len9_32", 9, 32), ("len33plus", 33, 1 << 30))
GEN_MAX_TOKENS = 1024  # a generated workflow longer than this counts as not decoded
EVAL_DEFAULTS = {"infill_holes": 32, "generate_samples": 8, "max_new_tokens": 64, "in_loop": True}


def eval_settings(config) -> dict:
  """The `eval` section with defaults (runs saved before it existed have none)."""
  section = config.get("eval") if hasattr(config, "get") else None
  return {k: (section.get(k, v) if section is not None else v) for k, v in EVAL_DEFAULTS.items()}


def _split_sums(config, cache, state, eval_step, mesh, *, fim: bool) -> dict:
  """Sums of the eval step's outputs over every batch of the validation split."""
  totals = None
  for batch in pipeline.make_eval_batches(
      config, cache.documents("validation"), cache.special_ids, fim=fim,
      batch_size=config.train.eval_batch_size,
      process_index=jax.process_index(), process_count=jax.process_count()):
    sums = eval_step(state, step_lib.shard_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  if totals is None:
    raise ValueError("the validation split is empty: raise config.data.val_fraction "
                     "or add files to the corpus")
  return {k: float(v) for k, v in jax.device_get(totals).items()}


def _ratio(num: float, den: float) -> float:
  return num / den if den else float("nan")


def validation_losses(config: ml_collections.ConfigDict, cache, state, eval_step, mesh) -> dict:
  ar = _split_sums(config, cache, state, eval_step, mesh, fim=False)
  fim = _split_sums(config, cache, state, eval_step, mesh, fim=True)
  return {
      "eval_loss": _ratio(ar["loss_sum"], ar["count"]),
      "eval_fim_loss": _ratio(fim["fim_loss_sum"], fim["fim_count"]),
      "eval_fim_context_loss": _ratio(fim["ar_loss_sum"], fim["ar_count"]),
      "eval_tokens": ar["count"],
  }


# ----------------------------------------------------------------------------------- infilling


def bucket_of(length: int) -> str:
  return next(name for name, lo, hi in BUCKETS if lo <= length <= hi)


def line_starts(tokenizer, vocab_size: int) -> np.ndarray:
  """[vocab_size] bool: BPE ids whose text starts with a newline (where lines begin)."""
  return np.array([tokenizer.decode([i]).startswith("\n") for i in range(vocab_size)], bool)


def make_holes(docs, num: int, max_new: int, *, newline_ids=None, seed: int = HOLE_SEED) -> list:
  """Fixed held-out holes: dicts (doc, start, length, kind); kind is a bucket name or "line"."""
  rng = np.random.default_rng(seed)
  lengths = np.asarray(docs.lengths)
  usable = np.flatnonzero(lengths >= 1)
  holes, longest = [], max(1, max_new - 1)  # the sampler also writes EOM
  for _ in range(num if len(usable) else 0):
    d = int(rng.choice(usable))
    n = int(lengths[d])
    name, lo, hi = BUCKETS[rng.integers(len(BUCKETS))]
    hi = min(hi, n, longest)
    if lo > hi:  # document (or max_new) too short for the bucket: the longest possible
      lo = hi
    m = int(rng.integers(lo, hi + 1))
    holes.append({"doc": d, "start": int(rng.integers(0, n - m + 1)), "length": m,
                  "kind": bucket_of(m)})
  if newline_ids is not None:
    for _ in range(num // 4 if len(usable) else 0):
      for _attempt in range(20):
        d = int(rng.choice(usable))
        toks = np.asarray(docs[d])
        at = np.flatnonzero(newline_ids[toks])
        spans = [(a, b) for a, b in zip(at[:-1], at[1:]) if 2 <= b - a <= longest]
        if spans:
          a, b = spans[rng.integers(len(spans))]
          holes.append({"doc": d, "start": int(a), "length": int(b - a), "kind": "line"})
          break
  return holes


def exact_match_summary(holes: list, matches: list, prefix: str = "infill_exact") -> dict:
  """<prefix> (span holes), <prefix>_<bucket>, <prefix>_line, and counts infill_n_*."""
  out = {}
  span = [m for h, m in zip(holes, matches) if h["kind"] != "line"]
  if span:
    out[prefix], out["infill_n"] = float(np.mean(span)), len(span)
  for name in [b[0] for b in BUCKETS] + ["line"]:
    sel = [m for h, m in zip(holes, matches) if h["kind"] == name]
    if sel:
      out[f"{prefix}_{name}"], out[f"infill_n_{name}"] = float(np.mean(sel)), len(sel)
  return out


def infill_metrics(cfg, params, cache, *, num_holes: int, max_new: int, batch_size: int = 16,
                   seed: int = HOLE_SEED) -> dict:
  """Greedy exact match on fixed held-out holes of the validation split (see module doc)."""
  from fimjax import infill  # pylint: disable=g-import-not-at-top
  from fimjax import sample as sample_lib  # pylint: disable=g-import-not-at-top
  docs = cache.documents("validation")
  max_new = min(max_new, cfg.context // 2)
  newline = None
  if cache.meta.get("tokenizer") == "bpe":
    newline = line_starts(cache.tokenizer(), int(cache.meta["vocab_size"]))
  holes = make_holes(docs, num_holes, max_new, newline_ids=newline, seed=seed)
  sc = sample_lib.SampleConfig(temperature=0.0, max_new=max_new)
  matches, written = [], []
  for b0 in range(0, len(holes), batch_size):
    part = holes[b0:b0 + batch_size]
    prompts, truths = [], []
    for h in part:
      toks = [int(t) for t in np.asarray(docs[h["doc"]])]
      s, e = h["start"], h["start"] + h["length"]
      prompts.append(infill.hole_prompt(toks[:s], toks[e:], cache.special_ids, cfg.context,
                                        max_new, last=True))
      truths.append(toks[s:e])
    pad = batch_size - len(prompts)  # one batch shape: one compilation
    res = sample_lib.sample(cfg, params, prompts + prompts[:1] * pad, cache.special_ids,
                            cache.model_vocab_size, mode=sample_lib.INFILL, sc=sc)
    for i, truth in enumerate(truths):
      written.append(res.tokens[i][:len(truth)] == truth)
      matches.append(written[-1] and bool(res.stopped[i]) and len(res.tokens[i]) == len(truth))
  return {**exact_match_summary(holes, matches),
          **exact_match_summary(holes, written, "infill_written")}


# ---------------------------------------------------------------------------------- generation


def generation_metrics(cfg, params, cache, *, num: int, max_tokens: int = GEN_MAX_TOKENS,
                       schema_path="", seed: int = GEN_SEED, batch_size: int = 16) -> dict:
  from fimjax import generate  # pylint: disable=g-import-not-at-top
  from fimjax import sample as sample_lib  # pylint: disable=g-import-not-at-top
  try:
    validator = generate.make_validator(schema_path)
  except ValueError:  # no schema found: count decode/parse only
    validator = None
  sc = sample_lib.SampleConfig(temperature=1.0, max_new=cfg.context - 1)
  samples = generate.generate(cfg, params, cache, num, sc=sc, max_tokens=max_tokens, seed=seed,
                              validator=validator, batch_size=batch_size)
  c = generate.counts(samples)
  n = max(c["num"], 1)
  out = {"gen_num": c["num"], "gen_decoded_rate": c["decoded"] / n,
         "gen_parsed_rate": c["parsed"] / n}
  if validator is not None:
    out["gen_schema_valid_rate"] = c["schema_valid"] / n
  return out


def evaluate(config, cache, state, mesh, eval_step=None, *, sampling: bool = True,
             schema_path: str = "", **overrides) -> dict:
  """Losses, plus infill and generation metrics when `sampling` (settings: config.eval)."""
  from fimjax import model as model_lib  # pylint: disable=g-import-not-at-top
  s = {**eval_settings(config), **{k: v for k, v in overrides.items() if v is not None}}
  if eval_step is None:
    eval_step = step_lib.make_eval_step(config, cache.model_vocab_size, mesh)
  out = validation_losses(config, cache, state, eval_step, mesh)
  if not sampling:
    return out
  if jax.process_count() > 1:  # the sampler fetches whole arrays to one host
    log.warning("infill/generation metrics are computed in single-process runs only; run "
                "python -m fimjax.evaluate --workdir ... on one host")
    return out
  cfg = model_lib.ModelConfig.from_config(config, cache.model_vocab_size)
  params = state["params"]
  with jax.set_mesh(mesh):
    if s["infill_holes"] > 0:
      out.update(infill_metrics(cfg, params, cache, num_holes=int(s["infill_holes"]),
                                max_new=int(s["max_new_tokens"])))
    if s["generate_samples"] > 0:
      out.update(generation_metrics(cfg, params, cache, num=int(s["generate_samples"]),
                                    schema_path=schema_path or config.data.get("schema_path", "")))
  return out


def _json_safe(report: dict) -> dict:
  return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
          for k, v in report.items()}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m fimjax.evaluate", description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--out", help="write the JSON report here (default: print it)")
  p.add_argument("--step", type=int)
  p.add_argument("--infill-holes", type=int, help="default: config eval.infill_holes")
  p.add_argument("--generate-samples", type=int, help="default: config eval.generate_samples")
  p.add_argument("--max-new-tokens", type=int, help="default: config eval.max_new_tokens")
  p.add_argument("--schema", default="")
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  report = evaluate_workdir(args.workdir, step=args.step, infill_holes=args.infill_holes,
                            generate_samples=args.generate_samples,
                            max_new_tokens=args.max_new_tokens, schema_path=args.schema)
  if isinstance(report, str):
    print(f"error: {report}", file=sys.stderr)
    return 1
  text = json.dumps(report, indent=2)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      f.write(text + "\n")
    print(f"wrote {args.out}")
  print(text)
  return 0


def evaluate_workdir(workdir: str, *, step=None, schema_path: str = "", **overrides):
  """The JSON report of a run's checkpoint, or an error message (str)."""
  from fimjax import checkpoint  # pylint: disable=g-import-not-at-top
  from fimjax import sharding  # pylint: disable=g-import-not-at-top
  import absl.flags  # pylint: disable=g-import-not-at-top
  if not absl.flags.FLAGS.is_parsed():
    absl.flags.FLAGS.mark_as_parsed()  # grain reads absl flags
  try:
    config, cache, state, step = checkpoint.load_run(workdir, step=step)
    mesh = sharding.make_mesh(config.mesh)
    metrics = evaluate(config, cache, state, mesh, schema_path=schema_path, **overrides)
  except (FileNotFoundError, ValueError) as e:
    return str(e).splitlines()[0]
  settings = {**eval_settings(config), **{k: v for k, v in overrides.items() if v is not None}}
  return _json_safe({"workdir": workdir, "step": step, "fim_rate": config.fim.rate,
                     "tokenizer": cache.meta.get("tokenizer"), **settings, **metrics})


if __name__ == "__main__":
  sys.exit(main())
