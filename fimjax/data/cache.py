"""Token cache: build once (atomically), load by memory map, detect staleness. CLI (cache_cli.py):

    python -m fimjax.data.cache build --input PATH [PATH...] --out DIR [--tokenizer auto|tct|bpe]
                                      [--val-fraction F]
    python -m fimjax.data.cache info DIR [--json]

Layout (docs/interfaces.md): tokens.npy, offsets.npy, split.npy, struct_flags.npy and
struct_span.npy (per-token hole boundaries, `fimjax.data.structure`; zeros for a tokenizer
without byte offsets such as TCT), meta.json, tokenizer.json (bpe), documents.tsv (index, split,
tokens, sha256, source) and a `.fimjax-cache` marker.
"""

import dataclasses
import itertools
import json
import os
import pathlib
import shutil
import socket
import sys
import time
import uuid
from typing import Callable, Sequence

import numpy as np

from fimjax.data import corpus as corpus_lib
from fimjax.data import structure as structure_lib
from fimjax.data import tokenizers as tok_lib

FORMAT = "fimjax-token-cache"
FORMAT_VERSION = 2  # 2: struct_flags.npy / struct_span.npy
META, TOKENIZER_FILE, DOCS_TSV = "meta.json", "tokenizer.json", "documents.tsv"
STRUCT_FLAGS, STRUCT_SPAN = "struct_flags.npy", "struct_span.npy"
ARRAYS = ("tokens.npy", "offsets.npy", "split.npy", STRUCT_FLAGS, STRUCT_SPAN)
SPLITS = {"train": 0, "validation": 1}
SPECIALS = ("bos", "eos", "mask", "mid", "eom")  # model ids V, V+1, ... after the tokenizer's vocab
_ENCODE_CHUNK = 512


class CacheError(ValueError):
  """A cache cannot be built, loaded or used; the message says what to do."""


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
    cat = lambda xs, dt: (np.concatenate([np.asarray(x, dt) for x in xs]) if len(xs)
                          else np.zeros(0, dt))
    return cls(cat(docs, np.int32), starts, lengths,
               flags=None if flags is None else cat(flags, np.uint8),
               span=None if span is None else cat(span, np.uint16))

  def __len__(self) -> int:
    return len(self.starts)

  def __getitem__(self, i: int) -> np.ndarray:
    return self.tokens[self.starts[i]:self.starts[i] + self.lengths[i]]

  @property
  def num_tokens(self) -> int:
    return int(self.lengths.sum())

  def __reduce__(self):
    # A memmap pickles its whole content: send the file's path and reopen it in the other process.
    if (self.path is not None and isinstance(self.tokens, np.memmap)
        and os.fspath(self.tokens.filename or "") == os.path.abspath(self.path)
        and self.tokens.shape == self._shape()):
      return (_open_documents, (self.path, self.starts, self.lengths))
    return (Documents, (self.tokens, self.starts, self.lengths, None, self.flags, self.span))

  def _shape(self) -> tuple:
    return np.load(self.path, mmap_mode="r").shape  # reads the header only


def _open_documents(path, starts, lengths) -> Documents:
  folder = pathlib.Path(path).parent
  load = lambda name: np.load(folder / name, mmap_mode="r")
  return Documents(load("tokens.npy"), starts, lengths, path, load(STRUCT_FLAGS),
                   load(STRUCT_SPAN))


def special_ids(vocab_size: int, pad_id: int) -> dict[str, int]:
  return {"pad": pad_id, **{name: vocab_size + i for i, name in enumerate(SPECIALS)}}


def split_of(sha256_hex: str, val_fraction: float) -> int:
  """0 train / 1 validation from the content hash alone: adding files never moves another."""
  return int(int(sha256_hex[:8], 16) / 2**32 < val_fraction)


