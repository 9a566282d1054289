"""Evaluation of a model on the validation split.

`validation_losses` runs the whole validation split exactly once per variant with fixed seeds:
  eval_loss      next-token loss of plain (AR) windows: the left-to-right quality,
  eval_fim_loss  loss on the middle tokens of FIM windows: the infilling quality,
  eval_fim_context_loss  loss on prefix/suffix tokens of those FIM windows.
"""

import jax
import ml_collections

from fimjax import step as step_lib
from fimjax.data import pipeline


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
