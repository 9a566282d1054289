"""The project's own embedded corpus of GitHub Actions workflows.

Hand-written files in `workflows/` plus workflows composed by a seeded generator
(`generator.py`); `documents()` returns both as (name, text) pairs.
"""

import functools
import importlib.resources

from fimjax.data.default_corpus.generator import generate


@functools.cache
def _hand_written() -> tuple[tuple[str, str], ...]:
  folder = importlib.resources.files(__package__) / "workflows"
  files = sorted((f for f in folder.iterdir() if f.name.endswith((".yml", ".yaml"))), key=lambda f: f.name)
  return tuple((f"workflows/{f.name}", f.read_text(encoding="utf-8")) for f in files)


def hand_written() -> list[tuple[str, str]]:
  """(name, text) of every hand-written workflow, sorted by name."""
  return list(_hand_written())


def documents(num_generated: int = 3000, seed: int = 0) -> list[tuple[str, str]]:
  """Every hand-written workflow (`workflows/<file>`), then `num_generated` generated ones
  (`generated/<i:05d>.yml`); the same seed gives the same texts byte for byte."""
  docs = hand_written()
  docs.extend((f"generated/{i:05d}.yml", generate(i, seed)) for i in range(num_generated))
  return docs
