"""Synthetic GitHub Actions workflows for scale tests and benchmarks (`data.corpus=synthetic:N`).

`synthetic(n)`: the project's hand-written workflows (`workflows/`) plus `n` composed by a seeded
generator (`generator.py`: ecosystems x triggers x job parts, emitted in varied YAML styles).
Not the default corpus (that is the real one, `fimjax.data.default_corpus`): a model trained on
these learns the generator's templates. A leaf package: it imports nothing else from fimjax.
"""

import functools
import importlib.resources

from fimjax.synthetic.generator import generate


@functools.cache
def _hand_written() -> tuple[tuple[str, str], ...]:
  folder = importlib.resources.files(__package__) / "workflows"
  files = sorted(
    (f for f in folder.iterdir() if f.name.endswith((".yml", ".yaml"))), key=lambda f: f.name
  )
  return tuple((f"workflows/{f.name}", f.read_text(encoding="utf-8")) for f in files)


def hand_written() -> list[tuple[str, str]]:
  """(name, text) of every hand-written workflow, sorted by name."""
  return list(_hand_written())


def synthetic(num_generated: int = 3000, seed: int = 0) -> list[tuple[str, str]]:
  """Every hand-written workflow (`workflows/<file>`), then `num_generated` generated ones
  (`generated/<i:05d>.yml`); the same seed gives the same texts byte for byte."""
  docs = hand_written()
  docs.extend((f"generated/{i:05d}.yml", generate(i, seed)) for i in range(num_generated))
  return docs
