"""The tree is formatted with the configured formatter (`make format`; pyproject's [tool.ruff])."""

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO

FOLDERS = ("fimjax", "tests", "bench", "configs", "scripts")


@pytest.mark.skipif(
  importlib.util.find_spec("ruff") is None, reason="ruff not installed (the dev extra has it)"
)
def test_the_tree_is_formatted():
  proc = subprocess.run(
    [sys.executable, "-m", "ruff", "format", "--check", *FOLDERS],
    cwd=REPO,
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 0, f"run `make format`:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
