"""Orbax checkpoints of a run: train state, data-iterator state, config and tokenizer metadata.

Each step also carries an `inference` item (`inference_record`): the tokenizer itself (BPE: its
tokenizer.json text; TCT: module and version), the special ids, the model's vocabulary size and
the step's eval metrics, so `fimjax.api.load` needs neither the token cache nor the corpus.
Checkpoints saved before it existed lack the item and read the tokenizer from the run's cache.

One `Checkpoints` per workdir (`<workdir>/checkpoints/<step>/`). Saves are asynchronous (the
loop blocks only while arrays are copied to host). Kept: the latest `keep` checkpoints plus the
best one by validation loss. A checkpoint that fails to restore (torn, corrupt arrays, config or
meta JSON; an empty folder; a missing item; arrays that read but differ from the checksums saved
in `meta`) is moved aside to `<workdir>/checkpoints_unreadable/` with a warning and the previous
one is used; nothing is deleted.
"""

import json
import logging
import math
import os
import pathlib
import shutil
import tempfile
from typing import Any

from etils import epath
import grain
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from fimjax import checksums
from fimjax import sharding
from fimjax import step as step_lib
from fimjax.data import cache_format

log = logging.getLogger(__name__)

EVAL_METRIC = "eval_loss"
CHECKSUMS = "checksums"  # key in a checkpoint's `meta`: {array path: digest} of its state
INFERENCE = "inference"  # item of a step: what inference needs without the token cache
INFERENCE_FORMAT = "fimjax-inference"


def local_dir(workdir: str) -> str:
  """Where files that need a local filesystem go: the workdir itself, or for a bucket workdir
  (gs://...) a local folder ($FIMJAX_LOCAL_DIR or /tmp/fimjax/<bucket path>); checkpoints always
  go to the workdir and metrics are mirrored there."""
  if "://" not in workdir:
    return workdir
  base = os.environ.get("FIMJAX_LOCAL_DIR", os.path.join(tempfile.gettempdir(), "fimjax"))
  return os.path.join(base, workdir.replace("://", "/").strip("/"))


def cache_dir(config, workdir: str) -> str:
  """The run's token cache: `data.cache_dir`, else `cache/` in the (local) run directory."""
  return config.data.cache_dir or os.path.join(local_dir(workdir), "cache")


def check_cache_dir(path: str, workdir: str) -> None:
  """Refuses a cache folder that a cache rebuild (which replaces the whole folder) would wipe the
  run with: the run directory itself, a folder holding it, or one inside its checkpoints."""
  cache, run = pathlib.Path(path).resolve(), pathlib.Path(local_dir(workdir)).resolve()
  what = None
  if cache == run:
    what = "is the workdir"
  elif run.is_relative_to(cache):
    what = f"holds the workdir {run}"
  elif any(cache.is_relative_to(run / d) for d in ("checkpoints", "checkpoints_unreadable")):
    what = "lies inside the workdir's checkpoints"
  if what:
    raise ValueError(
      f"data.cache_dir={path} {what}, and a cache rebuild replaces its whole "
      f"folder: set --config.data.cache_dir to a folder of its own, or to '' "
      f"for {run / 'cache'}"
    )


