"""A corpus of any size to flat token arrays: bounded memory, every core, stable order.

`scan` reads the inputs once (corpus.Reader, parsing in worker processes) and spills each kept
document's text (and its YAML nodes, structure.node_marks, from that one parse) to files on
disk, keeping only names and hashes in memory; meanwhile `BackgroundBpe` trains the BPE in a
thread on a bounded sample of the training texts, fed as they are read; `encode` tokenizes and
marks structure in worker processes, chunk by chunk, in input order; `NpyWriter` appends the
results to `.npy` files whose shape is written at the end. A build with N processes is
byte-identical to one with 1.
"""

import dataclasses
import os
import pathlib
import queue
import re
import threading
from typing import Callable, Iterable, Iterator

import numpy as np

from fimjax.data import corpus as corpus_lib
from fimjax.data import structure as structure_lib
from fimjax.data import tokenizers as tok_lib
from fimjax.data import workers

ENCODE_CHUNK = 256  # documents per worker task
# BPE trains on the training texts in corpus order up to this many bytes (about 50k workflows):
# the merges of a 64 MB sample cover YAML; training on all of a 1M-document corpus would take
# tens of minutes and gigabytes. A corpus below it trains on everything (as before this bound).
BPE_SAMPLE_BYTES = 64 * 2**20


@dataclasses.dataclass
class Scan:
  """What `scan` keeps in memory: per kept document its name, sha256, own split (-1 = by hash)
  and where its text (and its nodes) lie in the spill files."""

  spill: pathlib.Path
  names: list[str]
  sha256: list[str]
  split: list[int]
  ends: list[int]  # byte offset of each text's end in the spill file
  skipped: list[dict]
  num_inputs: int
  fingerprint: str
  node_ends: list[int] | None = None  # int32 offset of each document's nodes' end, if kept

  @property
  def nodes_spill(self) -> pathlib.Path:
    return self.spill.with_suffix(".nodes")

  def items(self) -> Iterator[tuple[str, np.ndarray | None]]:
    """(text, its node marks or None) per document, read lazily."""
    if self.node_ends is None:
      yield from ((t, None) for t in self.texts())
      return
    with open(self.nodes_spill, "rb") as f:
      for i, text in enumerate(self.texts()):
        size = self.node_ends[i] - (self.node_ends[i - 1] if i else 0)
        yield text, np.frombuffer(f.read(4 * size), np.int32).reshape(-1, 3)

  def remove(self) -> None:
    self.spill.unlink(missing_ok=True)
    self.nodes_spill.unlink(missing_ok=True)

  def texts(self) -> Iterator[str]:
    """The spilled texts, read lazily."""
    with open(self.spill, "rb") as f:
      for i in range(len(self.ends)):
        yield f.read(self.ends[i] - (self.ends[i - 1] if i else 0)).decode("utf-8")


def scan(
  reader: corpus_lib.Reader,
  spill: pathlib.Path,
  *,
  json_text: bool,
  on_document: Callable[[corpus_lib.Document], None] | None = None,
) -> Scan:
  """Reads every input; spills each kept document's text (its JSON with `json_text`, for TCT)
  and, when the reader keeps them, its node marks; calls `on_document` on each kept one."""
  names, sha, split, ends, skipped, end = [], [], [], [], [], 0
  node_ends, node_end = [], 0
  with open(spill, "wb") as f, open(spill.with_suffix(".nodes"), "wb") as g:
    for _, doc, skip in reader:
      if doc is None:
        skipped.append(skip)
        continue
      if on_document is not None:
        on_document(doc)
      data = (doc.json_text if json_text else doc.text).encode("utf-8")
      f.write(data)
      end += len(data)
      names.append(doc.name)
      sha.append(doc.sha256)
      split.append(-1 if doc.split is None else doc.split)
      ends.append(end)
      if doc.nodes is not None:
        g.write(np.ascontiguousarray(doc.nodes, np.int32).tobytes())
        node_end += doc.nodes.size
        node_ends.append(node_end)
  keep_nodes = len(node_ends) == len(names) and reader.nodes
  return Scan(
    spill,
    names,
    sha,
    split,
    ends,
    skipped,
    reader.num_inputs,
    reader.fingerprint,
    node_ends if keep_nodes else None,
  )


