"""Corpus inputs: what each input path holds, listed as documents to read (Sources) and tables.

An input is
- "default" / "synthetic:N": an embedded corpus;
- a file: a table when its name ends with `.jsonl`, `.jsonl.gz` or `.parquet`, else one document
  whatever its suffix;
- a folder: a Hugging Face dataset saved with `save_to_disk` when it holds `dataset_info.json` and
  `state.json` (or `dataset_dict.json`), else every `.yml`/`.yaml`/`.json` file and table below it
  (recursive; `.git` and token caches skipped, datasets read as one table each).
Any of these may be a URL (gs://..., through fsspec and gcsfs). A table's rows are documents: the
text in field `text_field`, named `FILE:ROW` (JSONL: its line number; Parquet and datasets: the row
index from 0) followed by its `repo`/`path` fields when it has them; a row without a string text is
skipped as `bad_row`. Rows split by content hash, as files do.
"""

import dataclasses
import gzip
import hashlib
import io
import json
import os
import posixpath
import tempfile
import zlib
from typing import Iterable

from fimjax import synthetic
from fimjax.data import default_corpus

CACHE_MARKER = ".fimjax-cache"  # folders holding this file (token caches) are never read as input
EXTENSIONS = (".yml", ".yaml", ".json")
TABLES = {".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".parquet": "parquet"}  # suffix -> kind
HF_DATASET = ({"dataset_info.json", "state.json"}, {"dataset_dict.json"})  # either set marks one
DEFAULT = "default"  # the input that means the embedded corpus of real workflows
SYNTHETIC = "synthetic:"  # "synthetic:N": the hand-written workflows plus N generated ones
_BATCH = 4096  # rows per Parquet / dataset batch


class CorpusError(ValueError):
  """Bad corpus input (missing path, nothing usable); the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Source:
  """One document: a file (`path`, local or a URL) or bytes in memory (`data`: an embedded file or
  a table row), with its own split (0 train / 1 validation) or None (by content hash)."""

  name: str
  path: str | None = None
  data: bytes | None = None
  split: int | None = None
  json_file: bool | None = None  # parse as JSON; None = when the name ends with `.json`
  reason: str | None = None  # known unusable before reading (a bad row, an unreadable table)
  note: str = ""  # why, for the skip report


@dataclasses.dataclass(frozen=True)
class Table:
  """A file or folder of rows, each a document; `kind` is "jsonl", "parquet" or "hf"."""

  kind: str
  path: str


def is_embedded(inp: str) -> bool:
  """The input names an embedded corpus ("default" or "synthetic:N"), not a path."""
  return inp == DEFAULT or inp.startswith(SYNTHETIC)


def is_url(path: str) -> bool:
  return "://" in path


def table_kind(name: str) -> str | None:
  lower = name.lower()
  return next((kind for suffix, kind in TABLES.items() if lower.endswith(suffix)), None)


# ------------------------------------------------------------------ local files and URLs alike


def _fs(url: str):
  """(fsspec filesystem, path in it) of a URL; a one-line CorpusError when its package is
  missing."""
  scheme = url.split("://", 1)[0]
  try:
    import fsspec  # gcsfs brings it; only URLs need it

    return fsspec.core.url_to_fs(url)
  except ImportError as e:
    if scheme in ("gs", "gcs"):
      raise CorpusError(
        f"input {url}: gs:// paths need gcsfs, which is not installed: pip install "
        "'fimjax[gcs]' (or copy the corpus to a local folder)"
      ) from None
    raise CorpusError(
      f"input {url}: {scheme}:// paths need a package that is not installed "
      f"({e}); or copy the corpus to a local folder"
    ) from None
  except ValueError as e:  # fsspec: "Protocol not known"
    raise CorpusError(f"input {url}: {e}; give a local path or a gs:// URL") from None


def _join(url: str, fs_path: str) -> str:
  """The URL of `fs_path` (a path inside the filesystem of `url`)."""
  return f"{url.split('://', 1)[0]}://{fs_path.lstrip('/')}"


def _kind(path: str) -> str | None:
  """ "file", "dir" or None (nothing there)."""
  if is_url(path):
    fs, p = _fs(path)
    return "dir" if fs.isdir(p) else "file" if fs.isfile(p) else None
  return "dir" if os.path.isdir(path) else "file" if os.path.isfile(path) else None


def size(path: str) -> int:
  if is_url(path):
    fs, p = _fs(path)
    return fs.size(p)
  return os.path.getsize(path)


def read_bytes(path: str) -> bytes:
  """The file's bytes (raises OSError when it cannot be read)."""
  if is_url(path):
    fs, p = _fs(path)
    return fs.cat_file(p)
  with open(path, "rb") as f:
    return f.read()


def _walk(root: str):
  """os.walk of a local folder or a URL, top-down (prune by editing `dirs`), paths as given."""
  if not is_url(root):
    yield from os.walk(root)
    return
  fs, p = _fs(root)
  for folder, dirs, files in fs.walk(p):
    yield _join(root, folder), dirs, files


def _is_dataset(names) -> bool:
  return any(marks <= set(names) for marks in HF_DATASET)


# ------------------------------------------------------------------------------------ listing


def list_sources(inputs) -> list[Source | Table]:
  """Expands every input (see the module docstring) in order; folders sorted by path."""
  if isinstance(inputs, str):
    inputs = [inputs]
  out = []
  for inp in inputs:
    if is_embedded(inp):
      out.extend(_embedded_sources(inp))
      continue
    kind = _kind(inp)
    if kind == "file":
      tk = table_kind(inp)
      out.append(Table(tk, inp) if tk else Source(inp, path=inp))  # named: whatever its suffix
    elif kind == "dir":
      out.extend(_folder(inp))
    else:
      raise CorpusError(
        f"input not found: {inp} (give existing workflow files/folders, tables "
        "(.jsonl, .parquet, a saved dataset), 'default' or 'synthetic:N')"
      )
  return out


def _folder(root: str) -> list[Source | Table]:
  found = []
  sep = "/" if is_url(root) else os.sep
  for folder, dirs, files in _walk(root):
    if CACHE_MARKER in files or _is_dataset(files):
      dirs[:] = []
      if CACHE_MARKER not in files:
        found.append((folder, Table("hf", folder)))
      continue
    dirs[:] = sorted(d for d in dirs if d != ".git")
    for f in files:
      path = folder.rstrip(sep) + sep + f
      if tk := table_kind(f):
        found.append((path, Table(tk, path)))
      elif f.lower().endswith(EXTENSIONS):
        found.append((path, Source(path, path=path)))
  return [s for _, s in sorted(found, key=lambda x: x[0])]


def _embedded_sources(inp: str) -> list[Source]:
  if inp == DEFAULT:
    return [
      Source(f"default:{name}", data=data, split=split)
      for name, data, split in default_corpus.embedded()
    ]
  try:
    n = int(inp[len(SYNTHETIC) :])
  except ValueError:
    n = -1
  if n < 0:
    raise CorpusError(f"bad input {inp!r}: write synthetic:N with N >= 0 generated workflows")
  return [
    Source(f"synthetic:{name}", data=text.encode("utf-8")) for name, text in synthetic.synthetic(n)
  ]


# ------------------------------------------------------------------------------------- tables


def table_digest(table: Table) -> str:
  """sha256 of the table's content (its file's bytes; a dataset's files and their names)."""
  if table.kind != "hf":
    return hashlib.sha256(read_bytes(table.path)).hexdigest()
  return _folder_digest(table.path)


def _folder_digest(root: str) -> str:
  h = hashlib.sha256()
  files = []
  for folder, _, names in _walk(root):
    files += [posixpath.join(folder, n) if is_url(root) else os.path.join(folder, n) for n in names]
  for f in sorted(files):
    rel = os.path.relpath(f, root) if not is_url(root) else f[len(root.rstrip("/")) + 1 :]
    h.update(f"{rel.replace(os.sep, '/')}\0{hashlib.sha256(read_bytes(f)).hexdigest()}\n".encode())
  return h.hexdigest()


def read_table(table: Table, text_field: str = "content") -> tuple[str | None, Iterable[Source]]:
  """(content sha256 or None when unreadable, a Source per row); an unreadable table is one
  Source with reason "unreadable". Raises CorpusError when `text_field` is not a column."""
  try:
    if table.kind == "hf":
      return _read_dataset(table, text_field)
    data = read_bytes(table.path)
  except OSError as e:
    return None, [Source(table.path, reason="unreadable", note=_one_line(e))]
  digest = hashlib.sha256(data).hexdigest()
  try:
    if table.kind == "jsonl":  # rows parsed as the reader asks for them: its workers start now
      if table.path.lower().endswith(".gz"):
        data = gzip.decompress(data)
      return digest, _jsonl_rows(table.path, data, text_field)
    return digest, list(_parquet_rows(table.path, data, text_field))
  except (OSError, EOFError, ValueError, zlib.error) as e:  # a broken gzip or Parquet file
    if isinstance(e, CorpusError):
      raise
    return digest, [Source(table.path, reason="unreadable", note=_one_line(e))]


def _one_line(e: Exception) -> str:
  return (str(e).splitlines() or [type(e).__name__])[0][:300]


def _row(name: str, row: dict, text_field: str) -> Source:
  """A row as a Source, named with its `repo`/`path` fields; a row without a string text is bad."""
  repo, path = (row.get(k) if isinstance(row.get(k), str) else "" for k in ("repo", "path"))
  if repo or path:
    name += f" ({'/'.join(x for x in (repo, path) if x)})"
  text = row.get(text_field)
  if not isinstance(text, (str, bytes)):
    why = "is missing" if text is None else f"is {type(text).__name__}, not a string"
    return Source(name, reason="bad_row", note=f"field {text_field!r} {why}")
  try:
    data = text.encode("utf-8") if isinstance(text, str) else text
  except UnicodeEncodeError:  # a lone surrogate escaped in JSON
    return Source(name, reason="not_utf8")
  return Source(name, data=data, json_file=path.lower().endswith(".json") or None)


def _jsonl_rows(name: str, data: bytes, text_field: str):
  for line_no, line in enumerate(data.split(b"\n"), 1):
    if not line.strip():  # blank lines (a last newline) are no rows
      continue
    where = f"{name}:{line_no}"
    try:
      row = json.loads(line)
    except ValueError as e:
      yield Source(where, reason="bad_row", note=f"not JSON ({_one_line(e)})")
      continue
    if not isinstance(row, dict):
      yield Source(where, reason="bad_row", note="not a JSON object")
      continue
    yield _row(where, row, text_field)


def _columns(name: str, have: list[str], text_field: str) -> list[str]:
  if text_field not in have:
    raise CorpusError(
      f"{name} has no column {text_field!r} (it has {', '.join(have)}); set "
      "--config.data.text_field / --text-field to the column of the documents' text"
    )
  return [c for c in (text_field, "repo", "path") if c in have]


def _parquet_rows(name: str, data: bytes, text_field: str):
  try:
    import pyarrow.parquet as pq
  except ImportError:
    raise CorpusError(
      f"input {name}: Parquet needs pyarrow, which is not installed: pip install 'fimjax[parquet]'"
    ) from None
  pf = pq.ParquetFile(io.BytesIO(data))
  cols = _columns(name, pf.schema_arrow.names, text_field)
  row = 0
  for batch in pf.iter_batches(batch_size=_BATCH, columns=cols):
    for r in batch.to_pylist():
      yield _row(f"{name}:{row}", r, text_field)
      row += 1


def _read_dataset(table: Table, text_field: str) -> tuple[str, list[Source]]:
  try:
    import datasets
  except ImportError:
    raise CorpusError(
      f"input {table.path}: Hugging Face datasets need `datasets`, which is not "
      "installed: pip install 'fimjax[hf]'"
    ) from None
  with tempfile.TemporaryDirectory(prefix="fimjax-dataset-") as tmp:
    local = table.path
    if is_url(local):  # one download, hashed and loaded from the copy
      fs, p = _fs(local)
      fs.get(p.rstrip("/") + "/", tmp + "/", recursive=True)
      local = tmp
    digest = _folder_digest(local)
    try:
      loaded = datasets.load_from_disk(local, keep_in_memory=False)
    except (OSError, ValueError) as e:  # damaged files: the dataset is one unreadable input
      return digest, [Source(table.path, reason="unreadable", note=_one_line(e))]
    parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    out = []
    for split, ds in parts:
      prefix = posixpath.join(table.path, split) if split else table.path
      cols = _columns(prefix, ds.column_names, text_field)
      row = 0
      for batch in ds.select_columns(cols).iter(batch_size=_BATCH):
        for values in zip(*(batch[c] for c in cols)):
          out.append(_row(f"{prefix}:{row}", dict(zip(cols, values)), text_field))
          row += 1
    del loaded  # its memory-mapped files live in `tmp`
  return digest, out