class TokenCache:
  """A loaded cache: `documents(split)` are memory-mapped, nothing is read up front."""

  def __init__(self, path: pathlib.Path, meta: dict, tokens, offsets, split, flags, span):
    self.path, self.meta = path, meta
    self.special_ids: dict[str, int] = dict(meta["special_ids"])
    self.model_vocab_size: int = int(meta["model_vocab_size"])
    self.tokens, self.offsets, self.split = tokens, offsets, split
    self.flags, self.span = flags, span

  def documents(self, split: str) -> Documents:
    if split not in SPLITS:
      raise ValueError(f"split must be one of {list(SPLITS)}, not {split!r}")
    keep = self.split == SPLITS[split]
    starts = np.asarray(self.offsets[:-1][keep], np.int64)
    lengths = np.asarray(np.diff(self.offsets)[keep], np.int64)
    return Documents(self.tokens, starts, lengths, str(self.path / "tokens.npy"), self.flags,
                     self.span)

  def tokenizer(self) -> tok_lib.Tokenizer:
    m = self.meta
    if m["tokenizer"] == "bpe":
      tok = tok_lib.BpeTokenizer.load(self.path / TOKENIZER_FILE, m["vocab_size"])
      if corpus_lib.sha256(tok.to_json().encode()) != m["tokenizer_sha256"]:
        raise CacheError(f"{self.path / TOKENIZER_FILE} is not the tokenizer this cache was built "
                         "with; rebuild the cache")
      return tok
    tok = tok_lib.TctTokenizer(m["tct_module"])
    if tok.vocab_size != m["vocab_size"] or tok.version != m["tokenizer_version"]:
      raise CacheError(f"{self.path}: built with {m['tokenizer_version']} (vocab {m['vocab_size']}),"
                       f" installed is {tok.version} (vocab {tok.vocab_size}); rebuild the cache")
    return tok


def _read_meta(path: pathlib.Path) -> dict | None:
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
  same = tokenizer_id(_read_meta(old_path) or {}) == tokenizer_id(old_meta)
  old, new = _doc_hashes(old_path) if same else None, _doc_hashes(new_path)
  have, want = old_meta.get("settings", {}), new_meta.get("settings", {})
  keys = [k for k in sorted(set(have) | set(want)) if k != "inputs_sha256" and have.get(k) != want.get(k)]
  text = (f"corpus files (by content): {len(new - old)} added, {len(old - new)} removed"
          if old is not None and new is not None else
          f"corpus: {old_meta.get('num_inputs')} input files, now {new_meta.get('num_inputs')}")
  return text + "".join(f", {k}: {have.get(k)!r} -> {want.get(k)!r}" for k in keys)


def _foreign(path: pathlib.Path) -> list[str]:
  """Names in the folder `path` that a cache build does not write (a rebuild would delete them)."""
  own = {*ARRAYS, META, TOKENIZER_FILE, DOCS_TSV, corpus_lib.CACHE_MARKER}
  return sorted(p.name for p in path.iterdir() if p.name not in own) if path.is_dir() else []


def _owned(path: pathlib.Path) -> bool:
  """Ours to replace: a fimjax cache (marker or meta) holding only its own files, or an empty
  folder, or nothing."""
  if not path.exists():
    return True
  if not path.is_dir() or _foreign(path):
    return False
  return (not any(path.iterdir()) or (path / corpus_lib.CACHE_MARKER).is_file()
          or _read_meta(path) is not None)


def _refuse_unowned(out: pathlib.Path) -> None:
  """A rebuild replaces the whole folder: refuse one that holds anything but a cache."""
  if _owned(out):
    return
  if not out.is_dir():
    raise CacheError(f"refusing to write the cache into {out}: it is not a folder; choose "
                     "another --out / data.cache_dir")
  names = _foreign(out) or [f"no {META}"]
  shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
  raise CacheError(f"refusing to write the cache into {out}: it holds files that are not a fimjax "
                   f"token cache's ({shown}) and a rebuild would delete them; choose another "
                   "--out / data.cache_dir (a folder of its own)")


def _check_writable(out: pathlib.Path) -> None:
  """Fails before any work where the cache cannot be written: a file on the way to `out`, or a
  read-only folder where it is to be made (the build writes next to `out`, then renames)."""
  parent = out.parent
  while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
    parent = parent.parent
  if not parent.is_dir():
    raise CacheError(f"cannot write the cache to {out}: {parent} is a file, not a folder; choose "
                     "another --out / data.cache_dir")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise CacheError(f"cannot write the cache to {out}: {parent} is not writable; choose another "
                     "--out / data.cache_dir")


