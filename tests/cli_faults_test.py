"""The tools meet a user's mistakes (issue 13): one line that names the path or field and the fix,
and nothing created or changed that should not be."""

import subprocess
import sys

import pytest

from fimjax import config_base
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
