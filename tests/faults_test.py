"""Faults an ordinary user runs into (issue 13): nothing lost, nothing silently wrong.

Each case checks the exit status, a one-line error that names the field and the fix, and that no
file outside the expected ones changed. Subprocesses run the real command on a very small model.
"""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import pytest

from fimjax import checkpoint
from fimjax import config_base
from fimjax import lock
from fimjax import train
from fimjax.config_base import base_config
from fimjax.data import cache
from fimjax import synthetic
from tests.cache_test import _snapshot
from tests.conftest import default_sigint
from tests.train_test import REPO
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
  cache.build_cache(
    [corpus], path, tokenizer="bpe", bpe_vocab_size=300, progress=False, log=lambda s: None
  )
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
  for attempt in (
    lambda: cache.ensure_cache(data, out, progress=False, log=lambda s: None),
    lambda: _small_cache(out, "synthetic:21"),
  ):
    with pytest.raises(cache.CacheError, match=r"checkpoints, metrics\.jsonl.*data\.cache_dir"):
      attempt()
  assert _snapshot(tmp_path) == before


def test_cache_dir_equal_to_workdir_is_refused_before_any_work(tmp_path):
  workdir = tmp_path / "run"
  proc = run_main(workdir, "--config.train.steps=2", cache_dir=workdir, check=False)
  line = _one_error_line(proc)
  assert "data.cache_dir" in line and "is the workdir" in line and "cache_dir to a folder" in line
  assert not workdir.exists() or not any(workdir.iterdir())


# ----------------------------------- 2, 3: a resumed run keeps its tokenizer; refusals touch nothing


def _corpus_flags(corpus):
  return ["--config.train.steps=4", f"--config.data.corpus={corpus}", "--config.eval.in_loop=False"]


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
  """A run stopped at step 2 of 4 on a folder of workflow files, its cache in the workdir."""
  root = tmp_path_factory.mktemp("corpus_run")
  corpus = root / "corpus"
  corpus.mkdir()
  for name, text in synthetic.synthetic(40):
    (corpus / name.replace("/", "_")).write_text(text)
  workdir = root / "run"
  run_main(
    workdir,
    *_corpus_flags(corpus),
    "--config.train.stop_after_steps=2",
    cache_dir=workdir / "cache",
  )
  return corpus, workdir


def test_changed_corpus_or_config_is_refused_before_touching_anything(corpus_run):
  corpus, workdir = corpus_run
  added = [corpus / f"added_{i}.yml" for i in range(3)]
  for i, path in enumerate(added):
    path.write_text(synthetic.generate(1000 + i, 7))
  try:
    before = _snapshot(workdir)
    # 3: a refused config change is found before the (now stale) cache is rebuilt
    proc = run_main(
      workdir,
      *_corpus_flags(corpus),
      "--config.model.d_model=64",
      cache_dir=workdir / "cache",
      check=False,
    )
    assert "model.d_model: saved 32, now 64" in _one_error_line(proc)
    assert _snapshot(workdir) == before
    # 2: the grown corpus would retrain the BPE; the run's weights know the old ids: refused
    proc = run_main(workdir, *_corpus_flags(corpus), cache_dir=workdir / "cache", check=False)
    line = _one_error_line(proc)
    assert re.search(r"tokenizer: saved 'bpe:[0-9a-f]{12}', now 'bpe:[0-9a-f]{12}'", line), line
    assert re.search(r"corpus files \(by content\): [1-3] added, 0 removed", line), line
    assert "keep the run's corpus as it was, or pass --keep_tokenizer" in line
    assert _snapshot(workdir) == before
    assert not list(workdir.glob(".cache.*"))  # the refused build is gone
  finally:
    for path in added:
      path.unlink()
  proc = run_main(workdir, *_corpus_flags(corpus), cache_dir=workdir / "cache")
  assert "Resuming from step 2" in proc.stdout
  assert not (workdir / lock.LOCK_FILE).exists()  # each run released its lock
  # Asked for: the grown corpus is encoded with the run's own tokenizer and training goes on.
  old = cache.load_cache(workdir / "cache").meta
  for i, path in enumerate(added):
    path.write_text(synthetic.generate(1000 + i, 7))
  proc = run_main(
    workdir,
    *_corpus_flags(corpus),
    "--config.train.steps=6",
    "--keep_tokenizer",
    cache_dir=workdir / "cache",
  )
  assert "Resuming from step 4" in proc.stdout and "with its own tokenizer" in proc.stdout
  new = cache.load_cache(workdir / "cache").meta
  assert cache.tokenizer_id(new) == cache.tokenizer_id(old)
  assert sum(new["num_documents"].values()) == sum(old["num_documents"].values()) + len(added)