def load_cache(path: str | os.PathLike) -> TokenCache:
  """Opens a cache by memory map; raises CacheError when it is missing, foreign or inconsistent."""
  path = pathlib.Path(path)
  meta = _read_meta(path)
  hint = f"rebuild it: python -m fimjax.data.cache build --input ... --out {path}"
  if meta is None:
    raise CacheError(f"no fimjax token cache at {path} (no valid {META}); {hint}")
  if meta.get("format_version") != FORMAT_VERSION:
    raise CacheError(f"{path}: cache format {meta.get('format_version')}, need {FORMAT_VERSION}; {hint}")
  try:
    tokens = np.load(path / "tokens.npy", mmap_mode="r")
    offsets = np.load(path / "offsets.npy")
    split = np.load(path / "split.npy")
    flags = np.load(path / STRUCT_FLAGS, mmap_mode="r")
    span = np.load(path / STRUCT_SPAN, mmap_mode="r")
  except (OSError, ValueError) as e:
    raise CacheError(f"{path}: unreadable cache arrays ({e}); {hint}") from None
  if meta.get("tokenizer_file") and not (path / meta["tokenizer_file"]).is_file():
    raise CacheError(f"{path}: tokenizer file {meta['tokenizer_file']} is missing; {hint}")
  n = sum(meta["num_documents"].values())
  ok = (tokens.ndim == 1 and offsets.shape == (n + 1,) and split.shape == (n,) and offsets[0] == 0
        and offsets[-1] == len(tokens) and bool(np.all(np.diff(offsets) >= 0))
        and flags.shape == tokens.shape and span.shape == tokens.shape)
  if not ok:
    raise CacheError(f"{path}: arrays do not match {META} (truncated or mixed files); {hint}")
  return TokenCache(path, meta, tokens, offsets, split, flags, span)


def requested_settings(inputs: Sequence[str], *, tokenizer="auto", tct_module="tct_github_workflow",
                       val_fraction=0.05, bpe_vocab_size=8192, schema_check=False, schema_path="",
                       max_file_bytes=1_000_000, fingerprint: str | None = None) -> dict:
  """Everything a cache's content depends on; equal settings = the cache can be reused."""
  name = tok_lib.resolve(tokenizer, tct_module)
  s = {"format_version": FORMAT_VERSION, "tokenizer": name, "val_fraction": float(val_fraction),
       "max_file_bytes": int(max_file_bytes), "schema_check": bool(schema_check)}
  if name == "tct":
    s["tct_module"] = tct_module
    s["tokenizer_version"] = tok_lib.TctTokenizer(tct_module).version  # another build, other ids
  else:
    s["bpe_vocab_size"] = int(bpe_vocab_size)
  if schema_check:
    s["schema_sha256"] = corpus_lib.sha256(corpus_lib.find_schema(schema_path).read_bytes())
  s["inputs_sha256"] = fingerprint or corpus_lib.fingerprint(inputs, max_file_bytes)
  return s


def _tokenize(tok, docs: list[corpus_lib.Document], num_proc: int | None, progress: bool):
  """Token lists (None = rejected) for `docs`; BPE batches over Rust threads, TCT over processes."""
  if isinstance(tok, tok_lib.TctTokenizer):
    if num_proc is None:
      num_proc = corpus_lib.default_num_proc() if len(docs) >= corpus_lib.PARALLEL_MIN else 1
    return corpus_lib.map_chunks(tok_lib.tct_encode_chunk, [d.json_text for d in docs], num_proc,
                                  progress, "tokenizing", module_name=tok.module_name)
  from tqdm import tqdm
  out = []
  with tqdm(total=len(docs), desc="tokenizing", unit="file", disable=not progress, leave=False) as bar:
    for i in range(0, len(docs), _ENCODE_CHUNK):
      chunk = [d.text for d in docs[i:i + _ENCODE_CHUNK]]
      out.extend(ids or None for ids in tok.encode_batch(chunk))
      bar.update(len(chunk))
  return out


