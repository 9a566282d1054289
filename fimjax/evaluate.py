"""Evaluation of a model: validation losses, infill exact match by hole kind, generation validity.

  python -m fimjax.evaluate --workdir DIR [--out report.json] [--step S] [--infill-holes N]
                            [--generate-samples N] [--max-new-tokens N] [--schema PATH]
                            [--corpus PATH] [--span-policy POLICY]

`validation_losses` runs the whole validation split (or the documents of `--corpus`, a held-out
folder encoded with the run's tokenizer) exactly once per variant with fixed seeds:
  eval_loss      next-token loss of plain (AR) windows: the left-to-right quality,
  eval_fim_loss  loss on the middle tokens (EOM included) of FIM windows: the infilling quality,
  eval_fim_context_loss  loss on prefix/suffix tokens of those FIM windows,
  eval_fim_{first,inside,eom}_{acc,loss}  argmax accuracy and loss at the middle's first token,
                 the rest of it, and its end (EOM): where infilling succeeds or fails.
FIM windows use the config's span policy (or `--span-policy`) and positions.

`infill_metrics` (`fimjax.infill_eval`): greedy infilling of fixed held-out holes by kind (value,
line, step, block, random spans of 1 / 2-8 / 9-32 / 33+ tokens), `eval.infill_holes` per kind:
exact match, written, the line stop rule and valid-after-fill.

`generation_metrics`: `generate_samples` workflows sampled from scratch (temperature 1, GEN_SEED);
rates that decode (ending with EOS within GEN_MAX_TOKENS), parse and pass the JSON schema
(`--schema`, else the run's data.schema_path, else the workflow schema shipped with fimjax).

DIR (or `--model DIR`): a run's workdir, its checkpoints/ folder (a copy will do) or one
checkpoints/<step> folder. The losses need documents: the run's token cache when it is there
(and holds the model's tokenizer), else `--corpus`.
"""

import json
import logging
import math
import pathlib
import sys

import absl.flags
import jax
import ml_collections

from fimjax import api
from fimjax import checkpoint
from fimjax import cli
from fimjax import inference
from fimjax import infill_eval
from fimjax import model as model_lib
from fimjax import step as step_lib
from fimjax.data import cache as cache_lib
from fimjax.data import corpus as corpus_lib
from fimjax.data import fim
from fimjax.data import pipeline

log = logging.getLogger(__name__)
GEN_SEED = 7
PARTS = ("first", "inside", "eom")
GEN_MAX_TOKENS = 1024  # a generated workflow longer than this counts as not decoded
EVAL_DEFAULTS = {"infill_holes": 16, "generate_samples": 8, "max_new_tokens": 64, "in_loop": True}


def eval_settings(config) -> dict:
  """The `eval` section with defaults (runs saved before it existed have none)."""
  section = config.get("eval") if hasattr(config, "get") else None
  return {k: (section.get(k, v) if section is not None else v) for k, v in EVAL_DEFAULTS.items()}


