"""The tools meet a user's mistakes (issue 13): one line that names the path or field and the fix,
and nothing created or changed that should not be."""

import os
import re
import subprocess
import sys

import pytest

from fimjax import config_base
from fimjax import metrics
from fimjax.cli import evaluate
from fimjax.cli import generate
from fimjax.cli import infill
from fimjax.cli import plot
from fimjax.data import paths
from tests.conftest import REPO


def _tool(*args):
  return subprocess.run(
    [sys.executable, "-m", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=120
  )


def _one_line(err: str) -> str:
  """The single `error:` line of a tool's stderr: nothing else but absl/jax log lines."""
  lines = [ln for ln in err.splitlines() if not re.match(r"[IW]\d{4} \d\d:\d\d:", ln)]
  assert len(lines) == 1 and lines[0].startswith("error: ") and err.endswith("\n"), err
  return lines[0]


# ------------------------------------------------------------------- 14: a config file's shape


def test_config_file_without_get_config_names_the_file_and_the_fix(tmp_path):
  path = tmp_path / "mine.py"
  path.write_text("from fimjax.config_base import base_config\nc = base_config('tiny')\n")
  proc = _tool("fimjax.fit", "--config", path)
  assert proc.returncode == 2
  line = _one_line(proc.stderr)
  assert str(path) in line and "has no get_config()" in line and "def get_config" in line
  assert "no such config field" not in line
  with pytest.raises(ValueError, match=r"mine\.py has no get_config\(\)"):
    config_base.load_config_file(path)
  proc = _tool("fimjax.fit", "--config", REPO / "configs/tiny.py", "--config.train.stepz=5")
  assert proc.returncode == 2  # a field that does not exist is still named as such
  assert "--config.train.stepz: no such config field" in _one_line(proc.stderr)


# ---------------------------------------------------------- 9: metrics.jsonl torn by a crash


def _metrics(workdir, text):
  workdir.mkdir(exist_ok=True)
  (workdir / "metrics.jsonl").write_text(text)
  return workdir


GOOD = '{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.5, "eval_loss": 2.7}\n'


def test_torn_last_metrics_line_is_skipped_with_a_warning(tmp_path):
  workdir = _metrics(tmp_path / "run", GOOD + '{"step": 3, "lo')
  proc = _tool("fimjax.plot", workdir)
  assert proc.returncode == 0 and proc.stdout.strip() == str(workdir / "loss.png"), proc.stderr
  assert proc.stderr.count("\n") == 1 and "metrics.jsonl:3: skipped a torn last line" in proc.stderr
  assert [r["step"] for r in metrics.read_metrics(str(workdir))] == [1, 2]


def test_torn_metrics_line_elsewhere_is_an_error_naming_file_and_line(tmp_path):
  workdir = _metrics(tmp_path / "run", '{"step": 1, "lo' + GOOD)
  proc = _tool("fimjax.plot", workdir)
  assert proc.returncode == 1
  assert f"{workdir / 'metrics.jsonl'}:1: not a metrics record" in _one_line(proc.stderr)
  assert not (workdir / "loss.png").exists()


@pytest.mark.parametrize(
  "tail, kept",
  [
    ('{"step": 3, "lo', [1, 2, 4]),  # torn: cut
    ('{"step": 3, "loss": 2.0}', [1, 2, 3, 4]),
  ],
)  # whole
def test_resumed_writer_appends_after_a_torn_line_on_a_line_of_its_own(
  tmp_path, caplog, tail, kept
):
  workdir = _metrics(tmp_path / "run", GOOD + tail)
  w = metrics.MetricsWriter(str(workdir), enabled=True)
  w.write(4, {"loss": 1.5})
  w.close()
  assert [r["step"] for r in metrics.read_metrics(str(workdir))] == kept
  assert (workdir / "metrics.jsonl").read_text().startswith(GOOD)
  assert ("metrics.jsonl: removed a torn last line (15 bytes" in caplog.text) == (3 not in kept)


# ---------------------------------------------------- 12: the tools' inputs, outputs, workdirs


def _snapshot(root):
  return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _in_process(capsys, main, *argv) -> tuple[int, str]:
  """(exit status, the one error line) of a tool's main(argv); SystemExit counts too."""
  try:
    rc = main([str(a) for a in argv])
  except SystemExit as e:
    rc = e.code
  return rc, _one_line(capsys.readouterr().err)


@pytest.fixture
def files(tmp_path):
  (tmp_path / "wf.yml").write_text("name: CI\non: push\njobs:\n  a:\n    runs-on: <FILL>\n")
  (tmp_path / "latin1.yml").write_bytes("name: caf\xe9 <FILL>\n".encode("latin-1"))
  (tmp_path / "binary.yml").write_bytes(b"\x7fELF\x02\x01\x00\x00<FILL>\n")
  (tmp_path / "a_file").write_text("x")
  (tmp_path / "empty_run").mkdir()
  return tmp_path


def test_infill_refuses_bad_input_and_output_in_one_line(files, capsys):
  run = files / "no_run"  # every case stops before the run is looked at
  for name, why in [
    ("latin1.yml", "byte 0xe9 at offset 9: invalid continuation byte"),
    ("binary.yml", "byte 0x00 at offset 6: a binary file"),
  ]:
    rc, line = _in_process(capsys, infill.main, "--workdir", run, files / name)
    assert rc == 2 and f"{files / name} is not UTF-8 text ({why}" in line
  for flag, bad in (("--max_tokens", "0"), ("--max-tokens", "-1")):  # the old spelling too
    rc, line = _in_process(capsys, infill.main, "--workdir", run, files / "wf.yml", flag, bad)
    assert rc == 2 and f"flag --max_tokens={bad}: must be >= 1, not {bad}" in line
  rc, line = _in_process(capsys, infill.main, "--workdir", run, files / "wf.yml", "--out", files)
  assert rc == 2 and f"--out {files} is a folder: give a file path" in line
  rc, line = _in_process(
    capsys, infill.main, "--workdir", run, files / "wf.yml", "--out", files / "a_file" / "out.yml"
  )
  assert rc == 2 and f"{files / 'a_file'} is a file, not a folder" in line


@pytest.mark.parametrize(
  "flag, value, rule",
  [
    ("--num", "0", ">= 1"),
    ("--num", "-3", ">= 1"),
    ("--batch_size", "0", ">= 1"),
    ("--temperature", "-0.5", ">= 0"),
    ("--top_k", "-1", ">= 0"),
    ("--top-p", "0", "> 0"),
    ("--max-tokens", "x", None),
  ],
)
def test_generate_refuses_bad_numbers_in_one_line(tmp_path, capsys, flag, value, rule):
  rc, line = _in_process(capsys, generate.main, "--workdir", tmp_path, flag, value)
  assert rc == 2 and f"flag {flag.replace('-', '_').replace('__', '--')}={value}: " in line
  assert "(see python -m fimjax.generate --help)" in line
  assert (f"must be {rule}, not {value}" if rule else f"{value!r} is not an integer") in line


def test_generate_refuses_a_samples_dir_that_is_a_file_before_loading_the_model(files, capsys):
  rc, line = _in_process(
    capsys, generate.main, "--workdir", files / "no_run", "--samples-dir", files / "a_file"
  )
  assert rc == 2 and f"--samples_dir {files / 'a_file'} is a file: give a folder path" in line


@pytest.mark.parametrize("tool", ["infill", "generate", "evaluate"])
def test_tools_on_a_missing_or_empty_workdir_create_nothing(files, capsys, tool):
  main = {"infill": infill.main, "generate": generate.main, "evaluate": evaluate.main}[tool]
  before = _snapshot(files)
  for run, where in [
    (files / "no_run", "no_run: no such folder"),
    (files / "a_file", "a_file: a file, not a run folder"),
    (files / "empty_run", "empty_run/checkpoints;"),
  ]:
    rc, line = _in_process(
      capsys, main, "--workdir", run, *([files / "wf.yml"] if tool == "infill" else [])
    )
    assert rc == 1 and f"no checkpoint in {files}/{where}" in line
    assert f"train first with python -m fimjax.main --config CONFIG --workdir {run}" in line
  assert _snapshot(files) == before


def test_plot_on_a_read_only_workdir_names_the_fix(tmp_path, capsys, monkeypatch):
  workdir = _metrics(tmp_path / "run", GOOD)
  # root ignores permission bits: answer as a read-only folder does
  monkeypatch.setattr(os, "access", lambda path, mode: path != str(workdir))
  rc, line = _in_process(capsys, plot.main, workdir)
  assert rc == 1 and f"{workdir / 'loss.png'}: {workdir} is not writable" in line
  assert "pass --out PATH" in line and _snapshot(workdir) == ["metrics.jsonl"]
  assert plot.main([str(workdir), "--out", str(tmp_path / "elsewhere.png")]) == 0
  assert (tmp_path / "elsewhere.png").stat().st_size > 1000


@pytest.mark.parametrize(
  "devices, message",
  [
    ("-1", "flag --devices=-1: -1 is not a non-negative integer"),
    ("3", "train.batch_size=8 / train.microbatches=1 must be a multiple of data*fsdp=3"),
  ],
)
def test_fit_refuses_devices_it_cannot_use_in_one_line(devices, message):
  proc = _tool(
    "fimjax.fit",
    "--config",
    REPO / "configs/tiny.py",
    "--devices",
    devices,
    "--config.train.batch_size=8",
  )
  assert proc.returncode in (1, 2) and message in _one_line(proc.stderr)


def test_an_existing_writable_file_may_be_replaced(tmp_path):
  out = tmp_path / "loss.png"
  out.write_bytes(b"old plot")
  assert paths.output_error(str(out)) is None
  assert "is a file" in paths.output_error(str(out), folder=True)


def test_a_run_saved_before_a_fixed_field_existed_resumes_with_its_default():
  """Runs saved before data.documents/jsonc/text_field existed read workflows as the defaults
  do: resuming them is no change; another value still is."""
  now = config_base.base_config("tiny").to_dict()
  old = config_base.base_config("tiny").to_dict()
  for key in config_base.ADDED_LATER:
    del old["data"][key.split(".")[1]]
  assert config_base.incompatible_fields(old, now) == []
  now["data"]["documents"] = "any"
  assert config_base.incompatible_fields(old, now) == [("data.documents", None, "any")]
