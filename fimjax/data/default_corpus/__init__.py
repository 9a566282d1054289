"""The embedded default corpus.

`embedded()`: the default corpus, 1,269 real GitHub Actions workflow files by other people under
MIT, BSD-3-Clause and Apache-2.0 (`workflows.tar.xz`, sources and licenses in `NOTICE.md`), with
the train/validation split of its `SPLIT.tsv`; broken files are kept on purpose (the reader
skips and counts them). The synthetic corpus (`synthetic:N`, for scale tests and benchmarks)
is `fimjax.synthetic`.
"""

import csv
import functools
import importlib.resources
import io
import tarfile

SPLIT_NAMES = ("train", "validation")


@functools.cache
def _embedded() -> tuple[tuple[str, bytes, int], ...]:
  archive = importlib.resources.files(__package__) / "workflows.tar.xz"
  with archive.open("rb") as f, tarfile.open(fileobj=io.BytesIO(f.read()), mode="r:xz") as tar:
    files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
  rows = csv.DictReader(io.StringIO(files["SPLIT.tsv"].decode("utf-8")), delimiter="\t")
  split = {r["file"]: SPLIT_NAMES.index(r["split"]) for r in rows}
  return tuple(
    (name, data, split[name]) for name, data in sorted(files.items()) if name.startswith("raw/")
  )


def embedded() -> list[tuple[str, bytes, int]]:
  """(name `raw/<owner>__<repo>/<file>`, the file's bytes, split 0 train / 1 validation)."""
  return list(_embedded())
