"""Corpus reader: inputs -> documents, every unusable file or row skipped by reason.

Inputs (sources.py): files and folders of `.yml`/`.yaml`/`.json` workflows, tables of rows (JSONL,
Parquet, Hugging Face datasets saved to disk), on local disk or gs://, and the embedded corpora.
A document is kept when it is UTF-8, loads as YAML (as JSON when its name ends with `.json`; with
`jsonc`, comments and trailing commas allowed), is a mapping, with `documents="workflow"` has a
`jobs` key, serialises to JSON, and (with `schema_check`) passes the JSON schema. Exact
duplicates (same bytes) are kept once. Input files are only ever read.
"""

import collections
import dataclasses
import functools
import hashlib
import json
import pathlib
from typing import Iterable, Sequence

import numpy as np
import yaml

from fimjax.data import sources as sources_lib
from fimjax.data import structure as structure_lib
from fimjax.data.parse import (  # noqa: F401  (re-exported: callers use corpus.X)
  TooLarge,
  expanded_size,
  fix_on,
  load_workflow,
  may_alias,
  strip_jsonc,
  to_json,
)
from fimjax.data import workers
from fimjax.data.sources import (  # noqa: F401  (re-exported: callers use corpus.X)
  CACHE_MARKER,
  DEFAULT,
  EXTENSIONS,
  SYNTHETIC,
  CorpusError,
  Source,
  Table,
  is_embedded,
  is_url,
  list_sources,
)

# SchemaStore's github-workflow.json (Apache-2.0; source and license beside it).
BUNDLED_SCHEMA = pathlib.Path(__file__).resolve().parent / "schemas" / "github-workflow.json"
READ_CHUNK = 256  # documents per worker task
PARALLEL_MIN = 4000  # auto num_proc: fewer files (without schema checks) are faster in one process
DOCUMENTS = ("workflow", "any")  # what a document must be: a workflow, or any mapping
WORKFLOW_TCT = "tct_github_workflow"  # the TCT build of the workflow schema

# Every reason a file or row can be skipped for, in pipeline order.
REASONS = (
  "too_large",
  "unreadable",
  "bad_row",
  "not_utf8",
  "empty",
  "duplicate",
  "yaml_error",
  "json_error",
  "not_mapping",
  "not_workflow",
  "not_json",
  "schema_invalid",
  "tokenizer_rejected",
)


@dataclasses.dataclass(frozen=True)
class Document:
  name: str
  text: str  # the file's text, exactly as read
  json_text: str  # the loaded document as JSON (with the `on:` fix)
  sha256: str  # of the file's bytes
  split: int | None = None  # the source's own split, if it has one
  # structure.node_marks of the text, when the reader was asked for them (from its own parse)
  nodes: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass
class Corpus:
  documents: list[Document]
  skipped: list[dict]  # {"file", "reason"[, "message"]} in input order
  num_inputs: int  # files and rows
  fingerprint: str  # of the inputs' contents, as `fingerprint()`


def sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def find_schema(schema_path: str = "") -> pathlib.Path:
  """`schema_path`, or the workflow JSON schema shipped with the package (SchemaStore's)."""
  if schema_path:
    p = pathlib.Path(schema_path)
    if not p.is_file():
      raise CorpusError(f"JSON schema not found: {schema_path} (fix --schema / data.schema_path)")
    return p
  return BUNDLED_SCHEMA


def schema_validator(schema_path: str = ""):
  """A jsonschema validator of `schema_path` (default: the bundled workflow schema), cached."""
  return _validator(str(find_schema(schema_path)))


@functools.lru_cache(maxsize=4)
def _validator(schema_path: str):
  import jsonschema  # only when schema checks are on

  with open(schema_path, encoding="utf-8") as f:
    schema = json.load(f)
  return jsonschema.validators.validator_for(schema)(schema)


def document_kind(documents: str, tokenizer: str, tct_module: str = WORKFLOW_TCT) -> str:
  """data.documents resolved: "auto" is "workflow", unless `tokenizer` (resolved: "tct" or
  "bpe") is the TCT build of another schema, whose documents have no `jobs`."""
  if documents == "auto":
    return "any" if tokenizer == "tct" and tct_module != WORKFLOW_TCT else "workflow"
  if documents not in DOCUMENTS:
    raise CorpusError(f"documents={documents!r}: use auto, workflow or any (data.documents)")
  return documents


