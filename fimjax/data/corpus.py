"""Corpus reader: files and folders of workflows -> documents, every unusable file skipped by reason.

A file is kept when it is UTF-8, loads as YAML (or JSON for `.json`), is a mapping with a `jobs`
key, serialises to JSON, and (with `schema_check`) passes the workflow JSON schema. Exact
duplicates (same bytes) are kept once. Input files are only ever read.
"""

import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import pathlib
from typing import Iterable, Sequence

import yaml

EXTENSIONS = (".yml", ".yaml", ".json")
DEFAULT = "default"  # the input that means the embedded corpus of real workflows
SYNTHETIC = "synthetic:"  # "synthetic:N": the hand-written workflows plus N generated ones
CACHE_MARKER = ".fimjax-cache"  # folders holding this file (token caches) are never read as input
# SchemaStore's github-workflow.json (Apache-2.0; source and license beside it).
BUNDLED_SCHEMA = pathlib.Path(__file__).resolve().parent / "schemas" / "github-workflow.json"
PARALLEL_MIN = 4000  # auto num_proc: fewer files (without schema checks) are faster in one process

# Every reason a file can be skipped for, in pipeline order.
REASONS = ("too_large", "unreadable", "not_utf8", "empty", "duplicate", "yaml_error", "json_error",
           "not_mapping", "not_workflow", "not_json", "schema_invalid", "tokenizer_rejected")


class CorpusError(ValueError):
  """Bad corpus input (missing path, nothing usable); the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Source:
  """One input: a file on disk (`path`) or an embedded document (`data`, with its own split)."""
  name: str
  path: str | None = None
  data: bytes | None = None
  split: int | None = None  # 0 train / 1 validation; None = by content hash


@dataclasses.dataclass(frozen=True)
class Document:
  name: str
  text: str  # the file's text, exactly as read
  json_text: str  # the loaded workflow as JSON (with the `on:` fix)
  sha256: str  # of the file's bytes
  split: int | None = None  # the source's own split, if it has one


@dataclasses.dataclass
class Corpus:
  documents: list[Document]
  skipped: list[dict]  # {"file", "reason"} in input order
  num_inputs: int
  fingerprint: str  # of the inputs' contents, as `fingerprint()`


class _Loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):
  """Safe YAML loader that keeps timestamps as strings (as GitHub does), so JSON can hold them."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def fix_on(obj):
  """Maps the top-level key `True` (YAML 1.1 reads `on:` as a boolean) back to `"on"`."""
  if isinstance(obj, dict) and True in obj and "on" not in obj:
    return {("on" if k is True else k): v for k, v in obj.items()}
  return obj


class TooLarge(Exception):
  """A document that grows past the node limit once its YAML aliases are expanded."""


