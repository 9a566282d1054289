"""The token cache on disk: its layout, Documents/TokenCache, and loading with verification.

Layout (docs/interfaces.md): tokens.npy, offsets.npy, split.npy, struct_flags.npy and
struct_span.npy (per-token hole boundaries, `fimjax.data.structure`; zeros for a tokenizer
without byte offsets such as TCT), meta.json, tokenizer.json (bpe), documents.tsv (index, split,
tokens, sha256, source) and a `.fimjax-cache` marker. meta.json's `files` holds the size and
sha256 of every other file (caches built before it have none: they load unchecksummed).
"""

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Sequence

import numpy as np

from fimjax.data import corpus as corpus_lib
from fimjax.data import tokenizers as tok_lib

FORMAT = "fimjax-token-cache"
FORMAT_VERSION = 2  # 2: struct_flags.npy / struct_span.npy (meta `files` is optional: no bump)
META, TOKENIZER_FILE, DOCS_TSV = "meta.json", "tokenizer.json", "documents.tsv"
STRUCT_FLAGS, STRUCT_SPAN = "struct_flags.npy", "struct_span.npy"
ARRAYS = ("tokens.npy", "offsets.npy", "split.npy", STRUCT_FLAGS, STRUCT_SPAN)
SPLITS = {"train": 0, "validation": 1}
# sha256 runs at ~0.5 GB/s on a busy CPU: a plain load hashes the smallest files up to this many
# bytes (all of the default corpus's 3 MB cache, ~7 ms), so a huge cache still opens in ~0.1 s;
# training start (`ensure_cache`) and `cache info` hash everything.
CHECKSUM_ON_LOAD_BYTES = 64 << 20


class CacheError(ValueError):
  """A cache cannot be built, loaded or used; the message says what to do."""


class CacheDamaged(CacheError):
  """A file of a cache is missing or does not match meta.json: `file` names it, `why` says how."""

  def __init__(self, message: str, file: pathlib.Path, why: str):
    super().__init__(message)
    self.file, self.why = file, why