def _read_bytes(src: Source, max_file_bytes: int) -> tuple[bytes | None, str | None]:
  if src.data is not None:
    return (None, "too_large") if len(src.data) > max_file_bytes else (src.data, None)
  try:
    if sources_lib.size(src.path) > max_file_bytes:
      return None, "too_large"
    return sources_lib.read_bytes(src.path), None
  except OSError:
    return None, "unreadable"


def _load(text: str, json_file: bool, max_nodes: int, jsonc: bool, on_node=None):
  """load_workflow; with `jsonc`, a text that YAML refuses and looks like JSON (a row without a
  `.json` path) is tried as JSON with comments too."""
  try:
    return load_workflow(text, json_file, max_nodes, jsonc, on_node)
  except (yaml.YAMLError, ValueError):
    if json_file or not jsonc or text.lstrip()[:1] not in ("{", "["):
      raise
    return load_workflow(text, True, max_nodes, jsonc)


def read_source(
  src: Source,
  max_file_bytes: int = 1_000_000,
  schema_path: str = "",
  documents: str = "workflow",
  jsonc: bool = False,
  nodes: bool = False,
):
  """-> (sha256 or None, Document or None, reason or None). `schema_path` "" = no schema check;
  `documents`: "workflow" (a mapping with `jobs`) or "any" (any mapping); `nodes`: keep the
  text's structure.node_marks in the Document, from the YAML parse the checks make anyway."""
  if src.reason:
    return None, None, src.reason
  data, reason = _read_bytes(src, max_file_bytes)
  if reason:
    return None, None, reason
  digest = sha256(data)
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError:
    return digest, None, "not_utf8"
  if not text.strip():
    return digest, None, "empty"
  json_file = src.name.lower().endswith(".json") if src.json_file is None else src.json_file
  marks = []
  on_node = (lambda root: marks.append(structure_lib.node_marks(text, root))) if nodes else None
  try:  # a file without aliases has fewer nodes than bytes, so that bounds the expanded one
    obj = _load(text, json_file, max_file_bytes, jsonc, on_node)
  except TooLarge:
    return digest, None, "too_large"
  except (yaml.YAMLError, ValueError, RecursionError):
    return digest, None, "json_error" if json_file else "yaml_error"
  if obj is None:  # only comments
    return digest, None, "empty"
  if not isinstance(obj, dict):
    return digest, None, "not_mapping"
  if documents == "workflow" and "jobs" not in obj:
    return digest, None, "not_workflow"
  try:
    json_text = to_json(obj)
  except (ValueError, TypeError, RecursionError):  # circular aliases, non-string keys
    return digest, None, "not_json"
  if schema_path and not _validator(schema_path).is_valid(json.loads(json_text)):
    return digest, None, "schema_invalid"
  if nodes and not marks:  # JSON, read without YAML: its YAML parse (if any) gives the nodes
    marks.append(structure_lib.node_marks(text, structure_lib.compose(text)))
  doc = Document(src.name, text, json_text, digest, src.split, marks[0] if nodes else None)
  return digest, doc, None


def _read_chunk(chunk, **read):
  return [read_source(s, **read) for _, s in chunk]


