"""Shared test set-up: flags, a persistent compile cache, and paths to the shared data."""

import os
import pathlib
import signal

# Compiling is what tests pay for; share compiled programs across tests and subprocesses.
_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import absl.flags  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fimjax.data import cache_format  # noqa: E402
from fimjax.data import structure  # noqa: E402

# Grain reads absl flags; under pytest nobody parses them.
absl.flags.FLAGS.mark_as_parsed()

REPO = pathlib.Path(__file__).resolve().parent.parent


def byte_docs(texts, plain=()):
  """Documents of `texts` at one token per byte (a lossless tokenizer) with their structure
  marks, then the token lists `plain` with none."""
  ids = [list(t.encode()) for t in texts]
  marks = [structure.structure(t, np.ones(len(i), np.int64)) for t, i in zip(texts, ids)]
  plain = [list(d) for d in plain]
  return cache_format.Documents.from_lists(
    ids + plain,
    [m[0] for m in marks] + [np.zeros(len(d), np.uint8) for d in plain],
    [m[1] for m in marks] + [np.zeros(len(d), np.uint16) for d in plain],
  )


def default_sigint() -> None:
  """`preexec_fn` for a child that must see Ctrl-C: pytest-xdist workers ignore SIGINT, and an
  ignored signal stays ignored across exec (Python keeps it so, as `nohup` relies on), so a
  command started from a worker would never get its KeyboardInterrupt."""
  signal.signal(signal.SIGINT, signal.SIG_DFL)


def _find_shared() -> pathlib.Path:
  """The shared data folder: $FIMJAX_SHARED, ../shared beside the checkout, or /work/shared."""
  candidates = [os.environ.get("FIMJAX_SHARED"), REPO.parent / "shared", "/work/shared"]
  for c in candidates:
    if c and (pathlib.Path(c) / "data").is_dir():
      return pathlib.Path(c)
  return REPO.parent / "shared"


SHARED = _find_shared()
SHARED_WORKFLOWS = SHARED / "data" / "workflows"
SHARED_SCHEMA = SHARED / "data" / "schemas" / "github-workflow.json"


@pytest.fixture(scope="session")
def shared_workflows():
  """The shared corpus of real workflows (with broken files on purpose), or skip."""
  if not SHARED_WORKFLOWS.is_dir():
    pytest.skip(f"shared corpus not found at {SHARED_WORKFLOWS}")
  return SHARED_WORKFLOWS


@pytest.fixture(scope="session")
def shared_schema():
  if not SHARED_SCHEMA.is_file():
    pytest.skip(f"workflow schema not found at {SHARED_SCHEMA}")
  return SHARED_SCHEMA


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory):
  """A 2-step run of a very small model (tests.train_test.SMALL), for the inference tools.

  Its evaluation at the last step runs the sampling metrics too (eval.in_loop), small numbers.
  """
  from tests.train_test import run_main  # pylint: disable=g-import-not-at-top

  workdir = tmp_path_factory.mktemp("trained")
  run_main(
    workdir,
    "--config.train.steps=2",
    "--config.eval.infill_holes=4",
    "--config.eval.generate_samples=2",
    "--config.eval.max_new_tokens=8",
    cache_dir=workdir / "cache",
  )
  return workdir
