"""The embedded corpora.

`embedded()`: the default corpus, 1,269 real GitHub Actions workflow files by other people under
MIT, BSD-3-Clause and Apache-2.0 (`workflows.tar.xz`, sources and licenses in `NOTICE.md`), with
the train/validation split of its `SPLIT.tsv`; broken files are kept on purpose (the reader
skips and counts them). `synthetic(n)`: the project's hand-written workflows (`workflows/`) plus
`n` composed by a seeded generator (`generator.py`), for scale tests and benchmarks.
"""

import csv
import functools
import importlib.resources
import io
import tarfile

from fimjax.data.default_corpus.generator import generate

SPLIT_NAMES = ("train", "validation")


@functools.cache
def _embedded() -> tuple[tuple[str, bytes, int], ...]:
  archive = importlib.resources.files(__package__) / "workflows.tar.xz"
  with archive.open("rb") as f, tarfile.open(fileobj=io.BytesIO(f.read()), mode="r:xz") as tar:
    files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
  rows = csv.DictReader(io.StringIO(files["SPLIT.tsv"].decode("utf-8")), delimiter="\t")
  split = {r["file"]: SPLIT_NAMES.index(r["split"]) for r in rows}
  return tuple((name, data, split[name]) for name, data in sorted(files.items())
               if name.startswith("raw/"))


def embedded() -> list[tuple[str, bytes, int]]:
  """(name `raw/<owner>__<repo>/<file>`, the file's bytes, split 0 train / 1 validation)."""
  return list(_embedded())


@functools.cache
def _hand_written() -> tuple[tuple[str, str], ...]:
  folder = importlib.resources.files(__package__) / "workflows"
  files = sorted((f for f in folder.iterdir() if f.name.endswith((".yml", ".yaml"))), key=lambda f: f.name)
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
