"""Train a fill-in-the-middle model on GitHub Actions workflows.

  python -m fimjax.main --config configs/tiny.py --workdir runs/tiny [--config.train.steps=50]

Builds the token cache when missing, trains, evaluates and checkpoints; rerunning with the same
workdir resumes (or says the run is complete). Several processes (TPU pod, SLURM, or explicit
--coordinator_address/--num_processes/--process_id) join one run via jax.distributed.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from fimjax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/<name>.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (local path or gs://...).")
_ALLOW_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume even if fixed config fields differ from the saved run.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", os.environ.get("FIMJAX_COORDINATOR"),
    "host:port of process 0 for multi-process runs (env FIMJAX_COORDINATOR).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", int(os.environ.get("FIMJAX_NUM_PROCESSES", "0")) or None,
    "Number of processes (env FIMJAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", int(os.environ["FIMJAX_PROCESS_ID"]) if "FIMJAX_PROCESS_ID" in os.environ
    else None, "This process's index (env FIMJAX_PROCESS_ID).")
_KEEP_TOKENIZER = flags.DEFINE_bool(
    "keep_tokenizer", False, "When the corpus changed since the run began (files added or "
    "removed), encode it with the run's own tokenizer instead of refusing to resume.")
_DEMO = flags.DEFINE_bool("demo", True, "At the end, fill one held-out hole and print it.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  absl_logging.set_verbosity(absl_logging.WARNING)  # no backend-probing chatter
  from fimjax import distributed  # pylint: disable=g-import-not-at-top  # jax import after flags
  distributed.maybe_initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  import jax  # pylint: disable=g-import-not-at-top
  from fimjax import lock  # pylint: disable=g-import-not-at-top
  from fimjax import train  # pylint: disable=g-import-not-at-top
  try:
    result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value,
                                      allow_config_change=_ALLOW_CHANGE.value,
                                      keep_tokenizer=_KEEP_TOKENIZER.value)
  except (ValueError, FileNotFoundError, train.NonFiniteError, lock.WorkdirLocked) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt as e:  # the loop itself saves on Ctrl-C; this is before or after it
    print(f"error: {e}" if isinstance(e, train.Interrupted) else "error: interrupted; nothing "
          "was saved since the last checkpoint: rerun the same command to resume", file=sys.stderr)
    return 130
  if _DEMO.value and result.step > 0 and jax.process_count() == 1:
    from fimjax import infill  # pylint: disable=g-import-not-at-top
    print(infill.demo(_WORKDIR.value), flush=True)
  return 0 if result.complete or result.step > 0 else 1


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