class Checkpoints:
  """Saves and restores checkpoints of one run directory."""

  def __init__(
    self, workdir: str, *, keep: int = 3, asynchronous: bool = True, steps_dir: str | None = None
  ):
    """`steps_dir`: the folder of step folders when it is not `<workdir>/checkpoints` (a copy)."""
    root = workdir if "://" in workdir else os.path.abspath(workdir)  # orbax wants absolute
    if steps_dir:
      self.directory = epath.Path(steps_dir if "://" in steps_dir else os.path.abspath(steps_dir))
    else:
      self.directory = epath.Path(root) / "checkpoints"
    self._unreadable = epath.Path(root) / "checkpoints_unreadable"
    policy = checkpoint_managers.AnyPreservationPolicy(
      [
        checkpoint_managers.LatestN(n=keep),
        # reverse=True sorts descending, so the kept last entry is the lowest loss.
        checkpoint_managers.BestN(
          get_metric_fn=lambda m: m[EVAL_METRIC],
          reverse=True,
          n=1,
          keep_checkpoints_without_metrics=False,
        ),
      ]
    )
    options = ocp.CheckpointManagerOptions(
      enable_async_checkpointing=asynchronous,
      preservation_policy=policy,
      create=True,
      cleanup_tmp_directories=True,
    )
    self.manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=("state", "data", "config", "meta", INFERENCE)
    )

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def best_step(self) -> int | None:
    return self.manager.best_step()

  def save(
    self,
    step: int,
    state: Any,
    data_iter: grain.DatasetIterator,
    *,
    config: dict,
    meta: dict,
    eval_loss: float | None = None,
    inference: dict | None = None,
  ) -> None:
    """Starts an asynchronous save; returns once the arrays are on host.

    `meta` is saved with the state's checksums added (`CHECKSUMS`), which a restore compares;
    `inference` (`inference_record`) as the step's `inference` item.
    """
    metrics = None if eval_loss is None else {EVAL_METRIC: float(eval_loss)}
    # Now, before returning: the next train step donates (overwrites) the state's buffers.
    meta = {**meta, CHECKSUMS: checksums.state_checksums(state)}
    args = ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=grain.checkpoint.CheckpointSave(data_iter),
      config=ocp.args.JsonSave(config),
      meta=ocp.args.JsonSave(meta),
      **({INFERENCE: ocp.args.JsonSave(inference)} if inference is not None else {}),
    )
    self.manager.save(step, args=args, metrics=metrics, force=True)

  def restore_latest(self, abstract_state: Any, data_iter: grain.DatasetIterator):
    """Restores the newest readable checkpoint into `data_iter` and returns (step, state).

    `abstract_state` (ShapeDtypeStructs with shardings) decides the target mesh, so a run saved
    on one mesh restores onto another. Returns (None, None) when there is no checkpoint.
    """
    self.manager.wait_until_finished()
    for step in reversed(self.all_steps()):
      try:
        restored = self.manager.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(data_iter),
          ),
        )
        self.verify(step, restored["state"])
        return step, restored["state"]
      except Exception as e:  # pylint: disable=broad-except  # any damage means: skip it
        self._move_aside(step, e)
    return None, None

  def latest_json(self) -> tuple[int | None, dict | None, dict | None]:
    """(step, config, meta) of the newest checkpoint whose JSON items read; unreadable ones
    (corrupt JSON, empty folder, missing item) are moved aside like in `restore_latest`."""
    self.manager.wait_until_finished()
    for step in reversed(self.all_steps()):
      try:
        config, meta = self.read_json(step, "config"), self.read_json(step, "meta")
        if (self.directory / str(step) / INFERENCE).exists():  # absent in older checkpoints
          self.read_json(step, INFERENCE)
        return step, config, meta
      except (OSError, ValueError) as e:
        self._move_aside(step, e)
    return None, None, None

  def read_json(self, step: int, item: str) -> dict:
    """Reads a JSON item (`config`, `meta`, `inference`) of a checkpoint without touching arrays;
    raises OSError or ValueError naming the file when it is missing or not a JSON object."""
    path = self.directory / str(step) / item / "metadata"
    try:
      obj = json.loads(path.read_text())
    except ValueError as e:
      raise ValueError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(obj, dict):
      raise ValueError(f"{path} is not a JSON object")
    return obj

  def verify(self, step: int, state: Any) -> None:
    """Raises ChecksumError when the restored `state` of `step` differs from its saved checksums
    (a bit flipped on disk that still decodes); OSError or ValueError for an unreadable meta."""
    saved = self.read_json(step, "meta").get(CHECKSUMS)
    checksums.verify_checksums(state, saved, f"checkpoint {self.directory / str(step)}")

  def _move_aside(self, step: int, error: Exception) -> None:
    src = self.directory / str(step)
    self._unreadable.mkdir(parents=True, exist_ok=True)
    dst = self._unreadable / str(step)
    n = 1
    while dst.exists():
      dst = self._unreadable / f"{step}.{n}"
      n += 1
    log.warning(
      "checkpoint %s is unreadable (%s: %s); moved to %s, using the previous one",
      src,
      type(error).__name__,
      str(error).splitlines()[0][:200],
      dst,
    )
    print(
      f"WARNING: checkpoint {src} is unreadable ({type(error).__name__}); "
      f"moved to {dst}, trying the previous one",
      flush=True,
    )
    shutil.move(str(src), str(dst))
    self.manager.reload()

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    # Orbax removes old temporary folders on a thread started by the manager; a run that fails
    # right after creating it would exit while that thread still schedules work, and print a
    # traceback ("cannot schedule new futures after shutdown"). No public call awaits it.
    getattr(self.manager, "_maybe_await_cleanup_tmp_directory", lambda: None)()
    self.manager.wait_until_finished()
    self.manager.close()


def require_run(workdir: str) -> None:
  """Raises FileNotFoundError naming the fix unless `workdir` (local) has a checkpoint. Runs
  before any Orbax manager, which would create `<workdir>/checkpoints`: tools that only read a
  run create nothing."""
  if "://" in workdir:
    return  # a bucket: the checkpoint manager tells
  ckpts = os.path.join(workdir, "checkpoints")
  if os.path.isdir(ckpts) and any(name.isdigit() for name in os.listdir(ckpts)):
    return
  if os.path.isdir(workdir):
    where = ckpts
  else:
    what = "a file, not a run folder" if os.path.exists(workdir) else "no such folder"
    where = f"{workdir}: {what}"
  raise FileNotFoundError(
    f"no checkpoint in {where}; train first with "
    f"python -m fimjax.main --config CONFIG --workdir {workdir}"
  )