def _usable(tok, ids) -> bool:
  """No ids (TCT on an odd document), ids past the vocab or PAD inside content: not usable."""
  return bool(ids) and max(ids) < tok.vocab_size and min(ids) >= 0 and tok.pad_id not in ids


def _structure(tok, docs: list[corpus_lib.Document], ids: list[list[int]], progress: bool):
  """Flat (flags, span) arrays of the kept documents; zeros where the tokenizer has no byte
  offsets (TCT encodes JSON, not the file's text: its holes fall back to random spans)."""
  n = sum(len(x) for x in ids)
  if not hasattr(tok, "token_bytes"):
    return np.zeros(n, np.uint8), np.zeros(n, np.uint16)
  from tqdm import tqdm
  nbytes = tok.token_bytes()
  parts = [structure_lib.structure(d.text, nbytes[np.asarray(x)])
           for d, x in tqdm(zip(docs, ids), total=len(docs), desc="structure", unit="file",
                            disable=not progress, leave=False)]
  return (np.concatenate([p[0] for p in parts]).astype(np.uint8),
          np.concatenate([p[1] for p in parts]).astype(np.uint16))


def _percentiles(lengths: np.ndarray) -> dict:
  if not len(lengths):
    return {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0}
  return {"mean": round(float(lengths.mean()), 2), "median": float(np.median(lengths)),
          "p90": float(np.percentile(lengths, 90)), "max": int(lengths.max())}


def _write(path: pathlib.Path, write: Callable) -> None:
  """write(file) then fsync, so a committed cache is on disk before its rename."""
  with open(path, "wb") as f:
    write(f)
    f.flush()
    os.fsync(f.fileno())


def _write_meta(path: pathlib.Path, meta: dict) -> None:
  _write(path / META, lambda f: f.write(json.dumps(meta, indent=1, ensure_ascii=False).encode()))


def _tmp_prefix(out: pathlib.Path) -> str:
  return f".{out.name}.tmp-{socket.gethostname()}-"


def _clean_dead_tmp(out: pathlib.Path) -> None:
  """Removes replaced caches left by a killed commit, and this host's killed builds' temp dirs."""
  for p in out.parent.glob(f".{out.name}.old-*"):
    shutil.rmtree(p, ignore_errors=True)
  prefix = _tmp_prefix(out)
  for p in out.parent.glob(prefix + "*"):
    try:
      pid = int(p.name[len(prefix):].split("-")[0])
      os.kill(pid, 0)
    except ProcessLookupError:
      shutil.rmtree(p, ignore_errors=True)
    except (ValueError, PermissionError):
      pass


def _commit(tmp: pathlib.Path, out: pathlib.Path, settings: dict) -> None:
  """Moves the finished build into place with renames; an old cache is replaced, never mixed."""
  if out.is_dir() and not any(out.iterdir()):
    out.rmdir()
  if not out.exists():
    try:
      os.rename(tmp, out)
      return
    except OSError:
      if not out.exists():
        raise
      if (_read_meta(out) or {}).get("settings") == settings:  # another process built the same
        shutil.rmtree(tmp, ignore_errors=True)
        return
  _refuse_unowned(out)  # again: the folder may have changed during the build
  old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
  os.rename(out, old)
  os.rename(tmp, out)
  shutil.rmtree(old, ignore_errors=True)