def _split_sums(config, docs, special_ids, state, eval_step, mesh, *, fim: bool,
                span_policy: str = "") -> dict:
  """Sums of the eval step's outputs over every batch of `docs` (the validation split)."""
  totals = None
  for batch in pipeline.make_eval_batches(
      config, docs, special_ids, fim=fim, batch_size=config.train.eval_batch_size,
      process_index=jax.process_index(), process_count=jax.process_count(),
      span_policy=span_policy):
    sums = eval_step(state, step_lib.shard_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  if totals is None:
    raise ValueError("the validation split is empty: raise config.data.val_fraction "
                     "or add files to the corpus")
  return {k: float(v) for k, v in jax.device_get(totals).items()}


def _ratio(num: float, den: float) -> float:
  return num / den if den else float("nan")


def validation_losses(config: ml_collections.ConfigDict, cache, state, eval_step, mesh, *,
                      docs=None, span_policy: str = "") -> dict:
  """Losses and FIM accuracies (module doc) on `docs` (default: the validation split)."""
  docs = cache.documents("validation") if docs is None else docs
  ar = _split_sums(config, docs, cache.special_ids, state, eval_step, mesh, fim=False)
  fim = _split_sums(config, docs, cache.special_ids, state, eval_step, mesh, fim=True,
                    span_policy=span_policy)
  out = {
      "eval_loss": _ratio(ar["loss_sum"], ar["count"]),
      "eval_fim_loss": _ratio(fim["fim_loss_sum"], fim["fim_count"]),
      "eval_fim_context_loss": _ratio(fim["ar_loss_sum"], fim["ar_count"]),
      "eval_tokens": ar["count"],
  }
  for part in PARTS:
    if f"{part}_count" in fim:
      out[f"eval_fim_{part}_acc"] = _ratio(fim[f"{part}_correct"], fim[f"{part}_count"])
      out[f"eval_fim_{part}_loss"] = _ratio(fim[f"{part}_loss_sum"], fim[f"{part}_count"])
  return out


# ---------------------------------------------------------------------------------- generation


def generation_metrics(model: api.Model, *, num: int, max_tokens: int = GEN_MAX_TOKENS,
                       validator=None, seed: int = GEN_SEED, batch_size: int = 16) -> dict:
  """Rates of `num` samples (temperature 1) that decode, parse and pass `validator`'s schema."""
  samples = model.samples(num, temperature=1.0, max_tokens=max_tokens, seed=seed,
                          batch_size=batch_size, validator=validator)
  c = inference.counts(samples)
  n = max(c["num"], 1)
  return {"gen_num": c["num"], "gen_decoded_rate": c["decoded"] / n,
          "gen_parsed_rate": c["parsed"] / n, "gen_schema_valid_rate": c["schema_valid"] / n}


def make_eval_step(config, cache, mesh):
  """The eval step with the per-part FIM sums (it knows the cache's EOM id)."""
  return step_lib.make_eval_step(config, cache.model_vocab_size, mesh,
                                 eom_id=cache.special_ids["eom"])


def evaluate(config, cache, state, mesh, eval_step=None, *, sampling: bool = True,
             schema_path: str = "", schema_fix: str = "", docs=None, span_policy: str = "",
             **overrides) -> dict:
  """Losses, plus infill and generation metrics when `sampling` (settings: config.eval), on
  `docs` (default: the validation split; generation does not depend on them). The JSON schema
  is `schema_path`, else the run's data.schema_path, else the bundled workflow schema;
  `schema_fix` ends the error when it cannot be read (default: names data.schema_path)."""
  s = {**eval_settings(config), **{k: v for k, v in overrides.items() if v is not None}}
  validator = None
  if sampling:  # before the losses: a wrong path stops at once
    validator = inference.make_validator(
        schema_path or config.data.get("schema_path", ""), fix=schema_fix or
        "fix --config.data.schema_path, or set it to '' for the workflow schema shipped with "
        "fimjax")
  if eval_step is None:
    eval_step = make_eval_step(config, cache, mesh)
  docs = cache.documents("validation") if docs is None else docs
  out = validation_losses(config, cache, state, eval_step, mesh, docs=docs,
                          span_policy=span_policy)
  if not sampling:
    return out
  if jax.process_count() > 1:  # the sampler fetches whole arrays to one host
    log.warning("infill/generation metrics are computed in single-process runs only; run "
                "python -m fimjax.evaluate --workdir ... on one host")
    return out
  tok = cache.tokenizer()
  model = api.Model(config, model_lib.ModelConfig.from_config(config, cache.model_vocab_size),
                    state["params"], tok, cache.special_ids, cache.model_vocab_size)
  with jax.set_mesh(mesh):
    if s["infill_holes"] > 0:
      out.update(infill_eval.infill_metrics(
          model.model_config, model.params, docs, cache.special_ids, cache.model_vocab_size,
          tokenizer=tok, per_kind=int(s["infill_holes"]), max_new=int(s["max_new_tokens"]),
          positions=config.fim.positions, validator=validator))
    if s["generate_samples"] > 0:
      out.update(generation_metrics(model, num=int(s["generate_samples"]), validator=validator))
  return out


def _json_safe(report: dict) -> dict:
  return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
          for k, v in report.items()}