@dataclasses.dataclass
class Documents:
  """Documents as spans of one flat token array (a memmap for a loaded cache)."""

  tokens: np.ndarray  # 1-D
  starts: np.ndarray  # int64 [n]
  lengths: np.ndarray  # int64 [n]
  path: str | None = dataclasses.field(default=None, repr=False, compare=False)  # tokens.npy
  flags: np.ndarray | None = None  # uint8, like tokens: structure marks (None = none known)
  span: np.ndarray | None = None  # uint16, like tokens: node lengths of VALUE/STEP/BLOCK marks

  @classmethod
  def from_lists(cls, docs: Sequence[Sequence[int]], flags=None, span=None) -> "Documents":
    """Documents from token lists, with optional per-document structure arrays alike."""
    lengths = np.array([len(d) for d in docs], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    cat = lambda xs, dt: (
      np.concatenate([np.asarray(x, dt) for x in xs]) if len(xs) else np.zeros(0, dt)
    )
    return cls(
      cat(docs, np.int32),
      starts,
      lengths,
      flags=None if flags is None else cat(flags, np.uint8),
      span=None if span is None else cat(span, np.uint16),
    )

  def __len__(self) -> int:
    return len(self.starts)

  def __getitem__(self, i: int) -> np.ndarray:
    return self.tokens[self.starts[i] : self.starts[i] + self.lengths[i]]

  @property
  def num_tokens(self) -> int:
    return int(self.lengths.sum())

  def __reduce__(self):
    # A memmap would pickle its whole content: it travels as its file and place instead.
    return (
      _unpickle,
      (
        _by_file(self.tokens),
        self.starts,
        self.lengths,
        self.path,
        _by_file(self.flags),
        _by_file(self.span),
      ),
    )


@dataclasses.dataclass(frozen=True)
class FileArray:
  """What a memmap pickles as: its file, dtype, byte offset and shape; `open()` maps it again."""

  file: str
  dtype: str
  offset: int
  shape: tuple

  def open(self) -> np.memmap:
    return np.memmap(
      self.file, dtype=np.dtype(self.dtype), mode="r", offset=self.offset, shape=self.shape
    )


def _by_file(a):
  """A C-contiguous view of a memmap as a `FileArray`; anything else as it is. The memmap that
  `np.memmap` / `np.load` opened (the root of `.base`) starts at its `offset` in the file."""
  if not (isinstance(a, np.memmap) and a.filename and a.flags.c_contiguous):
    return a
  root = a
  while isinstance(root.base, np.memmap):
    root = root.base
  address = lambda x: x.__array_interface__["data"][0]  # noqa: E731
  return FileArray(a.filename, a.dtype.str, root.offset + address(a) - address(root), a.shape)


def _unpickle(tokens, starts, lengths, path, flags, span) -> Documents:
  opened = lambda a: a.open() if isinstance(a, FileArray) else a  # noqa: E731
  return Documents(opened(tokens), starts, lengths, path, opened(flags), opened(span))


class TokenCache:
  """A loaded cache: `documents(split)` are memory-mapped, nothing is read up front."""

  def __init__(
    self,
    path: pathlib.Path,
    meta: dict,
    tokens,
    offsets,
    split,
    flags,
    span,
    checksummed: Sequence[str] = (),
  ):
    self.path, self.meta = path, meta
    self.special_ids: dict[str, int] = dict(meta["special_ids"])
    self.model_vocab_size: int = int(meta["model_vocab_size"])
    self.tokens, self.offsets, self.split = tokens, offsets, split
    self.flags, self.span = flags, span
    self.checksummed = tuple(checksummed)  # files whose sha256 was checked on load

  def documents(self, split: str) -> Documents:
    if split not in SPLITS:
      raise ValueError(f"split must be one of {list(SPLITS)}, not {split!r}")
    keep = self.split == SPLITS[split]
    starts = np.asarray(self.offsets[:-1][keep], np.int64)
    lengths = np.asarray(np.diff(self.offsets)[keep], np.int64)
    return Documents(
      self.tokens, starts, lengths, str(self.path / "tokens.npy"), self.flags, self.span
    )

  def tokenizer(self) -> tok_lib.Tokenizer:
    m = self.meta
    if m["tokenizer"] == "bpe":
      try:
        tok = tok_lib.BpeTokenizer.load(self.path / TOKENIZER_FILE, m["vocab_size"])
      except tok_lib.TokenizerError:
        raise
      except Exception as e:  # the library's parse error: name the file, not the JSON position
        raise _damaged(self.path, m, TOKENIZER_FILE, f"unreadable: {e}") from None
      if corpus_lib.sha256(tok.to_json().encode()) != m["tokenizer_sha256"]:
        raise CacheError(
          f"{self.path / TOKENIZER_FILE} is not the tokenizer this cache was built "
          "with; rebuild the cache"
        )
      return tok
    tok = tok_lib.TctTokenizer(m["tct_module"])
    if tok.vocab_size != m["vocab_size"] or tok.version != m["tokenizer_version"]:
      raise CacheError(
        f"{self.path}: built with {m['tokenizer_version']} (vocab {m['vocab_size']}),"
        f" installed is {tok.version} (vocab {tok.vocab_size}); rebuild the cache"
      )
    return tok


def read_meta(path: pathlib.Path) -> dict | None:
  """The cache's meta.json, or None when there is none (or it is not a fimjax cache's)."""
  try:
    meta = json.loads((path / META).read_text(encoding="utf-8"))
  except (OSError, ValueError):
    return None
  return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def tokenizer_id(meta: dict) -> str:
  """What fixes a cache's token ids: `bpe:<sha256 of its BPE file>` or `tct:<module-version>`."""
  if meta.get("tokenizer") == "bpe":
    return f"bpe:{meta.get('tokenizer_sha256')}"
  return f"tct:{meta.get('tokenizer_version')}"


def _doc_hashes(path: pathlib.Path) -> set[str] | None:
  try:
    lines = (path / DOCS_TSV).read_text(encoding="utf-8").splitlines()[1:]
  except OSError:
    return None
  return {ln.split("\t")[3] for ln in lines if ln.count("\t") >= 4}


def corpus_change(old_meta: dict, old_path, new_meta: dict, new_path) -> str:
  """What differs between the corpus of `old_meta` and that of the cache at `new_path`: files
  added/removed by content when `old_path` still holds the old cache, else the input counts."""
  old_path, new_path = pathlib.Path(old_path), pathlib.Path(new_path)
  same = tokenizer_id(read_meta(old_path) or {}) == tokenizer_id(old_meta)
  old, new = _doc_hashes(old_path) if same else None, _doc_hashes(new_path)
  have, want = old_meta.get("settings", {}), new_meta.get("settings", {})
  keys = [
    k for k in sorted(set(have) | set(want)) if k != "inputs_sha256" and have.get(k) != want.get(k)
  ]
  text = (
    f"corpus files (by content): {len(new - old)} added, {len(old - new)} removed"
    if old is not None and new is not None
    else f"corpus: {old_meta.get('num_inputs')} input files, now {new_meta.get('num_inputs')}"
  )
  return text + "".join(f", {k}: {have.get(k)!r} -> {want.get(k)!r}" for k in keys)


def file_sha256(path: pathlib.Path) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def file_records(folder: pathlib.Path, names: Sequence[str]) -> dict:
  """meta.json's `files`: {name: {"bytes": size, "sha256": hex}} of `names` in `folder`."""
  return {
    n: {"bytes": (folder / n).stat().st_size, "sha256": file_sha256(folder / n)} for n in names
  }


def _damaged(path: pathlib.Path, meta: dict, name: str, why: str) -> CacheDamaged:
  """One line naming the file and the fix; a run's cache must come back with the run's tokenizer
  (training refuses a rebuild that gives another), so a copy is the other way back."""
  tid = tokenizer_id(meta)
  tid = tid[:16] if tid.startswith("bpe:") else tid
  return CacheDamaged(
    f"cache file {path / name} is damaged ({why}); rebuild {path} from the same corpus (rerun "
    f"the training command, or python -m fimjax.data.cache build --input ... --out {path}) or "
    f"restore it from a copy: a run resumes only with its own tokenizer ({tid})",
    path / name,
    why,
  )


def _open_arrays(path: pathlib.Path, meta: dict, records: dict) -> dict[str, np.ndarray]:
  """The five arrays, each checked against meta.json: size, dtype, shape, offsets, token ids."""
  names = list(dict.fromkeys([*ARRAYS, *filter(None, [meta.get("tokenizer_file")]), *records]))
  for name in names:
    f = path / name
    if not f.is_file():
      raise _damaged(path, meta, name, "missing")
    want = records.get(name, {}).get("bytes")
    if want is not None and f.stat().st_size != want:
      raise _damaged(
        path, meta, name, f"{f.stat().st_size} bytes, {META} says {want}: truncated or replaced"
      )
  want = {
    "tokens.npy": meta["dtype"],
    "offsets.npy": "int64",
    "split.npy": "uint8",
    STRUCT_FLAGS: "uint8",
    STRUCT_SPAN: "uint16",
  }
  a = {}
  for name in ARRAYS:
    small = name in ("offsets.npy", "split.npy")  # in memory; the token-length ones memory-mapped
    try:
      a[name] = np.load(path / name, mmap_mode=None if small else "r")
    except (OSError, ValueError) as e:
      raise _damaged(path, meta, name, f"unreadable: {e}") from None
    if a[name].dtype != np.dtype(want[name]) or a[name].ndim != 1:
      raise _damaged(
        path, meta, name, f"{a[name].dtype} of shape {a[name].shape}, want 1-D {want[name]}"
      )
  tokens, offsets, split = a["tokens.npy"], a["offsets.npy"], a["split.npy"]
  n, num_tokens = sum(meta["num_documents"].values()), sum(meta["num_tokens"].values())
  if len(tokens) != num_tokens:
    raise _damaged(path, meta, "tokens.npy", f"{len(tokens)} tokens, {META} says {num_tokens}")
  for name, length in (
    ("offsets.npy", n + 1),
    ("split.npy", n),
    (STRUCT_FLAGS, len(tokens)),
    (STRUCT_SPAN, len(tokens)),
  ):
    if len(a[name]) != length:
      raise _damaged(path, meta, name, f"{len(a[name])} entries, want {length} for {META}")
  if offsets[0] != 0 or offsets[-1] != len(tokens) or not bool(np.all(np.diff(offsets) >= 0)):
    raise _damaged(path, meta, "offsets.npy", f"not rising from 0 to the {len(tokens)} tokens")
  if n and int(split.max()) >= len(SPLITS):
    raise _damaged(path, meta, "split.npy", f"split {int(split.max())} is not 0 or 1")
  # O(tokens) but one vectorised pass (~1 ms for the default corpus): an id past the vocab would
  # read outside the embedding, whose NaNs look like a learning-rate problem.
  vocab = int(meta["vocab_size"])
  if len(tokens) and int(tokens.max()) >= vocab:
    at = int(np.argmax(np.asarray(tokens) >= vocab))
    raise _damaged(
      path,
      meta,
      "tokens.npy",
      f"token id {int(tokens[at])} at index {at} is not below the vocab size {vocab}",
    )
  return a


def load_cache(path: str | os.PathLike, *, checksums: bool | None = None) -> TokenCache:
  """Opens a cache by memory map after checking it against meta.json; raises CacheError when it
  is missing, foreign or damaged (CacheDamaged names the file).

  Sizes, dtypes, shapes, offsets and token ids are checked on every load. `checksums`: True
  hashes every file against meta.json, False none, None the smallest files up to
  CHECKSUM_ON_LOAD_BYTES in all (every file of a small cache). A cache built before checksums
  were recorded loads without them.
  """
  path = pathlib.Path(path)
  meta = read_meta(path)
  hint = f"rebuild it: python -m fimjax.data.cache build --input ... --out {path}"
  if meta is None:
    raise CacheError(f"no fimjax token cache at {path} (no valid {META}); {hint}")
  if meta.get("format_version") != FORMAT_VERSION:
    raise CacheError(
      f"{path}: cache format {meta.get('format_version')}, need {FORMAT_VERSION}; {hint}"
    )
  records = meta.get("files") or {}
  a = _open_arrays(path, meta, records)
  budget = float("inf") if checksums else CHECKSUM_ON_LOAD_BYTES if checksums is None else -1
  checked = []
  for name, rec in sorted(records.items(), key=lambda kv: kv[1]["bytes"]):
    budget -= rec["bytes"]
    if budget < 0:
      break
    if file_sha256(path / name) != rec["sha256"]:
      raise _damaged(path, meta, name, f"sha256 differs from {META}'s")
    checked.append(name)
  return TokenCache(path, meta, *(a[n] for n in ARRAYS), checksummed=checked)