def build_cache(inputs: Sequence[str], out_dir: str | os.PathLike, *, tokenizer="auto",
                tct_module="tct_github_workflow", val_fraction=0.05, bpe_vocab_size=8192,
                schema_check=False, schema_path="", max_file_bytes=1_000_000,
                num_proc: int | None = None, progress=True,
                log: Callable[[str], None] = print,
                verify: Callable[[dict, pathlib.Path], None] | None = None) -> dict:
  """Reads, tokenizes and writes a cache to `out_dir` atomically; returns its meta.

  `verify(meta, folder)` may raise to refuse the finished build before it replaces `out_dir`.
  """
  t0 = time.perf_counter()
  inputs = [inputs] if isinstance(inputs, str) else list(inputs)
  out = pathlib.Path(out_dir).resolve()
  if not 0.0 <= val_fraction < 1.0:
    raise CacheError(f"--val-fraction / data.val_fraction must be in [0, 1), got {val_fraction}")
  for inp in inputs:
    if not corpus_lib.is_embedded(inp) and pathlib.Path(inp).resolve().is_relative_to(out):
      raise CacheError(f"input {inp} lies inside the cache folder {out}; choose another --out")
  _refuse_unowned(out)
  _check_writable(out)
  name = tok_lib.resolve(tokenizer, tct_module)
  tok = tok_lib.TctTokenizer(tct_module) if name == "tct" else None  # fail before reading

  corp = corpus_lib.read_corpus(inputs, max_file_bytes=max_file_bytes, schema_check=schema_check,
                                schema_path=schema_path, num_proc=num_proc, progress=progress)
  docs, skipped = corp.documents, list(corp.skipped)
  split = np.array([split_of(d.sha256, val_fraction) if d.split is None else d.split
                    for d in docs], np.uint8)
  if tok is None:
    train_texts = [d.text for d, s in zip(docs, split) if s == 0]
    if not train_texts:
      raise CacheError(f"no training document to train the BPE on; lower --val-fraction ({val_fraction})")
    tok = tok_lib.BpeTokenizer.train(train_texts, bpe_vocab_size)
  ids = _tokenize(tok, docs, num_proc, progress)
  keep = [i for i, x in enumerate(ids) if _usable(tok, x)]
  skipped += [{"file": docs[i].name, "reason": "tokenizer_rejected"}
              for i in sorted(set(range(len(ids))) - set(keep))]
  if not keep:
    raise CacheError(f"no usable workflow in {inputs}: {corpus_lib.summary(corp.num_inputs, 0, skipped)}")

  lengths = np.array([len(ids[i]) for i in keep], np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
  tokens = np.fromiter(itertools.chain.from_iterable(ids[i] for i in keep), dtype, int(offsets[-1]))
  split = split[keep]
  kept_docs = [docs[i] for i in keep]
  flags, span = _structure(tok, kept_docs, [ids[i] for i in keep], progress)

  sizes = {k: int((split == v).sum()) for k, v in SPLITS.items()}
  counts = {k: int(lengths[split == v].sum()) for k, v in SPLITS.items()}
  settings = requested_settings(inputs, tokenizer=name, tct_module=tct_module,
                                val_fraction=val_fraction, bpe_vocab_size=bpe_vocab_size,
                                schema_check=schema_check, schema_path=schema_path,
                                max_file_bytes=max_file_bytes, fingerprint=corp.fingerprint)
  meta = {
      "format": FORMAT, "format_version": FORMAT_VERSION,
      "tokenizer": name, "tokenizer_version": tok.version,
      "tokenizer_file": TOKENIZER_FILE if name == "bpe" else None,
      "tokenizer_sha256": corpus_lib.sha256(tok.to_json().encode()) if name == "bpe" else None,
      "tct_module": tct_module if name == "tct" else None,
      "vocab_size": tok.vocab_size, "pad_id": tok.pad_id,
      "special_ids": special_ids(tok.vocab_size, tok.pad_id),
      "model_vocab_size": tok.vocab_size + len(SPECIALS), "dtype": np.dtype(dtype).name,
      "inputs": inputs, "num_inputs": corp.num_inputs,
      "num_documents": sizes, "num_tokens": counts,
      "tokens_per_document": _percentiles(lengths),
      "num_skipped": len(skipped), "skipped_counts": corpus_lib.skip_counts(skipped),
      "summary": corpus_lib.summary(corp.num_inputs, len(keep), skipped),
      "skipped": skipped, "settings": settings,
      "build_seconds": 0.0, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }

  out.parent.mkdir(parents=True, exist_ok=True)
  _clean_dead_tmp(out)
  tmp = out.parent / f"{_tmp_prefix(out)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
  tmp.mkdir()
  try:
    (tmp / corpus_lib.CACHE_MARKER).write_text("fimjax token cache; safe to delete\n")
    for fname, array in zip(ARRAYS, (tokens, offsets, split, flags, span)):
      _write(tmp / fname, lambda f, a=array: np.save(f, a))
    if name == "bpe":
      _write(tmp / TOKENIZER_FILE, lambda f: f.write(tok.to_json().encode()))
    rows = (f"{j}\t{('train', 'validation')[split[j]]}\t{lengths[j]}\t{d.sha256}\t"
            + d.name.replace("\t", " ").replace("\n", " ") + "\n" for j, d in enumerate(kept_docs))
    _write(tmp / DOCS_TSV, lambda f: f.write(("index\tsplit\ttokens\tsha256\tsource\n"
                                               + "".join(rows)).encode()))
    meta["build_seconds"] = round(time.perf_counter() - t0, 3)
    _write_meta(tmp, meta)  # last: a folder without it never loads
    if verify is not None:
      verify(meta, tmp)
    _commit(tmp, out, settings)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  log(meta["summary"])
  return meta


def encode_documents(inputs: Sequence[str], tokenizer, *, max_file_bytes: int = 1_000_000,
                     progress: bool = False) -> tuple[Documents, str]:
  """Files read and encoded with an existing tokenizer (a held-out corpus, kept in memory):
  (Documents with structure marks, the reader's one-line summary)."""
  corp = corpus_lib.read_corpus(inputs, max_file_bytes=max_file_bytes, progress=progress)
  ids = _tokenize(tokenizer, corp.documents, None, progress)
  keep = [i for i, x in enumerate(ids) if _usable(tokenizer, x)]
  skipped = corp.skipped + [{"file": corp.documents[i].name, "reason": "tokenizer_rejected"}
                            for i in sorted(set(range(len(ids))) - set(keep))]
  docs = [corp.documents[i] for i in keep]
  toks = [ids[i] for i in keep]
  flags, span = _structure(tokenizer, docs, toks, progress)
  lengths = np.array([len(x) for x in toks], np.int64)
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
  flat = np.fromiter(itertools.chain.from_iterable(toks), np.int32, int(lengths.sum()))
  return (Documents(flat, starts, lengths, flags=flags, span=span),
          corpus_lib.summary(corp.num_inputs, len(keep), skipped))


_DATA_FIELDS = ("tokenizer", "tct_module", "val_fraction", "bpe_vocab_size", "schema_check",
                "schema_path", "max_file_bytes")  # config.data -> build_cache


def ensure_cache(data, out_dir: str | os.PathLike, *, progress=True,
                 log: Callable[[str], None] = print,
                 verify: Callable[[dict, pathlib.Path], None] | None = None) -> TokenCache:
  """The cache for `config.data` at `out_dir`: reused when its settings match, else (re)built.

  A folder that holds anything but a cache's own files is refused, never overwritten.
  `verify(meta, folder)` sees the cache before it is used or replaces `out_dir`, and may refuse
  it by raising (a resumed run keeps its tokenizer); a refused build leaves `out_dir` as it was.
  """
  inputs = [s.strip() for s in str(data.corpus).split(",") if s.strip()]
  if not inputs:
    raise CacheError("data.corpus is empty: give workflow files/folders (comma-separated) or 'default'")
  kwargs = {k: getattr(data, k) for k in _DATA_FIELDS}
  out = pathlib.Path(out_dir)
  _refuse_unowned(out)  # before any work: a folder that holds more than a cache is not ours
  want = requested_settings(inputs, **kwargs)
  meta = _read_meta(out)
  if meta is not None:
    have = meta.get("settings", {})
    if have == want:
      try:
        tc = load_cache(out)
        if verify is not None:
          verify(tc.meta, out)
        return tc
      except CacheError as e:
        log(f"token cache at {out} is damaged ({e}); rebuilding")
    else:
      diff = ", ".join(f"{k}: {have.get(k)!r} -> {want.get(k)!r}" for k in sorted(set(have) | set(want))
                       if have.get(k) != want.get(k))
      log(f"token cache at {out} is stale ({diff}); rebuilding"
          + (" (the build replaces it only once checked)" if verify else ""))
  build_cache(inputs, out, progress=progress, log=log, verify=verify, **kwargs)
  return load_cache(out)


if __name__ == "__main__":  # the CLI lives in cache_cli.py; `python -m fimjax.data.cache` runs it
  from fimjax.data import cache_cli
  sys.exit(cache_cli.main())