class BackgroundBpe:
  """Trains the BPE in a thread while `scan` reads, on the training texts in corpus order until
  `limit` characters (None: BPE_SAMPLE_BYTES; the text that crosses it is the last one).

  `feed` each document's text and split as it is read; `result` waits for the tokenizer. The
  trainer's Rust code runs without the GIL, beside the read's worker processes instead of after
  them. It counts words as the texts arrive, so on a corpus below the limit it is nearly done
  when the read is (starting it only once the sample is complete measured no faster at 100k
  documents, where the 64 MB sample takes ~15 CPU seconds on 2 cores either way, and slower
  below it). `train` takes the texts' iterator (default: BpeTokenizer.train at `vocab_size`).
  """

  def __init__(self, vocab_size: int, limit: int | None = None, train: Callable | None = None):
    self.limit, self.total, self.closed = BPE_SAMPLE_BYTES if limit is None else limit, 0, False
    self._train = train or (lambda texts: tok_lib.BpeTokenizer.train(texts, vocab_size))
    self._queue, self._out = queue.Queue(), {}
    self._thread = threading.Thread(target=self._run, name="bpe-training", daemon=True)
    self._thread.start()

  def _texts(self) -> Iterator[str]:
    while (text := self._queue.get()) is not None:
      yield text

  def _run(self) -> None:
    try:
      self._out["result"] = self._train(self._texts())
    except BaseException as e:  # pylint: disable=broad-except  # raised again by `result`
      self._out["error"] = e

  def feed(self, text: str, split: int) -> None:
    if self.closed or split != 0:
      return
    self._queue.put(text)
    self.total += len(text)
    if self.total >= self.limit:
      self.close()

  def close(self) -> None:
    """Ends the sample (the training goes on with what it has)."""
    if not self.closed:
      self.closed = True
      self._queue.put(None)

  def result(self):
    self.close()
    self._thread.join()
    if "error" in self._out:
      raise self._out["error"]
    return self._out["result"]


_TOKENIZER, _NBYTES = None, None  # this (worker) process's tokenizer and its token lengths
_PIECES: dict[str, bytes] = {}  # the ids (bytes of the token dtype) of each piece encoded
PIECES_MAX = 1 << 17  # pieces kept (then forgotten at once): ~30 MB per process
# Where a byte-level BPE text may be cut without changing its ids: before a newline that follows
# a visible ASCII character. The pre-tokenizer's regex ends every word, number and punctuation
# run at a blank and starts a new pre-token there, and BPE merges stay inside pre-tokens, so a
# text's ids are its pieces' ids one after the other. (A pattern that starts with the newline
# is searched for fast; the cut newline is put back at the start of its piece.)
_CUT = re.compile(r"\n(?<=[!-~]\n)")


def _pieces(text: str) -> list[str]:
  first, *rest = _CUT.split(text)
  return [first, *("\n" + p for p in rest)]


def encode_by_lines(tok, texts: list[str], dtype) -> list[np.ndarray]:
  """`tok.encode_batch(texts)` (the reference, equal by a test), as arrays, with each piece (a
  line with the newline before it) encoded once per process: workflows repeat lines (47% of
  the embedded corpus's bytes are in a piece seen before in it)."""
  pieces = [_pieces(t) for t in texts]
  new = list(dict.fromkeys(p for ps in pieces for p in ps if p not in _PIECES))
  if len(_PIECES) + len(new) > PIECES_MAX:
    _PIECES.clear()
    new = list(dict.fromkeys(p for ps in pieces for p in ps))
  for piece, ids in zip(new, tok.encode_batch(new) if new else []):
    _PIECES[piece] = np.asarray(ids, dtype).tobytes()
  return [np.frombuffer(b"".join([_PIECES[p] for p in ps]), dtype) for ps in pieces]