def expanded_size(root: yaml.Node, limit: int) -> int:
  """Nodes of a composed YAML document once its aliases are expanded, capped at `limit + 1`.

  Cheap: an alias is the anchored node itself, so each node is sized once (an alias back to an
  enclosing node, a cycle, counts one).
  """
  size, opened, todo = {}, set(), [root]
  while todo:
    node = todo[-1]
    if id(node) in size:
      todo.pop()
      continue
    kids = (node.value if isinstance(node, yaml.SequenceNode) else
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
    if id(node) not in opened:
      opened.add(id(node))
      todo += [k for k in kids if id(k) not in size and id(k) not in opened]
      continue
    todo.pop()
    size[id(node)] = min(limit + 1, 1 + sum(size.get(id(k), 1) for k in kids))
  return size[id(root)]


def load_workflow(text: str, json_file: bool = False, max_nodes: int | None = None):
  """Loads a document (YAML, or JSON when `json_file`) with the `on:` fix; raises on bad syntax,
  and TooLarge when the YAML has more than `max_nodes` nodes with its aliases expanded (a
  "billion laughs" file), checked before anything is built."""
  if json_file:
    return fix_on(json.loads(text))
  loader = _Loader(text)
  try:
    node = loader.get_single_node()
    if node is None:
      return None
    if max_nodes is not None and expanded_size(node, max_nodes) > max_nodes:
      raise TooLarge(f"more than {max_nodes} YAML nodes with aliases expanded")
    return fix_on(loader.construct_document(node))
  finally:
    loader.dispose()


def to_json(obj) -> str:
  """The JSON text tokenizers such as TCT take (raises ValueError/TypeError when impossible)."""
  return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


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


def is_embedded(inp: str) -> bool:
  """The input names an embedded corpus ("default" or "synthetic:N"), not a path."""
  return inp == DEFAULT or inp.startswith(SYNTHETIC)


def list_sources(inputs: Sequence[str]) -> list[Source]:
  """Expands files, folders (recursive, `.yml`/`.yaml`/`.json`), "default" and "synthetic:N"."""
  if isinstance(inputs, str):
    inputs = [inputs]
  sources = []
  for inp in inputs:
    if is_embedded(inp):
      sources.extend(_embedded_sources(inp))
      continue
    p = pathlib.Path(inp)
    if p.is_file():
      sources.append(Source(str(p), path=str(p)))  # named explicitly: taken whatever its suffix
    elif p.is_dir():
      found = []
      for root, dirs, files in os.walk(p):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        if CACHE_MARKER in files:
          dirs[:] = []
          continue
        found.extend(os.path.join(root, f) for f in files if f.lower().endswith(EXTENSIONS))
      sources.extend(Source(f, path=f) for f in sorted(found))
    else:
      raise CorpusError(f"input not found: {inp} (give existing workflow files/folders, "
                        "'default' or 'synthetic:N')")
  return sources


def _embedded_sources(inp: str) -> list[Source]:
  try:
    from fimjax.data import default_corpus
  except ImportError as e:
    raise CorpusError(f"the embedded corpus (input {inp!r}) cannot be loaded: {e}") from e
  if inp == DEFAULT:
    return [Source(f"default:{name}", data=data, split=split)
            for name, data, split in default_corpus.embedded()]
  try:
    size = int(inp[len(SYNTHETIC):])
  except ValueError:
    size = -1
  if size < 0:
    raise CorpusError(f"bad input {inp!r}: write synthetic:N with N >= 0 generated workflows")
  return [Source(f"synthetic:{name}", data=text.encode("utf-8"))
          for name, text in default_corpus.synthetic(size)]


def _read_bytes(src: Source, max_file_bytes: int) -> tuple[bytes | None, str | None]:
  if src.data is not None:
    return (None, "too_large") if len(src.data) > max_file_bytes else (src.data, None)
  try:
    if os.path.getsize(src.path) > max_file_bytes:
      return None, "too_large"
    with open(src.path, "rb") as f:
      return f.read(), None
  except OSError:
    return None, "unreadable"


def read_source(src: Source, max_file_bytes: int = 1_000_000, schema_path: str = ""):
  """-> (sha256 or None, Document or None, reason or None). `schema_path` "" = no schema check."""
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
  json_file = src.name.lower().endswith(".json")
  try:  # a file without aliases has fewer nodes than bytes, so that bounds the expanded one
    obj = load_workflow(text, json_file, max_nodes=max_file_bytes)
  except TooLarge:
    return digest, None, "too_large"
  except (yaml.YAMLError, ValueError, RecursionError):
    return digest, None, "json_error" if json_file else "yaml_error"
  if obj is None:  # only comments
    return digest, None, "empty"
  if not isinstance(obj, dict):
    return digest, None, "not_mapping"
  if "jobs" not in obj:
    return digest, None, "not_workflow"
  try:
    json_text = to_json(obj)
  except (ValueError, TypeError, RecursionError):  # circular aliases, non-string keys
    return digest, None, "not_json"
  if schema_path and not _validator(schema_path).is_valid(json.loads(json_text)):
    return digest, None, "schema_invalid"
  return digest, Document(src.name, text, json_text, digest, src.split), None


def _read_chunk(chunk, max_file_bytes, schema_path):
  return [read_source(s, max_file_bytes, schema_path) for s in chunk]


def map_chunks(fn, items: list, num_proc: int, progress: bool, desc: str, **kwargs) -> list:
  """fn(chunk, **kwargs) over chunks of `items`, in spawned processes when num_proc > 1."""
  from tqdm import tqdm
  size = max(1, min(256, len(items) // (4 * max(num_proc, 1)) or 1))
  chunks = [items[i:i + size] for i in range(0, len(items), size)]
  bar = tqdm(total=len(items), desc=desc, unit="file", disable=not progress, leave=False)
  out = []
  with bar:
    if num_proc <= 1 or len(chunks) == 1:
      for c in chunks:
        out.extend(fn(c, **kwargs))
        bar.update(len(c))
      return out
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe once JAX has started threads
    with concurrent.futures.ProcessPoolExecutor(num_proc, mp_context=ctx) as pool:
      for c, res in zip(chunks, pool.map(functools.partial(fn, **kwargs), chunks)):
        out.extend(res)
        bar.update(len(c))
  return out


def default_num_proc() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def read_corpus(inputs: Sequence[str], *, max_file_bytes: int = 1_000_000, schema_check: bool = False,
                schema_path: str = "", num_proc: int | None = None,
                progress: bool = False) -> Corpus:
  """Reads, parses and de-duplicates every input; raises CorpusError when nothing is usable.

  `num_proc`: worker processes (None = auto, 1 = in this process).
  """
  sources = list_sources(inputs)
  schema = str(find_schema(schema_path)) if schema_check else ""
  if num_proc is None:  # auto: processes only where they pay for their start-up
    num_proc = default_num_proc() if schema_check or len(sources) >= PARALLEL_MIN else 1
  results = map_chunks(_read_chunk, sources, num_proc, progress, "reading",
                        max_file_bytes=max_file_bytes, schema_path=schema)
  documents, skipped, seen = [], [], set()
  h = hashlib.sha256()
  for src, (digest, doc, reason) in zip(sources, results):
    h.update(_fingerprint_line(src, digest, reason))
    if digest is not None:
      if digest in seen:
        reason, doc = "duplicate", None
      seen.add(digest)
    if doc is None:
      skipped.append({"file": src.name, "reason": reason})
    else:
      documents.append(doc)
  if not documents:
    raise CorpusError(f"no usable workflow in {list(inputs)}: {summary(len(sources), 0, skipped)}")
  return Corpus(documents, skipped, len(sources), h.hexdigest())


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


def fingerprint(inputs: Sequence[str], max_file_bytes: int = 1_000_000) -> str:
  """Hash of the inputs' contents in order (not their location), to tell whether a cache is stale."""
  h = hashlib.sha256()
  for src in list_sources(inputs):
    data, reason = _read_bytes(src, max_file_bytes)
    h.update(_fingerprint_line(src, sha256(data) if data is not None else None, reason))
  return h.hexdigest()
