"""The tools meet a user's mistakes (issue 13): one line that names the path or field and the fix,
and nothing created or changed that should not be."""

import subprocess
import sys

import pytest

from fimjax import config_base
from fimjax import metrics
from tests.conftest import REPO


def _tool(*args):
  return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=REPO, capture_output=True,
                        text=True, timeout=120)


def _one_line(err: str) -> str:
  """The single `error:` line of a tool's stderr (no traceback, nothing else)."""
  assert err.count("\n") == 1 and err.startswith("error: "), err
  return err


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


@pytest.mark.parametrize("tail, kept", [('{"step": 3, "lo', [1, 2, 4]),  # torn: cut
                                        ('{"step": 3, "loss": 2.0}', [1, 2, 3, 4])])  # whole
def test_resumed_writer_appends_after_a_torn_line_on_a_line_of_its_own(tmp_path, caplog, tail,
                                                                      kept):
  workdir = _metrics(tmp_path / "run", GOOD + tail)
  w = metrics.MetricsWriter(str(workdir), enabled=True)
  w.write(4, {"loss": 1.5})
  w.close()
  assert [r["step"] for r in metrics.read_metrics(str(workdir))] == kept
  assert (workdir / "metrics.jsonl").read_text().startswith(GOOD)
  assert ("metrics.jsonl: removed a torn last line (15 bytes" in caplog.text) == (3 not in kept)
