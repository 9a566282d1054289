"""The training loop: data -> jitted step -> logs, evaluation, checkpoints; exact resume.

`train_and_evaluate(config, workdir)` is what `fimjax.main` runs and what a notebook can call.
The loop never syncs with the device except at logging, evaluation and checkpoint intervals.
"""

import contextlib
import dataclasses
import importlib.util
import logging
import os
import signal
import time

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from fimjax import checkpoint as checkpoint_lib
from fimjax import config_base
from fimjax import distributed
from fimjax import evaluate
from fimjax import flops
from fimjax import lock as lock_lib
from fimjax import metrics as metrics_lib
from fimjax import plot
from fimjax import sharding
from fimjax import step as step_lib
from fimjax.data import cache as cache_lib
from fimjax.data import paths
from fimjax.data import pipeline

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
  """Raised when a step produced a non-finite loss or gradient."""


class Interrupted(KeyboardInterrupt):
  """Ctrl-C before the training loop (which saves and stops instead); the message says what was
  left as it was."""


@dataclasses.dataclass
class RunResult:
  step: int
  eval_metrics: dict
  checkpoint_dir: str
  metrics_path: str
  complete: bool  # reached train.steps (False when stopped by a signal)


class _StopSignal:
  """Turns SIGTERM/SIGINT into a flag the loop checks between steps (preemption-safe)."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C stops at once
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _any_process(flag: bool) -> bool:
  """True when `flag` is set on any process (identical answer on every process)."""
  if jax.process_count() == 1:
    return flag
  return bool(np.any(multihost_utils.process_allgather(np.array(flag))))


def _refuse_changes(
  differences: list[tuple[str, object, object]], *, allow_change: bool, fix: str, note: str = ""
) -> None:
  """Refuses to resume a run whose saved config (or tokenizer) differs in what gives it meaning:
  one line listing (field, saved, now) and the fix; `allow_change` lets it go with a warning."""
  if not differences:
    return
  listing = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, a, b in differences) + note
  if allow_change:
    log.warning(
      "resuming with changed config fields (allowed by --allow_config_change): %s", listing
    )
    return
  raise ValueError(f"the workdir holds a run with a different config ({listing}); {fix}")


def _check_compatible(saved: dict, config: ml_collections.ConfigDict, allow_change: bool) -> None:
  """Refuses to resume a run whose saved config differs in fields that change its meaning."""
  _refuse_changes(
    config_base.incompatible_fields(saved, config.to_dict()),
    allow_change=allow_change,
    fix="use another --workdir, or pass --allow_config_change to resume anyway",
  )


def _same_tokenizer(run_meta: dict | None, cache_path: str):
  """A check for `ensure_cache`: a resumed run keeps the tokenizer of its first step (its
  weights know those ids), whatever the corpus has become; None for a new run."""
  if run_meta is None:
    return None

  def verify(meta: dict, folder) -> None:
    saved, now = cache_lib.tokenizer_id(run_meta), cache_lib.tokenizer_id(meta)
    if saved != now:  # never allowed: the weights would read other token ids
      change = cache_lib.corpus_change(run_meta, cache_path, meta, folder)
      short = lambda t: t[:16] if t.startswith("bpe:") else t  # noqa: E731
      _refuse_changes(
        [("tokenizer", short(saved), short(now))],
        allow_change=False,
        note=f"; {change}",
        fix="its weights would read other token ids: use "
        "another --workdir, keep the run's corpus as it was, or pass "
        "--keep_tokenizer to encode the changed corpus with the run's tokenizer",
      )

  return verify


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  allow_config_change: bool = False,
  keep_tokenizer: bool = False,
) -> RunResult:
  """Trains `config` in `workdir`, resuming from its latest good checkpoint.

  `keep_tokenizer`: a corpus changed since the cache was built is encoded with the cache's
  tokenizer (a resumed run's weights know its ids) instead of a BPE trained anew.

  Holds the workdir's lock (`fimjax.lock`) throughout: a second run on it is refused.
  """
  config_base.validate(config)
  _check_workdir(workdir)
  logdir = checkpoint_lib.local_dir(workdir)
  cache_path = checkpoint_lib.cache_dir(config, workdir)
  checkpoint_lib.check_cache_dir(cache_path, workdir)
  os.makedirs(logdir, exist_ok=True)
  with (
    lock_lib.hold(logdir) if jax.process_index() == 0 else contextlib.nullcontext(),
    contextlib.ExitStack() as cleanup,
  ):
    return _train(config, workdir, cache_path, allow_config_change, keep_tokenizer, cleanup)


def _check_workdir(workdir: str) -> None:
  """Fails before any work (cache build, compile) where the run could not write its files."""
  if workdir.startswith("gs://") and importlib.util.find_spec("gcsfs") is None:
    raise ValueError(
      f"--workdir {workdir}: gs:// workdirs need gcsfs, which is not installed: "
      "pip install 'fimjax[gcs]' (or give a local --workdir)"
    )
  problem = paths.output_error(checkpoint_lib.local_dir(workdir), folder=True)
  if problem:  # "<path> is a file: give a folder path" has its fix; "... is not writable" not
    fix = "" if problem.endswith("give a folder path") else "; choose another --workdir"
    raise ValueError(f"--workdir {problem}{fix}")


def _train(
  config: ml_collections.ConfigDict,
  workdir: str,
  cache_path: str,
  allow_config_change: bool,
  keep_tokenizer: bool,
  cleanup: contextlib.ExitStack,
) -> RunResult:
  """The body of `train_and_evaluate`, run under the workdir's lock; `cleanup` closes what it
  opens (checkpointer, data workers, metric writers) however it ends."""
  is_main = jax.process_index() == 0
  logdir = checkpoint_lib.local_dir(workdir)
  ckpts = checkpoint_lib.Checkpoints(workdir, keep=config.train.keep_checkpoints)
  cleanup.callback(ckpts.close)
  # Check the saved run first: a refused run touches neither cache nor readable checkpoints.
  latest, run_config, run_meta = ckpts.latest_json()
  if latest is not None:
    _check_compatible(run_config, config, allow_config_change)
  try:
    cache = cache_lib.ensure_cache(
      config.data,
      cache_path,
      keep_tokenizer=keep_tokenizer,
      verify=_same_tokenizer(run_meta, cache_path),
    )
  except KeyboardInterrupt:  # a build writes a temporary folder, removed on the way out
    raise Interrupted(
      f"interrupted while building or checking the token cache {cache_path}; "
      "an unfinished build is not kept and nothing else was written: rerun the "
      "same command to build it"
    ) from None
  distributed.check_same_data(
    cache_lib.tokenizer_id(cache.meta),
    sum(cache.meta["num_documents"].values()),
    sum(cache.meta["num_tokens"].values()),
  )
  vocab = cache.model_vocab_size
  mesh = sharding.make_mesh(config.mesh)

  train_ds = pipeline.make_train_dataset(
    config,
    cache.documents("train"),
    cache.special_ids,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  data_iter = iter(train_ds)
  cleanup.callback(data_iter.close)  # stops grain's workers: no tracebacks at interpreter exit
  cleanup.callback(ckpts.wait)  # runs first: a save in flight has the iterator's state
  spec = step_lib.state_spec(config, vocab, mesh)  # optimizer and shardings, once per run
  start, state = ckpts.restore_latest(spec.abstract, data_iter)
  result = RunResult(
    start or 0, {}, str(ckpts.directory), os.path.join(logdir, "metrics.jsonl"), False
  )
  if start is not None and start >= config.train.steps:
    if is_main:
      print(
        f"Run already complete: step {start} of {config.train.steps} in {workdir}. "
        f"Checkpoints: {ckpts.directory}; metrics: {result.metrics_path}. "
        "Raise --config.train.steps to train further.",
        flush=True,
      )
    result.complete = True
    return result
  if state is None:
    start = 0
    state = step_lib.create_train_state(config, vocab, mesh, spec=spec)
  elif is_main:
    print(f"Resuming from step {start} ({ckpts.directory})", flush=True)

  train_step = step_lib.make_train_step(config, vocab, mesh, spec=spec)  # checks the batch splits
  eval_step = step_lib.make_eval_step(
    config, vocab, mesh, eom_id=cache.special_ids["eom"], spec=spec
  )
  writer = metrics_lib.MetricsWriter(
    logdir,
    mirror=workdir if logdir != workdir else None,
    wandb_project=config.train.wandb_project,
    config=config.to_dict(),
  )
  cleanup.callback(writer.close)
  profiler = metrics_lib.StepProfiler(
    config_base.profile_window(config.train.profile_steps), logdir
  )
  cleanup.callback(profiler.close)
  tokens_per_step = config.train.batch_size * config.model.context
  flops_per_token = flops.model_flops_per_token(spec.cfg)
  peak = flops.peak_flops_per_device(config.train.peak_tflops) * mesh.devices.size
  saved_config, meta = config.to_dict(), cache.meta
  inference = checkpoint_lib.inference_record(cache, saved_config)  # what a copy needs to load

  def run_eval(step):
    result.eval_metrics = evaluate.evaluate(
      config,
      cache,
      state,
      mesh,
      eval_step,
      sampling=bool(evaluate.eval_settings(config)["in_loop"]),
    )
    writer.write(step, result.eval_metrics)
    writer.flush()
    return result.eval_metrics

  def save(step, eval_loss=None):
    bad = int(jax.device_get(state["bad_step"]))
    if bad >= 0:
      raise NonFiniteError(bad)
    ckpts.save(
      step,
      state,
      data_iter,
      config=saved_config,
      meta=meta,
      eval_loss=eval_loss,
      inference=checkpoint_lib.with_eval(
        inference, None if eval_loss is None else result.eval_metrics
      ),
    )

  progress = metrics_lib.Progress(start, config.train.steps, enabled=config.train.progress)
  pending, t_last, last_ckpt_time = [], time.monotonic(), time.monotonic()
  step = start
  stop_at = min(config.train.stop_after_steps or config.train.steps, config.train.steps)
  try:
    with _StopSignal() as stop:
      while step < stop_at:
        profiler.before_step(step)
        batch = step_lib.shard_batch(next(data_iter), mesh)
        state, step_metrics = train_step(state, batch)
        pending.append(step_metrics)
        step += 1
        if profiled := profiler.after_step(step, state):
          progress.write(profiled)
        last = step == stop_at
        if step % config.train.log_every_steps == 0 or last:
          fetched = jax.device_get(pending)  # the only sync of the hot loop
          pending = []
          elapsed = time.monotonic() - t_last
          summary = metrics_lib.summarize_steps(
            fetched, elapsed, tokens_per_step, flops_per_token, peak
          )
          if not all(m["finite"] for m in fetched):
            bad_step = step - len(fetched) + [bool(m["finite"]) for m in fetched].index(False) + 1
            raise NonFiniteError(bad_step)
          writer.write(step, summary)
          progress.update(
            step,
            loss=summary["loss"],
            tok_s=int(summary["tokens_per_s"]),
            mfu=f"{summary['mfu']:.1%}",
          )
          t_last = time.monotonic()
        do_eval = step % config.train.eval_every_steps == 0 or last
        minutes = config.train.checkpoint_every_minutes
        due_by_time = minutes > 0 and time.monotonic() - last_ckpt_time > 60 * minutes
        due_by_time = step % config.train.log_every_steps == 0 and _any_process(due_by_time)
        stopping = (
          _any_process(stop.received is not None)
          if (jax.process_count() == 1 or step % config.train.log_every_steps == 0)
          else False
        )
        if do_eval:
          run_eval(step)
          progress.write(f"step {step}: {metrics_lib.eval_line(result.eval_metrics)}")
        if do_eval or step % config.train.checkpoint_every_steps == 0 or due_by_time or stopping:
          save(step, result.eval_metrics.get("eval_loss") if do_eval else None)
          last_ckpt_time = time.monotonic()
        if do_eval or due_by_time or stopping:
          t_last = time.monotonic()  # keep eval and save time out of tokens/s
        if stopping:
          progress.write(
            f"{stop.received or 'stop'} received: saved step {step}; "
            "run the same command again to resume"
          )
          break
  except NonFiniteError as e:
    ckpts.wait()
    raise NonFiniteError(
      f"non-finite loss or gradient at step {e.args[0]}; stopped without saving it. "
      f"Last good checkpoint: step {ckpts.latest_step()} in {ckpts.directory}. "
      "Lower optim.lr or raise optim.warmup_steps, then rerun to resume."
    ) from None
  finally:
    progress.close()
    cleanup.close()  # waits for the last checkpoint before the summary below

  result.step = step
  result.complete = step >= config.train.steps
  if is_main:
    png = None
    try:  # the run is saved by now: a metrics file damaged by hand costs the plot, not the run
      png = plot.plot_losses(logdir) if os.path.exists(writer.path) else None
    except ValueError as e:
      log.warning("no loss plot: %s", e)
    writer.mirror_file(png)
    ev = result.eval_metrics
    if ev:
      print(
        f"Validation at step {step}: loss {ev['eval_loss']:.4f} (next-token), "
        f"FIM middle loss {ev['eval_fim_loss']:.4f}"
      )
    print(
      f"Checkpoints: {ckpts.directory}\nMetrics: {writer.path}  (TensorBoard: "
      f"{os.path.join(logdir, 'tensorboard')})\nLoss curves: {png}",
      flush=True,
    )
  return result