def inference_record(cache, config: dict, metrics: dict | None = None) -> dict:
  """The `inference` item of a step: the tokenizer with its id (`cache_format.tokenizer_id`;
  BPE: its tokenizer.json text, TCT: module and version), the special ids by name, the model's
  vocabulary size, the model and FIM settings, and `metrics` (the step's evaluation, or None)."""
  tok = cache.tokenizer()
  tokenizer = {
    "id": cache_format.tokenizer_id(cache.meta),
    "name": tok.name,
    "version": tok.version,
    "vocab_size": tok.vocab_size,
    "pad_id": tok.pad_id,
  }
  if tok.name == "bpe":
    tokenizer["json"] = tok.to_json()  # the text its id hashes
  else:
    tokenizer["module"] = tok.module_name
  return with_eval(
    {
      "format": INFERENCE_FORMAT,
      "version": 1,
      "tokenizer": tokenizer,
      "special_ids": dict(cache.special_ids),
      "model_vocab_size": int(cache.model_vocab_size),
      "model": dict(config["model"]),
      "fim_positions": config["fim"]["positions"],
    },
    metrics,
  )


def with_eval(record: dict, metrics: dict | None) -> dict:
  """`record` with its `eval` metrics (JSON numbers: NaN/inf as null)."""
  ok = lambda v: v if not isinstance(v, float) or math.isfinite(v) else None  # noqa: E731
  return {**record, "eval": None if metrics is None else {k: ok(v) for k, v in metrics.items()}}


def pick_step(ckpts: Checkpoints, step: int | None, fix: str) -> int:
  """`step` when the folder has it, else the best step by validation loss, else the latest;
  FileNotFoundError naming `fix` when there is none."""
  steps = ckpts.all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {ckpts.directory}: {fix}")
  if step is None:
    return ckpts.best_step() or steps[-1]
  if step not in steps:
    raise FileNotFoundError(f"no checkpoint for step {step} in {ckpts.directory} (have: {steps})")
  return step


def restore_state(ckpts: Checkpoints, step: int, config, model_vocab_size: int, mesh):
  """(train state of `step`, checked against its checksums; `mesh`). `mesh` None: every local
  device, data parallel (`config.mesh` set to match)."""
  if mesh is None:
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 1, 1
    mesh = sharding.make_mesh(config.mesh)
  abstract = step_lib.abstract_train_state(config, model_vocab_size, mesh)
  restored = ckpts.manager.restore(
    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
  )
  try:
    ckpts.verify(step, restored["state"])
  except checksums.ChecksumError as e:  # a reader moves nothing aside: it names another step to use
    others = [s for s in ckpts.all_steps() if s != step]
    raise checksums.ChecksumError(
      f"{e}; pass another --step (have: {others})"
      if others
      else f"{e}; no other checkpoint: retrain"
    ) from None
  return restored["state"], mesh


def tokenizer_mismatch(trained: str, given: str, where: str, fix: str) -> ValueError:
  """The one-line refusal of a tokenizer (id `given`, from `where`) other than the trained one."""
  return ValueError(
    f"tokenizer mismatch: the checkpoint was trained with {trained}, {where} "
    f"has {given}; its weights would read other token ids: {fix}"
  )


def load_run(workdir: str, *, step: int | None = None, mesh=None):
  """(config, cache, state, step) of a trained run, for evaluation on its token cache.

  Uses the checkpoint's own config (so overrides given at training time hold), the best
  checkpoint by validation loss when `step` is None and one exists, else the latest. Refuses a
  cache whose tokenizer is not the one the checkpoint was trained with.
  """

  require_run(workdir)
  ckpts = Checkpoints(workdir)
  try:
    step = pick_step(
      ckpts, step, f"train first with python -m fimjax.main --config CONFIG --workdir {workdir}"
    )
    config = ml_collections.ConfigDict(ckpts.read_json(step, "config"))
    path = cache_dir(config, workdir)
    cache = cache_format.load_cache(path)
    trained = cache_format.tokenizer_id(ckpts.read_json(step, "meta"))
    if cache_format.tokenizer_id(cache.meta) != trained:
      raise tokenizer_mismatch(
        trained,
        cache_format.tokenizer_id(cache.meta),
        f"the token cache {path}",
        "evaluate with --corpus instead",
      )
    state, _ = restore_state(ckpts, step, config, cache.model_vocab_size, mesh)
    return config, cache, state, step
  finally:
    ckpts.close()