def main(argv=None) -> int:
  p = cli.ArgumentParser(prog="python -m fimjax.evaluate", description=__doc__.split("\n")[0])
  p.add_argument("--workdir", "--model", dest="workdir", required=True,
                 help="a run's workdir, its checkpoints/ folder (or a copy) or one step folder")
  p.add_argument("--out", help="write the JSON report here (default: print it)")
  p.add_argument("--step", type=int)
  p.add_argument("--infill-holes", type=cli.number(low=0),
                 help="default: config eval.infill_holes")
  p.add_argument("--generate-samples", type=cli.number(low=0),
                 help="default: config eval.generate_samples")
  p.add_argument("--max-new-tokens", type=cli.number(low=1),
                 help="default: config eval.max_new_tokens")
  p.add_argument("--schema", default="", help="JSON schema for validity (default: the run's "
                 "data.schema_path, else the workflow schema shipped with fimjax)")
  p.add_argument("--corpus", default="", help="evaluate on these files/folders (comma-separated; "
                 "a held-out repository) instead of the validation split (needed when the "
                 "run's token cache is not there)")
  p.add_argument("--span-policy", default="", choices=("",) + fim_policies(),
                 help="holes of the FIM losses (default: the run's fim.span_policy)")
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  if args.out and (problem := cli.output_error(args.out)):
    print(f"error: --out {problem}", file=sys.stderr)  # before the evaluation
    return 2
  report = evaluate_workdir(args.workdir, step=args.step, infill_holes=args.infill_holes,
                            generate_samples=args.generate_samples,
                            max_new_tokens=args.max_new_tokens, schema_path=args.schema,
                            corpus=args.corpus, span_policy=args.span_policy)
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


def fim_policies() -> tuple:
  return fim.SPAN_POLICIES


class _Vocab:
  """What `evaluate` reads of a token cache, from a model loaded without one (losses on
  `--corpus` files)."""

  def __init__(self, model: api.Model):
    self.special_ids, self.model_vocab_size = model.special_ids, model.model_vocab_size
    self._tokenizer = model.tokenizer

  def tokenizer(self):
    return self._tokenizer


def _run_cache(model: api.Model, path: str):
  """The run's token cache for the validation losses, with the model's own tokenizer."""
  run = api.locate(path)[3]
  where = checkpoint.cache_dir(model.config, run) if run or model.config.data.cache_dir else None
  if where is None or cache_lib.read_meta(pathlib.Path(where)) is None:
    raise FileNotFoundError(f"no data for the losses: no token cache at "
                            f"{where or '<workdir>/cache'}; pass --corpus FILES (workflow files "
                            "or folders, comma-separated)")
  cache = cache_lib.load_cache(where)
  if (now := cache_lib.tokenizer_id(cache.meta)) != model.tokenizer_id:
    raise checkpoint.tokenizer_mismatch(model.tokenizer_id, now, f"the token cache {where}",
                                        "evaluate with --corpus instead")
  return cache


def evaluate_workdir(workdir: str, *, step=None, schema_path: str = "", corpus: str = "",
                     span_policy: str = "", **overrides):
  """The JSON report of a checkpoint (`workdir`: anything `api.load` takes) on `corpus` files
  when given, else the run's validation split; or an error message (str)."""
  if not absl.flags.FLAGS.is_parsed():
    absl.flags.FLAGS.mark_as_parsed()  # grain reads absl flags
  try:
    model, state, mesh = api.open_checkpoint(workdir, step=step)
    config, docs, held_out = model.config, None, {}
    if corpus:
      docs, summary = cache_lib.encode_documents(
          [c.strip() for c in corpus.split(",") if c.strip()], model.tokenizer,
          max_file_bytes=config.data.max_file_bytes, jsonc=config.data.get("jsonc", False),
          text_field=config.data.get("text_field", "content"),
          documents=corpus_lib.document_kind(
              config.data.get("documents", "auto"), model.tokenizer.name,
              config.data.get("tct_module", corpus_lib.WORKFLOW_TCT)))
      held_out, vocab = {"corpus": corpus, "corpus_summary": summary}, _Vocab(model)
    else:
      vocab = _run_cache(model, workdir)
    fix = ("fix --schema, or leave it out for the workflow schema shipped with fimjax"
           if schema_path else "the run's data.schema_path is not here: pass --schema PATH")
    metrics = evaluate(config, vocab, state, mesh, schema_path=schema_path, schema_fix=fix,
                       docs=docs, span_policy=span_policy, **overrides)
  except (FileNotFoundError, ValueError) as e:
    return str(e).splitlines()[0]
  settings = {**eval_settings(config), **{k: v for k, v in overrides.items() if v is not None}}
  return _json_safe({"workdir": workdir, "step": model.step, "fim_rate": config.fim.rate,
                     "span_policy": span_policy or config.fim.span_policy,
                     "tokenizer": model.tokenizer.name, "tokenizer_id": model.tokenizer_id,
                     **held_out, **settings, **metrics})


if __name__ == "__main__":
  sys.exit(main())