class Reader:
  """Reads, parses and de-duplicates every input once, in input order, in bounded memory.

  Iterating yields (Source, Document or None, skip record or None) per document; afterwards
  `num_inputs` and `fingerprint` describe what was read. Files are parsed in `num_proc` worker
  processes (None = auto: every core for large corpora or schema checks); a table (JSONL,
  Parquet, dataset) is held in memory one file at a time. With `nodes`, each Document carries
  its structure.node_marks (what the cache build needs to mark holes without parsing again).
  """

  def __init__(
    self,
    inputs: Sequence[str],
    *,
    max_file_bytes: int = 1_000_000,
    schema_check: bool = False,
    schema_path: str = "",
    documents: str = "workflow",
    jsonc: bool = False,
    text_field: str = "content",
    nodes: bool = False,
    num_proc: int | None = None,
    progress: bool = False,
  ):
    if documents not in DOCUMENTS:
      raise CorpusError(
        f"documents={documents!r}: use one of {', '.join(DOCUMENTS)} (data.documents)"
      )
    self.inputs, self.documents, self.text_field = list(inputs), documents, text_field
    self.nodes = nodes
    self.units = list_sources(inputs)
    self._read = dict(
      max_file_bytes=max_file_bytes,
      documents=documents,
      jsonc=jsonc,
      nodes=nodes,
      schema_path=str(find_schema(schema_path)) if schema_check else "",
    )
    if num_proc is None:  # auto: processes only where they pay for their start-up
      num_proc = workers.default_num_proc() if schema_check or self._size() >= PARALLEL_MIN else 1
    self.num_proc, self.progress = num_proc, progress
    self.num_inputs, self.fingerprint, self._lines = 0, None, []

  def _size(self) -> int:
    """About how many documents: files, plus a table's bytes / 1 kB."""
    try:
      return sum(
        1
        if isinstance(u, Source)
        else (PARALLEL_MIN if u.kind == "hf" else sources_lib.size(u.path) // 1024)
        for u in self.units
      )
    except OSError:
      return 0

  def _sources(self):
    """(index of its fingerprint line or None, Source) per document, tables read one at a time."""
    for u in self.units:
      if isinstance(u, Table):
        digest, rows = sources_lib.read_table(u, self.text_field)
        self._lines.append(_table_line(u, digest))
        yield from ((None, r) for r in rows)
      else:
        self._lines.append(b"")
        yield len(self._lines) - 1, u

  def __iter__(self):
    from tqdm import tqdm

    seen = set()
    chunks = workers.batched(self._sources(), READ_CHUNK)
    with tqdm(
      desc="reading", unit="file", disable=None if self.progress else True, leave=False
    ) as bar:
      for chunk, results in workers.ordered_map(_read_chunk, chunks, self.num_proc, **self._read):
        for (line, src), (digest, doc, reason) in zip(chunk, results):
          self.num_inputs += 1
          if line is not None:
            self._lines[line] = _fingerprint_line(src, digest, reason)
          if digest is not None:
            if digest in seen:
              reason, doc = "duplicate", None
            seen.add(digest)
          skip = (
            None
            if doc is not None
            else {
              "file": src.name,
              "reason": reason,
              **({"message": src.note} if src.note and reason == src.reason else {}),
            }
          )
          yield src, doc, skip
        bar.update(len(chunk))
    self.fingerprint = hashlib.sha256(b"".join(self._lines)).hexdigest()

  def nothing_usable(self, skipped: list[dict]) -> CorpusError:
    """The error for a corpus with no usable document, with the skip counts and a hint."""
    hint = (
      f" (rows need their text in a string field {self.text_field!r}: set data.text_field)"
      if any(s["reason"] == "bad_row" for s in skipped)
      else ""
    )
    what = "workflow" if self.documents == "workflow" else "document"
    return CorpusError(
      f"no usable {what} in {self.inputs}: {summary(self.num_inputs, 0, skipped)}{hint}"
    )


def read_corpus(inputs: Sequence[str], **options) -> Corpus:
  """Every usable document in memory (Reader's options); raises CorpusError when there is none."""
  reader = Reader(inputs, **options)
  docs, skipped = [], []
  for _, doc, skip in reader:
    if doc is None:
      skipped.append(skip)
    else:
      docs.append(doc)
  if not docs:
    raise reader.nothing_usable(skipped)
  return Corpus(docs, skipped, reader.num_inputs, reader.fingerprint)


def skip_counts(skipped: Iterable[dict]) -> dict[str, int]:
  """Reason -> count, in the order of REASONS."""
  c = collections.Counter(s["reason"] for s in skipped)
  return {r: c[r] for r in sorted(c, key=lambda r: (REASONS.index(r) if r in REASONS else 99, r))}


def summary(num_inputs: int, num_kept: int, skipped: Iterable[dict]) -> str:
  """One line: `kept 1180 of 1269; skipped: yaml_error 11, not_workflow 52`."""
  counts = skip_counts(skipped)
  rest = ", ".join(f"{r} {n}" for r, n in counts.items()) or "none"
  return f"kept {num_kept} of {num_inputs}; skipped: {rest}"


def _fingerprint_line(src: Source, digest: str | None, reason: str | None) -> bytes:
  return (digest or f"{reason}:{src.name}").encode() + b"\n"


def _table_line(table: Table, digest: str | None) -> bytes:
  return (f"{table.kind}:{digest}" if digest else f"unreadable:{table.path}").encode() + b"\n"


def fingerprint(inputs: Sequence[str], max_file_bytes: int = 1_000_000) -> str:
  """Hash of the inputs' contents in order (not their location), to tell whether a cache is stale;
  a table counts as its file's bytes, whatever its rows."""
  h = hashlib.sha256()
  for u in list_sources(inputs):
    if isinstance(u, Table):
      try:
        h.update(_table_line(u, sources_lib.table_digest(u)))
      except OSError:
        h.update(_table_line(u, None))
      continue
    data, reason = _read_bytes(u, max_file_bytes)
    h.update(_fingerprint_line(u, sha256(data) if data is not None else None, reason))
  return h.hexdigest()
