"""Token cache: build once (atomically), reuse or rebuild when stale. The command
(fimjax/cli/cache.py):

    python -m fimjax.data.cache build --input PATH [PATH...] --out DIR [--tokenizer auto|tct|bpe]
                                      [--val_fraction F]
    python -m fimjax.data.cache info DIR [--json]

The files, loading and verification live in cache_format.py (re-exported here).
"""

import os
import pathlib
import shutil
import time
import uuid
from typing import Callable, Sequence

import numpy as np

from fimjax.data import corpus as corpus_lib
from fimjax.data import encode as encode_lib
from fimjax.data import tokenizers as tok_lib
from fimjax.data.cache import folder
from fimjax.data.cache_format import (  # noqa: F401  (re-exported: callers use cache.X)
  ARRAYS,
  DOCS_TSV,
  FORMAT,
  FORMAT_VERSION,
  META,
  SPLITS,
  STRUCT_FLAGS,
  STRUCT_SPAN,
  TOKENIZER_FILE,
  CacheDamaged,
  CacheError,
  Documents,
  TokenCache,
  corpus_change,
  file_records,
  load_cache,
  read_meta,
  tokenizer_id,
)

SPECIALS = ("bos", "eos", "mask", "mid", "eom")  # model ids V, V+1, ... after the tokenizer's vocab


def special_ids(vocab_size: int, pad_id: int) -> dict[str, int]:
  return {"pad": pad_id, **{name: vocab_size + i for i, name in enumerate(SPECIALS)}}


def split_of(sha256_hex: str, val_fraction: float) -> int:
  """0 train / 1 validation from the content hash alone: adding files never moves another."""
  return int(int(sha256_hex[:8], 16) / 2**32 < val_fraction)


def requested_settings(
  inputs: Sequence[str],
  *,
  tokenizer="auto",
  tct_module=corpus_lib.WORKFLOW_TCT,
  val_fraction=0.05,
  bpe_vocab_size=8192,
  schema_check=False,
  schema_path="",
  max_file_bytes=1_000_000,
  documents="auto",
  jsonc=False,
  text_field="content",
  fingerprint: str | None = None,
) -> dict:
  """Everything a cache's content depends on; equal settings = the cache can be reused."""
  name = tok_lib.resolve(tokenizer, tct_module)
  s = {
    "format_version": FORMAT_VERSION,
    "tokenizer": name,
    "val_fraction": float(val_fraction),
    "max_file_bytes": int(max_file_bytes),
    "schema_check": bool(schema_check),
    "documents": corpus_lib.document_kind(documents, name, tct_module),
    "jsonc": bool(jsonc),
    "text_field": str(text_field),
  }
  if name == "tct":
    s["tct_module"] = tct_module
    s["tokenizer_version"] = tok_lib.TctTokenizer(tct_module).version  # another build, other ids
  else:
    s["bpe_vocab_size"] = int(bpe_vocab_size)
  if schema_check:
    s["schema_sha256"] = corpus_lib.sha256(corpus_lib.find_schema(schema_path).read_bytes())
  s["inputs_sha256"] = fingerprint or corpus_lib.fingerprint(inputs, max_file_bytes)
  return s


def _percentiles(lengths: np.ndarray) -> dict:
  if not len(lengths):
    return {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0}
  return {
    "mean": round(float(lengths.mean()), 2),
    "median": float(np.median(lengths)),
    "p90": float(np.percentile(lengths, 90)),
    "max": int(lengths.max()),
  }