def _init(spec) -> None:
  """Sets this process's tokenizer from a spec (a tokenizer object in this process)."""
  global _TOKENIZER, _NBYTES
  if isinstance(spec, tuple):
    spec = (
      tok_lib.BpeTokenizer.from_json(spec[1], spec[2])
      if spec[0] == "bpe"
      else tok_lib.TctTokenizer(spec[1])
    )
  _TOKENIZER = spec
  _NBYTES = spec.token_bytes() if hasattr(spec, "token_bytes") else None
  _PIECES.clear()  # another tokenizer's ids


def _spec(tok):
  """What a worker needs to rebuild `tok`: the BPE's JSON, or the TCT module's name."""
  if isinstance(tok, tok_lib.BpeTokenizer):
    return ("bpe", tok.to_json(), tok.vocab_size)
  return ("tct", tok.module_name)


def encode_chunk(items: list) -> list:
  """Per item (a text, or (text, its node marks or None)): (ids, structure flags, span) or why
  the tokenizer's output is unusable (str)."""
  tok = _TOKENIZER
  pairs = [item if isinstance(item, tuple) else (item, None) for item in items]
  texts = [text for text, _ in pairs]
  dtype = token_dtype(tok.vocab_size)
  if isinstance(tok, tok_lib.TctTokenizer):
    ids_list = tok_lib.tct_encode_chunk(texts, tok.module_name)
  else:
    ids_list = encode_by_lines(tok, texts, dtype)
  nbytes = _NBYTES
  out, marked = [], []
  for (text, nodes), ids in zip(pairs, ids_list):
    why = tok_lib.unusable(tok, ids)
    if why is not None:
      out.append(why)
      continue
    ids = np.asarray(ids, dtype)
    if nbytes is None:  # TCT encodes the JSON, not the text: no structure (holes fall back)
      out.append((ids, np.zeros(len(ids), np.uint8), np.zeros(len(ids), np.uint16)))
    else:
      marked.append((len(out), text, nbytes[ids], nodes))
      out.append(ids)
  if marked:
    _, texts, token_bytes, nodes = zip(*marked)
    for (i, *_), marks in zip(marked, structure_lib.fast_structures(texts, token_bytes, nodes)):
      out[i] = (out[i], *marks)
  return out


def token_dtype(vocab_size: int):
  return np.uint16 if vocab_size <= 2**16 else np.uint32


def encode(items: Iterable, tok, num_proc: int, progress: bool = False) -> Iterator:
  """encode_chunk's result per item (text or (text, nodes)), in order, over `num_proc`
  processes."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  spec = tok if num_proc <= 1 else _spec(tok)
  with tqdm(desc="encoding", unit="file", disable=None if progress else True, leave=False) as bar:
    for chunk, results in workers.ordered_map(
      encode_chunk,
      workers.batched(items, ENCODE_CHUNK),
      num_proc,
      initializer=_init,
      initargs=(spec,),
    ):
      yield from results
      bar.update(len(chunk))


class NpyWriter:
  """A 1-D `.npy` file written by appending (the bytes np.save writes); its shape goes into the
  header on `close`, over a header written first for the widest shape (the same length)."""

  def __init__(self, path: pathlib.Path, dtype):
    self.dtype, self.n = np.dtype(dtype), 0
    self.f = open(path, "wb")
    self.header_len = self._header(10**15)

  def _header(self, n: int) -> int:
    np.lib.format.write_array_header_1_0(
      self.f,
      {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (n,)},
    )
    return self.f.tell()

  def append(self, a: np.ndarray) -> None:
    self.f.write(np.ascontiguousarray(a, self.dtype).tobytes())
    self.n += len(a)

  def close(self) -> None:
    """Writes the real shape and syncs the file to disk."""
    self.f.seek(0)
    if self._header(self.n) != self.header_len:
      raise AssertionError(f"{self.f.name}: the .npy header changed length")
    self.f.flush()
    os.fsync(self.f.fileno())
    self.f.close()
