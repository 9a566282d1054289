"""Train a fill-in-the-middle model on GitHub Actions workflows.

  python -m fimjax.main --config configs/tiny.py --workdir runs/tiny [--config.train.steps=50]

Builds the token cache when missing, trains, evaluates and checkpoints; rerunning with the same
workdir resumes (or says the run is complete). Several processes (TPU pod, SLURM, or explicit
--coordinator_address/--num_processes/--process_id) join one run via jax.distributed.
"""

import os

from absl import flags
import jax
from ml_collections import config_flags

from fimjax import distributed
from fimjax import infill_eval
from fimjax import lock
from fimjax import train
from fimjax.cli import common

PROG = "python -m fimjax.main"


def define(fv: flags.FlagValues) -> None:
  config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/<name>.py).", flag_values=fv, lock_config=True
  )
  flags.DEFINE_string("workdir", None, "Run directory (local path or gs://...).", flag_values=fv)
  flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Resume even if fixed config fields differ from the saved run.",
    flag_values=fv,
  )
  flags.DEFINE_string(
    "coordinator_address",
    os.environ.get("FIMJAX_COORDINATOR"),
    "host:port of process 0 for multi-process runs (env FIMJAX_COORDINATOR).",
    flag_values=fv,
  )
  common.number(
    fv,
    "num_processes",
    int(os.environ.get("FIMJAX_NUM_PROCESSES", "0")) or None,
    "Number of processes (env FIMJAX_NUM_PROCESSES).",
    low=1,
  )
  common.number(
    fv,
    "process_id",
    int(os.environ["FIMJAX_PROCESS_ID"]) if "FIMJAX_PROCESS_ID" in os.environ else None,
    "This process's index (env FIMJAX_PROCESS_ID).",
    low=0,
  )
  flags.DEFINE_bool(
    "keep_tokenizer",
    False,
    "When the corpus changed since the run began (files "
    "added or removed), encode it with the run's own tokenizer instead of "
    "refusing to resume.",
    flag_values=fv,
  )
  flags.DEFINE_bool(
    "demo", True, "At the end, fill one held-out hole and print it.", flag_values=fv
  )


def body(fv: flags.FlagValues, args: list[str]) -> int:
  del args
  distributed.maybe_initialize(fv.coordinator_address, fv.num_processes, fv.process_id)
  try:
    result = train.train_and_evaluate(
      fv.config,
      fv.workdir,
      allow_config_change=fv.allow_config_change,
      keep_tokenizer=fv.keep_tokenizer,
    )
  except (ValueError, FileNotFoundError, train.NonFiniteError, lock.WorkdirLocked) as e:
    common.error(e)
    return 1
  except KeyboardInterrupt as e:  # the loop itself saves on Ctrl-C; this is before or after it
    common.error(
      e
      if isinstance(e, train.Interrupted)
      else "interrupted; nothing was saved "
      "since the last checkpoint: rerun the same command to resume"
    )
    return 130
  if fv.demo and result.step > 0 and jax.process_count() == 1:
    print(infill_eval.demo(fv.workdir), flush=True)
  return 0 if result.complete or result.step > 0 else 1


def main(argv=None) -> int:
  return common.run(PROG, __doc__, define, body, argv, required=("config", "workdir"))