def build_cache(
  inputs: Sequence[str],
  out_dir: str | os.PathLike,
  *,
  tokenizer="auto",
  tct_module=corpus_lib.WORKFLOW_TCT,
  val_fraction=0.05,
  bpe_vocab_size=8192,
  schema_check=False,
  schema_path="",
  max_file_bytes=1_000_000,
  documents="auto",
  jsonc=False,
  text_field="content",
  num_proc: int | None = None,
  progress=True,
  log: Callable[[str], None] = print,
  verify: Callable[[dict, pathlib.Path], None] | None = None,
  bpe: tok_lib.BpeTokenizer | None = None,
) -> dict:
  """Reads, tokenizes and writes a cache to `out_dir` atomically; returns its meta.

  `verify(meta, folder)` may raise to refuse the finished build before it replaces `out_dir`.
  `bpe`: encode with this trained BPE (a run's own) instead of training one on the corpus.
  `documents`, `jsonc`, `text_field`: what the reader keeps (corpus.document_kind, read_corpus).
  """
  t0 = time.perf_counter()
  inputs = [inputs] if isinstance(inputs, str) else list(inputs)
  out = pathlib.Path(out_dir).resolve()
  if not 0.0 <= val_fraction < 1.0:
    raise CacheError(f"--val_fraction / data.val_fraction must be in [0, 1), got {val_fraction}")
  for inp in inputs:
    local = not (corpus_lib.is_embedded(inp) or corpus_lib.is_url(inp))
    if local and pathlib.Path(inp).resolve().is_relative_to(out):
      raise CacheError(f"input {inp} lies inside the cache folder {out}; choose another --out")
  folder.refuse_unowned(out)
  folder.check_writable(out)
  name = tok_lib.resolve(tokenizer, tct_module)
  tok = tok_lib.TctTokenizer(tct_module) if name == "tct" else None  # fail before reading

  kind = corpus_lib.document_kind(documents, name, tct_module)
  reader = corpus_lib.Reader(
    inputs,
    max_file_bytes=max_file_bytes,
    schema_check=schema_check,
    schema_path=schema_path,
    documents=kind,
    jsonc=jsonc,
    text_field=text_field,
    nodes=name == "bpe",  # structure marks from the reader's own YAML parse
    num_proc=num_proc,
    progress=progress,
  )
  out.parent.mkdir(parents=True, exist_ok=True)
  folder.clean_dead_tmp(out)
  tmp = out.parent / f"{folder.tmp_prefix(out)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
  tmp.mkdir()
  try:
    meta = _build(
      tmp,
      reader,
      name,
      tok or bpe,
      settings=dict(
        tokenizer=name,
        tct_module=tct_module,
        val_fraction=val_fraction,
        bpe_vocab_size=bpe_vocab_size,
        schema_check=schema_check,
        schema_path=schema_path,
        max_file_bytes=max_file_bytes,
        documents=kind,
        jsonc=jsonc,
        text_field=text_field,
      ),
      inputs=inputs,
      progress=progress,
    )
    meta["build_seconds"] = round(time.perf_counter() - t0, 3)
    folder.write_meta(tmp, meta)  # last: a folder without it never loads
    if verify is not None:
      verify(meta, tmp)
    folder.commit(tmp, out, meta["settings"])
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  log(meta["summary"])
  return meta