# --------------------------------------------------------------- 4: one training run per workdir


def test_lock_refuses_a_live_holder_and_takes_over_a_stale_one(tmp_path):
  path = tmp_path / lock.LOCK_FILE
  with lock.hold(str(tmp_path)):
    holder = json.loads(path.read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(lock.WorkdirLocked, match=rf"pid {os.getpid()} on .*another --workdir"):
      lock.acquire(str(tmp_path))
  assert not path.exists()  # released on exit
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "x"}))
  with lock.hold(str(tmp_path)):  # that process is gone: stale, taken over
    assert json.loads(path.read_text())["pid"] == os.getpid()
  path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}))
  with pytest.raises(lock.WorkdirLocked, match=rf"pid 1 on elsewhere.*delete {path}"):
    lock.acquire(str(tmp_path))


def test_second_run_on_a_workdir_is_refused(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  with lock.hold(str(workdir)):  # as a first run would, while it trains
    before = _snapshot(workdir)
    proc = run_main(workdir, "--config.train.steps=2", cache_dir=tmp_path / "cache", check=False)
    assert _snapshot(workdir) == before
  line = _one_error_line(proc)
  assert f"in use by another training run (pid {os.getpid()} on" in line
  assert "another --workdir" in line
  assert not (tmp_path / "cache").exists()


# ------------------------------ 10: one line, not a traceback, where a run cannot start or stops


def _tiny_config(tmp_path):
  """configs/tiny.py on a small synthetic corpus whose cache would go to `tmp_path/cache`."""
  c = config_base.load_config_file(REPO / "configs" / "tiny.py")
  c.data.corpus, c.data.cache_dir = "synthetic:20", str(tmp_path / "cache")
  return c


def test_read_only_workdir_is_refused_before_any_work(tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  workdir.mkdir()
  # root ignores permission bits: answer as a read-only folder does
  monkeypatch.setattr(os, "access", lambda path, mode: path != str(workdir))
  with pytest.raises(
    ValueError,
    match=rf"^--workdir {workdir}: {workdir} is not writable; "
    "choose another --workdir$",
  ):
    train.train_and_evaluate(_tiny_config(tmp_path), str(workdir))
  assert not any(workdir.iterdir()) and not (tmp_path / "cache").exists()


def test_workdir_that_is_a_file_is_one_line(tmp_path):
  workdir = tmp_path / "run"
  workdir.write_text("notes")
  proc = run_main(workdir, "--config.train.steps=2", cache_dir=tmp_path / "cache", check=False)
  assert _one_error_line(proc) == f"error: --workdir {workdir} is a file: give a folder path"
  assert workdir.read_text() == "notes" and not (tmp_path / "cache").exists()


def test_gs_workdir_without_gcsfs_names_the_extra(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if not installed
  monkeypatch.setenv("FIMJAX_LOCAL_DIR", str(tmp_path / "local"))
  with pytest.raises(
    ValueError,
    match=r"gs://b/run: gs:// workdirs need gcsfs.*"
    r"pip install 'fimjax\[gcs\]'",
  ):
    train.train_and_evaluate(_tiny_config(tmp_path), "gs://b/run")
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("model.mlp_ratio", 0, "--config.model.mlp_ratio=0: must be >= 1"),
    ("fim.rate", 1.5, "--config.fim.rate=1.5: must be in [0, 1]"),
    ("optim.lr", float("nan"), "--config.optim.lr=nan: must be > 0"),
    ("optim.b2", 1.0, "--config.optim.b2=1.0: must be in [0, 1)"),
    ("optim.grad_clip", -1.0, "--config.optim.grad_clip=-1.0: must be >= 0"),
    (
      "train.checkpoint_every_minutes",
      float("inf"),
      "--config.train.checkpoint_every_minutes=inf: must be a finite number",
    ),
    ("mesh.data", 0, "--config.mesh.data=0: must be -1 (the devices the other axes leave) or >= 1"),
    ("mesh.tensor", 3, "--config.mesh.tensor=3: must divide model.num_heads=4"),
    (
      "model.d_model",
      100,
      "--config.model.d_model=100: head dim d_model / model.num_heads=4 is 25, must be even (RoPE",
    ),
    ("fim.mix.line", -0.5, "--config.fim.mix.line=-0.5: must be >= 0"),
  ],
)
def test_every_numeric_field_is_range_checked_naming_the_flag(field, value, message):
  c = config_base.base_config("tiny")
  *parents, name = field.split(".")
  node = c
  for part in parents:
    node = node[part]
  node[name] = value
  with pytest.raises(ValueError) as e:
    config_base.validate(c)
  assert str(e.value).startswith(message), e.value
  for path in ("tiny", "small", "large"):  # the shipped configs pass
    config_base.validate(config_base.load_config_file(REPO / "configs" / f"{path}.py"))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
  return tmp_path_factory.mktemp("cache10") / "c"


def test_batch_the_devices_cannot_split_leaves_no_writer_traceback(tmp_path, shared_cache):
  proc = run_main(
    tmp_path / "run",
    "--config.train.steps=2",
    "--config.train.batch_size=6",
    cache_dir=shared_cache,
    check=False,
    env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
  )
  line = _one_error_line(proc)  # and no TensorBoard writer's traceback at exit
  assert "train.batch_size=6 / train.microbatches=1 must be a multiple of data*fsdp=4" in line
  assert "set --config.train.batch_size=8" in line


def test_data_workers_end_without_tracebacks(tmp_path, shared_cache):
  proc = run_main(
    tmp_path / "run",
    "--config.train.steps=2",
    "--config.data.num_workers=2",
    "--config.eval.in_loop=False",
    cache_dir=shared_cache,
  )
  assert "Traceback" not in proc.stderr, proc.stderr


_INTERRUPT_IN_BUILD = """
import os, signal, sys
from fimjax.cli import train
from fimjax.data import cache
write = cache.folder.write
def interrupted(path, fn):  # Ctrl-C half way through writing the cache's files
  write(path, fn)
  os.kill(os.getpid(), signal.SIGINT)
cache.folder.write = interrupted
sys.exit(train.main())
"""


def test_ctrl_c_during_the_cache_build_is_one_line_and_leaves_no_cache(tmp_path):
  workdir, cache_dir = tmp_path / "run", tmp_path / "cache"
  proc = subprocess.run(
    [
      sys.executable,
      "-c",
      _INTERRUPT_IN_BUILD,
      "--config",
      str(REPO / "configs/tiny.py"),
      "--workdir",
      str(workdir),
      f"--config.data.cache_dir={cache_dir}",
      "--config.data.corpus=synthetic:20",
      "--config.data.tokenizer=bpe",
      "--config.data.bpe_vocab_size=300",
      "--config.train.progress=False",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=240,
    preexec_fn=default_sigint,
  )
  assert proc.returncode == 130, proc.stderr
  line = _one_error_line(proc)
  assert (
    f"interrupted while building or checking the token cache {cache_dir}; an unfinished "
    "build is not kept"
    in line
    and "rerun the same command to build it" in line
  )
  assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no cache, no temp folder
  assert not (workdir / lock.LOCK_FILE).exists()


def test_a_damaged_metrics_line_costs_the_plot_not_the_run(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\nnot json\n{"step": 2}\n')
  proc = run_main(
    workdir,
    "--config.train.steps=2",
    "--config.eval.in_loop=False",
    cache_dir=tmp_path / "cache",
    check=False,
  )
  assert proc.returncode == 0, proc.stderr
  assert "no loss plot" in proc.stderr and "metrics.jsonl:2" in proc.stderr
  assert "Traceback" not in proc.stderr
