"""Evaluation of a model: validation losses, infill exact match by hole kind, generation validity.

The training loop calls `evaluate`; `evaluate_workdir` is the report of
`python -m fimjax.evaluate` (the command: fimjax/cli/evaluate.py).

`validation_losses` runs the whole validation split (or the documents of `--corpus`, a held-out
folder encoded with the run's tokenizer) exactly once per variant with fixed seeds:
  eval_loss      next-token loss of plain (AR) windows: the left-to-right quality,
  eval_fim_loss  loss on the middle tokens (EOM included) of FIM windows: the infilling quality,
  eval_fim_context_loss  loss on prefix/suffix tokens of those FIM windows,
  eval_fim_{first,inside,eom}_{acc,loss}  argmax accuracy and loss at the middle's first token,
                 the rest of it, and its end (EOM): where infilling succeeds or fails.
FIM windows use the config's span policy (or `--span_policy`) and positions.

`infill_metrics` (`fimjax.infill_eval`): greedy infilling of fixed held-out holes by kind (value,
line, step, block, random spans of 1 / 2-8 / 9-32 / 33+ tokens), `eval.infill_holes` per kind
(or all of them): exact match, written, the line stop rule and valid-after-fill.

`generation_metrics`: `generate_samples` workflows sampled from scratch (temperature 1, GEN_SEED);
rates that decode (ending with EOS within GEN_MAX_TOKENS), parse and pass the JSON schema
(`--schema`, else the run's data.schema_path, else the workflow schema shipped with fimjax).

DIR (or `--model DIR`): a run's workdir, its checkpoints/ folder (a copy will do) or one
checkpoints/<step> folder. The losses need documents: the run's token cache when it is there
(and holds the model's tokenizer), else `--corpus`.
"""

import logging
import math
import pathlib

import jax
import ml_collections

from fimjax import api
from fimjax import checkpoint
from fimjax import config_base
from fimjax import inference
from fimjax import infill_eval
from fimjax import model as model_lib
from fimjax import step as step_lib
from fimjax.data import cache as cache_lib
from fimjax.data import corpus as corpus_lib
from fimjax.data import pipeline

log = logging.getLogger(__name__)
GEN_SEED = 7
PARTS = ("first", "inside", "eom")
GEN_MAX_TOKENS = 1024  # a generated workflow longer than this counts as not decoded


def eval_settings(config) -> dict:
  """The config's `eval` section; a run saved before the section existed (or one of its
  fields) gets config_base's defaults, the one place they are written."""
  section = (config.get("eval") if hasattr(config, "get") else None) or {}
  defaults = config_base.base_config("tiny").eval  # the same for every model size
  return {k: section.get(k, v) for k, v in defaults.items()}


def _data_field(config, name: str):
  """`config.data.<name>`; a run saved before the field existed reads it as its default."""
  return config.data.get(name, config_base.ADDED_LATER.get(f"data.{name}"))