def _build(
  tmp: pathlib.Path,
  reader: corpus_lib.Reader,
  name: str,
  tok,
  *,
  settings: dict,
  inputs: list,
  progress: bool,
) -> dict:
  """Writes the cache's files into `tmp` (two passes over the corpus, see fimjax.data.encode);
  returns the meta (without build_seconds). `tok`: None = train a BPE on the corpus."""
  spill = tmp / "texts.spill"
  clock, phases = time.perf_counter(), {}

  def lap(phase):  # seconds per phase of the build, for meta.json (where build time goes)
    nonlocal clock
    phases[phase] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()

  val_fraction = settings["val_fraction"]

  def split_of_doc(sha256: str, own: int | None) -> int:  # own: the input's split (SPLIT.tsv)
    return split_of(sha256, val_fraction) if own is None or own < 0 else own

  bpe = encode_lib.BackgroundBpe(settings["bpe_vocab_size"]) if tok is None else None
  feed = None if bpe is None else lambda d: bpe.feed(d.text, split_of_doc(d.sha256, d.split))
  try:
    s = encode_lib.scan(reader, spill, json_text=name == "tct", on_document=feed)
  finally:
    if bpe is not None:
      bpe.close()  # on an error too: the thread ends
  lap("read")
  if not s.names:
    raise reader.nothing_usable(s.skipped)
  split = np.array([split_of_doc(h, sp) for h, sp in zip(s.sha256, s.split)], np.uint8)
  if bpe is not None:
    if not (split == 0).any():
      raise CacheError(
        f"no training document to train the BPE on; lower --val-fraction ({val_fraction})"
      )
    tok = bpe.result()
  lap("bpe")  # the wait for the BPE after the read: its training overlaps the read
  dtype = encode_lib.token_dtype(tok.vocab_size)
  writers = [
    encode_lib.NpyWriter(tmp / f, t)
    for f, t in (("tokens.npy", dtype), (STRUCT_FLAGS, np.uint8), (STRUCT_SPAN, np.uint16))
  ]
  lengths, keep, skipped = [], [], list(s.skipped)
  for i, r in enumerate(encode_lib.encode(s.items(), tok, reader.num_proc, progress)):
    if isinstance(r, str):
      skipped.append({"file": s.names[i], "reason": "tokenizer_rejected", "message": r})
      continue
    for w, a in zip(writers, r):
      w.append(a)
    lengths.append(len(r[0]))
    keep.append(i)
  for w in writers:
    w.close()
  s.remove()
  lap("encode")
  if not keep:
    raise CacheError(
      f"no usable workflow in {inputs}: {corpus_lib.summary(s.num_inputs, 0, skipped)}"
    )
  lengths = np.array(lengths, np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  split = split[keep]
  sizes = {k: int((split == v).sum()) for k, v in SPLITS.items()}
  counts = {k: int(lengths[split == v].sum()) for k, v in SPLITS.items()}
  settings = requested_settings(inputs, **settings, fingerprint=s.fingerprint)
  meta = {
    "format": FORMAT,
    "format_version": FORMAT_VERSION,
    "tokenizer": name,
    "tokenizer_version": tok.version,
    "tokenizer_file": TOKENIZER_FILE if name == "bpe" else None,
    "tokenizer_sha256": corpus_lib.sha256(tok.to_json().encode()) if name == "bpe" else None,
    "tct_module": settings.get("tct_module"),
    "vocab_size": tok.vocab_size,
    "pad_id": tok.pad_id,
    "special_ids": special_ids(tok.vocab_size, tok.pad_id),
    "model_vocab_size": tok.vocab_size + len(SPECIALS),
    "dtype": np.dtype(dtype).name,
    "inputs": inputs,
    "num_inputs": s.num_inputs,
    "num_documents": sizes,
    "num_tokens": counts,
    "tokens_per_document": _percentiles(lengths),
    "num_skipped": len(skipped),
    "skipped_counts": corpus_lib.skip_counts(skipped),
    "summary": corpus_lib.summary(s.num_inputs, len(keep), skipped),
    "skipped": skipped,
    "settings": settings,
    "build_seconds": 0.0,
    "build_phases_s": phases,  # read (+ parse, + BPE training beside it), bpe (the wait for
    # the rest of the BPE training), encode (+ marks); not write
    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }
  (tmp / corpus_lib.CACHE_MARKER).write_text("fimjax token cache; safe to delete\n")
  for fname, array in (("offsets.npy", offsets), ("split.npy", split)):
    folder.write(tmp / fname, lambda f, a=array: np.save(f, a))
  if name == "bpe":
    folder.write(tmp / TOKENIZER_FILE, lambda f: f.write(tok.to_json().encode()))
  rows = (
    f"{j}\t{('train', 'validation')[split[j]]}\t{lengths[j]}\t{s.sha256[i]}\t"
    + s.names[i].replace("\t", " ").replace("\n", " ")
    + "\n"
    for j, i in enumerate(keep)
  )
  folder.write(
    tmp / DOCS_TSV,
    lambda f: f.write(("index\tsplit\ttokens\tsha256\tsource\n" + "".join(rows)).encode()),
  )
  # Size and sha256 of each file (~10 ms for the default corpus): a damaged one is named on load.
  meta["files"] = file_records(
    tmp, [*ARRAYS, *([TOKENIZER_FILE] if name == "bpe" else []), DOCS_TSV]
  )
  return meta


def encode_documents(
  inputs: Sequence[str], tokenizer, *, progress: bool = False, **read
) -> tuple[Documents, str]:
  """Files read (`read`: Reader's max_file_bytes, documents, jsonc, text_field) and encoded with
  an existing tokenizer (a held-out corpus, kept in memory): (Documents with structure marks,
  the reader's one-line summary)."""
  tct = isinstance(tokenizer, tok_lib.TctTokenizer)
  corp = corpus_lib.read_corpus(inputs, progress=progress, nodes=not tct, **read)
  texts = ((d.json_text, None) if tct else (d.text, d.nodes) for d in corp.documents)
  parts, skipped = [], list(corp.skipped)
  for d, r in zip(corp.documents, encode_lib.encode(texts, tokenizer, 1, progress)):
    if isinstance(r, str):
      skipped.append({"file": d.name, "reason": "tokenizer_rejected", "message": r})
    else:
      parts.append(r)
  lengths = np.array([len(r[0]) for r in parts], np.int64)
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
  flat, flags, span = (
    np.concatenate([r[k] for r in parts]) if parts else np.zeros(0, t)
    for k, t in enumerate((np.int32, np.uint8, np.uint16))
  )
  return (
    Documents(flat.astype(np.int32), starts, lengths, flags=flags, span=span),
    corpus_lib.summary(corp.num_inputs, len(parts), skipped),
  )


_DATA_FIELDS = (
  "tokenizer",
  "tct_module",
  "val_fraction",
  "bpe_vocab_size",
  "schema_check",
  "schema_path",
  "max_file_bytes",
  "documents",
  "jsonc",
  "text_field",
)  # config.data -> build_cache


def _restore_if_refused(verify: Callable, damage: str, out: pathlib.Path) -> Callable:
  """`verify` for the rebuild of a damaged cache: when the rebuild is refused (another tokenizer
  than the run's), the way back is the old cache itself, so say to restore it."""

  def check(meta: dict, folder: pathlib.Path) -> None:
    try:
      verify(meta, folder)
    except ValueError as e:
      raise CacheError(
        f"{damage}, and its rebuild is refused ({e}); restore {out} from a copy, "
        "or train in another --workdir"
      ) from None

  return check


def _own_bpe(out: pathlib.Path, meta: dict, want: dict) -> tok_lib.BpeTokenizer | None:
  """The BPE tokenizer of the cache at `out` (None for TCT: its ids are fixed by the module)."""
  if meta.get("tokenizer") != "bpe" or want.get("tokenizer") != "bpe":
    return None
  if meta["settings"].get("bpe_vocab_size") != want["bpe_vocab_size"]:
    raise CacheError(
      f"cannot keep the tokenizer of {out}: its vocab size is "
      f"{meta['settings'].get('bpe_vocab_size')}, the config asks for "
      f"{want['bpe_vocab_size']}; set data.bpe_vocab_size to it"
    )
  try:
    return load_cache(out, checksums=True).tokenizer()
  except CacheError as e:
    raise CacheError(f"cannot keep the tokenizer of {out}: {e}") from None


def ensure_cache(
  data,
  out_dir: str | os.PathLike,
  *,
  progress=True,
  log: Callable[[str], None] = print,
  verify: Callable[[dict, pathlib.Path], None] | None = None,
  keep_tokenizer: bool = False,
) -> TokenCache:
  """The cache for `config.data` at `out_dir`: reused when its settings match, else (re)built.

  A folder that holds anything but a cache's own files is refused, never overwritten.
  `verify(meta, folder)` sees the cache before it is used or replaces `out_dir`, and may refuse
  it by raising (a resumed run keeps its tokenizer); a refused build leaves `out_dir` as it was.
  `keep_tokenizer`: a stale BPE cache is rebuilt with its own tokenizer (a changed corpus is
  re-encoded with the ids a run's weights know) instead of training a new one.
  """
  inputs = [s.strip() for s in str(data.corpus).split(",") if s.strip()]
  if not inputs:
    raise CacheError(
      "data.corpus is empty: give workflow files/folders (comma-separated) or 'default'"
    )
  kwargs = {k: getattr(data, k) for k in _DATA_FIELDS}
  out = pathlib.Path(out_dir)
  folder.refuse_unowned(out)  # before any work: a folder that holds more than a cache is not ours
  want = requested_settings(inputs, **kwargs)
  meta, bpe = read_meta(out), None
  if meta is not None:
    have = meta.get("settings", {})
    if have == want:
      try:
        tc = load_cache(out, checksums=True)  # training starts here: hash every file, any size
        if verify is not None:
          verify(tc.meta, out)
        return tc
      except CacheError as e:
        damage = (
          f"token cache file {e.file} is damaged ({e.why})"
          if isinstance(e, CacheDamaged)
          else f"token cache at {out} is damaged ({e})"
        )
        log(
          f"{damage}; rebuilding"
          + (
            " (it replaces the damaged one only if it gives the run's tokenizer)" if verify else ""
          )
        )
        verify = verify and _restore_if_refused(verify, damage, out)
    else:
      diff = ", ".join(
        f"{k}: {have.get(k)!r} -> {want.get(k)!r}"
        for k in sorted(set(have) | set(want))
        if have.get(k) != want.get(k)
      )
      bpe = _own_bpe(out, meta, want) if keep_tokenizer else None
      log(
        f"token cache at {out} is stale ({diff}); rebuilding"
        + (f" with its own tokenizer ({tokenizer_id(meta)[:16]})" if bpe else "")
        + (" (the build replaces it only once checked)" if verify else "")
      )
  build_cache(inputs, out, progress=progress, log=log, verify=verify, bpe=bpe, **kwargs)
  return load_cache(out)
