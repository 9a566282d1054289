"""The package's layers (docs/interfaces.md): data -> core -> commands, and no import cycles."""

import ast
import importlib
import json
import os
import pathlib
import subprocess
import sys

from fimjax.cli import common
from tests.conftest import REPO

PACKAGE = REPO / "fimjax"
# `python -m fimjax.<name>` of a command with no library behind the name: a few lines that run
# fimjax/cli/<command>.py (a name that is also a library is a package with a __main__.py).
SHIMS = {"fimjax.main", "fimjax.compare", "fimjax.fit", "fimjax.infill", "fimjax.generate"}
DATA_MAY_IMPORT = ("fimjax.data", "fimjax.synthetic")


def _name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, str]:
  """Module name -> source of every module of the package."""
  return {_name(p): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(source: str, known: set[str], *, top_level_only: bool) -> set[str]:
  """The fimjax modules `source` imports (`from fimjax import x` is fimjax.x when x is one)."""
  tree = ast.parse(source)
  if top_level_only:  # what runs at import time: module statements, not function bodies
    nodes, stack = [], list(tree.body)
    while stack:
      node = stack.pop()
      nodes.append(node)
      if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
        stack.extend(ast.iter_child_nodes(node))
  else:
    nodes = list(ast.walk(tree))
  out = set()
  for node in nodes:
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.split(".")[0] == "fimjax"}
    elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "fimjax":
      out |= {
        f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
        for a in node.names
      }
  return out


def _is_command(name: str) -> bool:
  return (
    name == "fimjax.cli"
    or name.startswith("fimjax.cli.")
    or name in SHIMS
    or name.endswith(".__main__")
  )


def layer_violations(srcs: dict[str, str]) -> list[str]:
  """`fimjax.data` imports nothing outside it (but the `fimjax.synthetic` leaf); the core (every
  module that is not a command) imports no command. Entry points (`__main__`) are commands."""
  known, bad = set(srcs), []
  for name, source in srcs.items():
    for imported in sorted(_imports(source, known, top_level_only=False)):
      if _is_command(name):
        continue
      if name.startswith("fimjax.data") and not imported.startswith(DATA_MAY_IMPORT):
        bad.append(f"{name} (data) imports {imported}")
      elif _is_command(imported):
        bad.append(f"{name} (core) imports the command {imported}")
  return bad


def import_cycles(srcs: dict[str, str]) -> list[list[str]]:
  """Cycles of import-time imports (a package's import runs its parents' first)."""
  known = set(srcs)
  graph = {n: _imports(s, known, top_level_only=True) - {n} for n, s in srcs.items()}
  cycles, state = [], {}

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        cycles.append(path[path.index(nxt) :] + [nxt])
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = "done"

  for n in sorted(graph):
    if n not in state:
      visit(n, [n])
  return cycles


def test_layers_hold():
  assert layer_violations(sources()) == []


def test_no_import_cycles():
  assert import_cycles(sources()) == []


def test_the_checks_catch_what_they_are_for():
  srcs = {
    "fimjax.data.fim": "from fimjax import checkpoint\n",
    "fimjax.checkpoint": "import fimjax.cli.train\n",
    "fimjax.cli.train": "from fimjax import checkpoint\n",
    "fimjax.model": "def f():\n  from fimjax.cli import common\n",
    "fimjax.a": "from fimjax import b\n",
    "fimjax.b": "def f():\n  pass\nimport fimjax.a\n",
    "fimjax.c": "def f():\n  from fimjax import a\n",
  }
  assert layer_violations(srcs) == [
    "fimjax.data.fim (data) imports fimjax.checkpoint",
    "fimjax.checkpoint (core) imports the command fimjax.cli.train",
    "fimjax.model (core) imports the command fimjax.cli",
  ]
  assert import_cycles(srcs) == [
    ["fimjax.a", "fimjax.b", "fimjax.a"],
    ["fimjax.checkpoint", "fimjax.cli.train", "fimjax.checkpoint"],
  ]


# Imports the third-party modules the package imports at its top level once, then forks a child
# per fimjax module: each child starts with no fimjax module loaded, as a fresh interpreter
# would, without paying for jax and flax again.
_IMPORT_EACH = """
import importlib, json, os, sys, traceback
for dep in json.loads(sys.argv[1]):
  try:
    importlib.import_module(dep)
  except Exception:
    pass
failed = {}
for name in json.loads(sys.argv[2]):
  read, write = os.pipe()
  pid = os.fork()
  if pid == 0:
    os.close(read)
    try:
      importlib.import_module(name)
      code = 0
    except BaseException:
      os.write(write, traceback.format_exc()[-2000:].encode())
      code = 1
    os._exit(code)
  os.close(write)
  with os.fdopen(read) as f:
    message = f.read()
  if os.waitpid(pid, 0)[1] != 0:
    failed[name] = message or "exit status"
print(json.dumps(failed))
"""


def _third_party(srcs: dict[str, str]) -> list[str]:
  out = set()
  for source in srcs.values():
    for node in ast.parse(source).body:
      if isinstance(node, ast.Import):
        out |= {a.name for a in node.names}
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        out.add(node.module)
  return sorted(n for n in out if n.split(".")[0] not in ("fimjax", "__future__"))


def import_each(names: list[str], srcs: dict[str, str]) -> dict[str, str]:
  """Module -> the end of its traceback, for every module of `names` that fails to import
  alone."""
  proc = subprocess.run(
    [sys.executable, "-c", _IMPORT_EACH, json.dumps(_third_party(srcs)), json.dumps(names)],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert proc.returncode == 0, proc.stderr
  return json.loads(proc.stdout.splitlines()[-1])


def test_every_module_imports_alone_in_a_fresh_interpreter():
  srcs = sources()
  names = [n for n in srcs if not n.endswith(".__main__")]  # a __main__ runs its command
  assert len(names) > 40
  assert import_each(names, srcs) == {}


def test_a_module_that_cannot_import_alone_is_reported():
  failed = import_each(["fimjax.no_such_module", "fimjax.data.fim"], {})
  assert list(failed) == ["fimjax.no_such_module"]
  assert "ModuleNotFoundError" in failed["fimjax.no_such_module"]


def test_every_command_runs_in_one_process_with_one_flag_spelling(capsys):
  """Commands define their flags on FlagValues of their own: all of them import and parse in
  one process; dashes in a flag name read as underscores."""
  commands = sorted(
    p.stem for p in (PACKAGE / "cli").glob("*.py") if p.stem not in ("__init__", "common")
  )
  assert len(commands) >= 11
  for name in commands:
    main = importlib.import_module(f"fimjax.cli.{name}").main
    argv = {"cache": ["build", "--help"], "pipeline": ["show", "--help"]}.get(name, ["--help"])
    assert main(argv) == 0, name
    assert "--" in capsys.readouterr().out, name
  fv = common.flags.FlagValues()
  common.sampling_flags(fv, temperature=0.0, max_tokens=8)
  common.flags.DEFINE_bool("progress", True, "", flag_values=fv)
  assert common.normalise(
    ["--top-k", "5", "--max-tokens=3", "--no-progress", "-", "--", "--top-p"], fv
  ) == ["--top_k", "5", "--max_tokens=3", "--noprogress", "-", "--", "--top-p"]