def _split_sums(
  config, docs, special_ids, state, eval_step, mesh, *, fim: bool, span_policy: str = ""
) -> dict:
  """Sums of the eval step's outputs over every batch of `docs` (the validation split)."""
  totals = None
  for batch in pipeline.make_eval_batches(
    config,
    docs,
    special_ids,
    fim=fim,
    batch_size=config.train.eval_batch_size,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    span_policy=span_policy,
  ):
    sums = eval_step(state, step_lib.shard_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  if totals is None:
    raise ValueError(
      "the validation split is empty: raise config.data.val_fraction or add files to the corpus"
    )
  return {k: float(v) for k, v in jax.device_get(totals).items()}


def _ratio(num: float, den: float) -> float:
  return num / den if den else float("nan")


def validation_losses(
  config: ml_collections.ConfigDict,
  cache,
  state,
  eval_step,
  mesh,
  *,
  docs=None,
  span_policy: str = "",
) -> dict:
  """Losses and FIM accuracies (module doc) on `docs` (default: the validation split)."""
  docs = cache.documents("validation") if docs is None else docs
  ar = _split_sums(config, docs, cache.special_ids, state, eval_step, mesh, fim=False)
  fim = _split_sums(
    config, docs, cache.special_ids, state, eval_step, mesh, fim=True, span_policy=span_policy
  )
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


def generation_metrics(
  model: api.Model,
  *,
  num: int,
  max_tokens: int = GEN_MAX_TOKENS,
  validator=None,
  seed: int = GEN_SEED,
  batch_size: int = 16,
) -> dict:
  """Rates of `num` samples (temperature 1) that decode, parse and pass `validator`'s schema."""
  samples = model.samples(
    num,
    temperature=1.0,
    max_tokens=max_tokens,
    seed=seed,
    batch_size=batch_size,
    validator=validator,
  )
  c = inference.counts(samples)
  n = max(c["num"], 1)
  return {
    "gen_num": c["num"],
    "gen_decoded_rate": c["decoded"] / n,
    "gen_parsed_rate": c["parsed"] / n,
    "gen_schema_valid_rate": c["schema_valid"] / n,
  }


def make_eval_step(config, cache, mesh):
  """The eval step with the per-part FIM sums (it knows the cache's EOM id)."""
  return step_lib.make_eval_step(
    config, cache.model_vocab_size, mesh, eom_id=cache.special_ids["eom"]
  )


def evaluate(
  config,
  cache,
  state,
  mesh,
  eval_step=None,
  *,
  sampling: bool = True,
  schema_path: str = "",
  schema_fix: str = "",
  docs=None,
  span_policy: str = "",
  all_holes: bool = False,
  infill_kinds=infill_eval.KINDS,
  **overrides,
) -> dict:
  """Losses, plus infill and generation metrics when `sampling` (settings: config.eval), on
  `docs` (default: the validation split; generation does not depend on them). Infill holes:
  `infill_kinds`, eval.infill_holes of each, or every one of the split with `all_holes`. The
  JSON schema is `schema_path`, else the run's data.schema_path, else the bundled workflow
  schema; `schema_fix` ends the error when it cannot be read (default: names
  data.schema_path)."""
  s = {**eval_settings(config), **{k: v for k, v in overrides.items() if v is not None}}
  validator = None
  if sampling:  # before the losses: a wrong path stops at once
    validator = inference.make_validator(
      schema_path or config.data.schema_path,
      fix=schema_fix
      or "fix --config.data.schema_path, or set it to '' for the workflow schema shipped with "
      "fimjax",
    )
  if eval_step is None:
    eval_step = make_eval_step(config, cache, mesh)
  docs = cache.documents("validation") if docs is None else docs
  out = validation_losses(config, cache, state, eval_step, mesh, docs=docs, span_policy=span_policy)
  if not sampling:
    return out
  if jax.process_count() > 1:  # the sampler fetches whole arrays to one host
    log.warning(
      "infill/generation metrics are computed in single-process runs only; run "
      "python -m fimjax.evaluate --workdir ... on one host"
    )
    return out
  tok = cache.tokenizer()
  model = api.Model(
    config,
    model_lib.ModelConfig.from_config(config, cache.model_vocab_size),
    state["params"],
    tok,
    cache.special_ids,
    cache.model_vocab_size,
  )
  with jax.set_mesh(mesh):
    if all_holes or s["infill_holes"] > 0:
      out.update(
        infill_eval.infill_metrics(
          model.model_config,
          model.params,
          docs,
          cache.special_ids,
          cache.model_vocab_size,
          tokenizer=tok,
          per_kind=None if all_holes else int(s["infill_holes"]),
          max_new=int(s["max_new_tokens"]),
          positions=config.fim.positions,
          validator=validator,
          kinds=infill_kinds,
        )
      )
    if s["generate_samples"] > 0:
      out.update(generation_metrics(model, num=int(s["generate_samples"]), validator=validator))
  return out


def _json_safe(report: dict) -> dict:
  return {
    k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in report.items()
  }


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
    raise FileNotFoundError(
      f"no data for the losses: no token cache at "
      f"{where or '<workdir>/cache'}; pass --corpus FILES (workflow files "
      "or folders, comma-separated)"
    )
  cache = cache_lib.load_cache(where)
  if (now := cache_lib.tokenizer_id(cache.meta)) != model.tokenizer_id:
    raise checkpoint.tokenizer_mismatch(
      model.tokenizer_id, now, f"the token cache {where}", "evaluate with --corpus instead"
    )
  return cache


def evaluate_workdir(
  workdir: str,
  *,
  step=None,
  schema_path: str = "",
  corpus: str = "",
  span_policy: str = "",
  **overrides,
):
  """The JSON report of a checkpoint (`workdir`: anything `api.load` takes) on `corpus` files
  when given, else the run's validation split; or an error message (str)."""
  try:
    model, state, mesh = api.open_checkpoint(workdir, step=step)
    config, docs, held_out = model.config, None, {}
    if corpus:
      docs, summary = cache_lib.encode_documents(
        [c.strip() for c in corpus.split(",") if c.strip()],
        model.tokenizer,
        max_file_bytes=config.data.max_file_bytes,
        jsonc=_data_field(config, "jsonc"),
        text_field=_data_field(config, "text_field"),
        documents=corpus_lib.document_kind(
          _data_field(config, "documents"), model.tokenizer.name, config.data.tct_module
        ),
      )
      held_out, vocab = {"corpus": corpus, "corpus_summary": summary}, _Vocab(model)
    else:
      vocab = _run_cache(model, workdir)
    fix = (
      "fix --schema, or leave it out for the workflow schema shipped with fimjax"
      if schema_path
      else "the run's data.schema_path is not here: pass --schema PATH"
    )
    metrics = evaluate(
      config,
      vocab,
      state,
      mesh,
      schema_path=schema_path,
      schema_fix=fix,
      docs=docs,
      span_policy=span_policy,
      **overrides,
    )
  except (FileNotFoundError, ValueError) as e:
    return str(e).splitlines()[0]
  settings = {**eval_settings(config), **{k: v for k, v in overrides.items() if v is not None}}
  if settings.pop("all_holes", False):
    settings["infill_holes"] = "all"
  return _json_safe(
    {
      "workdir": workdir,
      "step": model.step,
      "fim_rate": config.fim.rate,
      "span_policy": span_policy or config.fim.span_policy,
      "tokenizer": model.tokenizer.name,
      "tokenizer_id": model.tokenizer_id,
      **held_out,
      **settings,
      **metrics,
    }
  )
