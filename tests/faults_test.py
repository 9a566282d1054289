"""Faults an ordinary user runs into (issue 13): nothing lost, nothing silently wrong.

Each case checks the exit status, a one-line error that names the field and the fix, and that no
file outside the expected ones changed. Subprocesses run the real command on a very small model.
"""

import pathlib

import pytest

from fimjax import checkpoint
from fimjax.config_base import base_config
from fimjax.data import cache
from tests.cache_test import _snapshot
from tests.train_test import run_main


def _one_error_line(proc) -> str:
  """The run failed with exactly one `error:` line and no traceback; returns that line."""
  assert proc.returncode != 0, proc.stdout
  assert "Traceback" not in proc.stderr, proc.stderr
  errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
  assert len(errors) == 1, proc.stderr
  return errors[0]


def _data_config(**overrides):
  """`config.data` of a small BPE cache, with `overrides`."""
  data = base_config("tiny").data
  data.tokenizer, data.bpe_vocab_size = "bpe", 300
  for k, v in overrides.items():
    setattr(data, k, v)
  return data


def _small_cache(path: pathlib.Path, corpus="synthetic:20") -> pathlib.Path:
  cache.build_cache([corpus], path, tokenizer="bpe", bpe_vocab_size=300, progress=False,
                    log=lambda s: None)
  return path


# ------------------------------------------------------------ 1: the cache folder is the cache's


def test_cache_dir_that_would_wipe_the_run_is_refused(tmp_path):
  run = tmp_path / "run"
  for bad in (run, tmp_path, run / "checkpoints" / "c", run / "checkpoints_unreadable"):
    with pytest.raises(ValueError, match=r"data\.cache_dir=.*set --config\.data\.cache_dir"):
      checkpoint.check_cache_dir(str(bad), str(run))
  for good in (run / "cache", tmp_path / "cache", run / "caches" / "c"):
    checkpoint.check_cache_dir(str(good), str(run))


def test_rebuild_never_deletes_files_that_are_not_the_caches(tmp_path):
  out = _small_cache(tmp_path / "c")
  (out / "checkpoints").mkdir()  # as if a run had written into its cache folder
  (out / "checkpoints" / "1").write_text("weights")
  (out / "metrics.jsonl").write_text("{}\n")
  before = _snapshot(tmp_path)
  data = _data_config(corpus="synthetic:21")  # stale: would rebuild
  for attempt in (lambda: cache.ensure_cache(data, out, progress=False, log=lambda s: None),
                  lambda: _small_cache(out, "synthetic:21")):
    with pytest.raises(cache.CacheError, match=r"checkpoints, metrics\.jsonl.*data\.cache_dir"):
      attempt()
  assert _snapshot(tmp_path) == before


def test_cache_dir_equal_to_workdir_is_refused_before_any_work(tmp_path):
  workdir = tmp_path / "run"
  proc = run_main(workdir, "--config.train.steps=2", cache_dir=workdir, check=False)
  line = _one_error_line(proc)
  assert "data.cache_dir" in line and "is the workdir" in line and "cache_dir to a folder" in line
  assert not workdir.exists() or not any(workdir.iterdir())
