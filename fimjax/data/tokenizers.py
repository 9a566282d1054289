"""Tokenizers behind one interface: TCT (schema-aware, JSON in) and a lossless byte-level BPE.

`make_tokenizer("auto")` picks TCT when its module imports, else BPE. Ids are `0..vocab_size-1`
with `pad_id` among them; encoders never emit `pad_id`. The model adds its own specials after.
"""

import importlib
import importlib.metadata
import json
import pathlib
from typing import Iterable, Protocol, Sequence

import numpy as np

from fimjax.data import corpus

TCT_WHEEL_HINT = f"pip install /path/to/{corpus.WORKFLOW_TCT}-*.whl"


class TokenizerError(ValueError):
  """A tokenizer cannot be made (missing module or file); the message says what to do."""


class Tokenizer(Protocol):
  name: str
  version: str
  vocab_size: int  # PAD included
  pad_id: int

  def encode(self, text: str) -> list[int]: ...  # workflow file text (YAML or JSON)
  def decode(self, ids: Sequence[int]) -> str: ...
  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...


# ---------------------------------------------------------------------------------------- TCT


def import_tct(module_name: str = corpus.WORKFLOW_TCT):
  """The TCT module, or a one-line TokenizerError saying how to install it or switch to BPE."""
  try:
    return importlib.import_module(module_name)
  except ImportError as e:
    raise TokenizerError(
      f"tokenizer 'tct' needs the Python module {module_name!r} ({e}): install it with "
      f"`{TCT_WHEEL_HINT}`, or use --config.data.tokenizer=bpe"
    ) from None


def _module_version(mod) -> str:
  v = getattr(mod, "__version__", None)
  if v:
    return str(v)
  top = mod.__name__.split(".")[0]
  for dist in importlib.metadata.packages_distributions().get(top, []):
    try:
      return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      pass
  return "unknown"


def workflow_json(text: str) -> str:
  """File text (JSON or YAML) -> the JSON text TCT takes, with the `on:` fix."""
  try:
    obj = corpus.fix_on(json.loads(text))
  except ValueError:
    obj = corpus.load_workflow(text)
  return corpus.to_json(obj)


class TctTokenizer:
  """Adapter for a `tct_github_workflow`-like module: encode(json) / decode(ids) / vocab_size()."""

  name = "tct"

  def __init__(self, module_name: str = corpus.WORKFLOW_TCT):
    self.module_name = module_name
    self._mod = import_tct(module_name)
    self.version = f"{module_name}-{_module_version(self._mod)}"
    self.vocab_size = int(self._mod.vocab_size())
    pad = getattr(self._mod, "pad_token", None)
    self.pad_id = int(pad()) if pad is not None else self.vocab_size - 1

  def encode_json(self, json_text: str) -> list[int]:
    """Raises when TCT rejects the document (e.g. not schema-valid)."""
    return list(self._mod.encode(json_text))

  def encode(self, text: str) -> list[int]:
    return self.encode_json(workflow_json(text))

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [self.encode(t) for t in texts]

  def decode(self, ids: Sequence[int]) -> str:
    return self.decode_full(ids)[0]

  def decode_full(self, ids: Sequence[int]) -> tuple[str, int, int]:
    """TCT's own result: (json_text, tokens consumed, total tokens)."""
    json_text, consumed, total = self._mod.decode([int(i) for i in ids])
    return json_text, int(consumed), int(total)

  def decode_prefix(self, ids: Sequence[int]):
    """TCT's prefix decoder (for partial outputs) where the build has one."""
    fn = getattr(self._mod, "decode_prefix", None)
    if fn is None:
      raise NotImplementedError(f"{self.module_name} has no decode_prefix")
    return fn([int(i) for i in ids])


def tct_encode_chunk(json_texts: Sequence[str], module_name: str) -> list[list[int] | str]:
  """Encodes in a worker process; where TCT rejects a document, its message (a str) instead of
  ids, so the skip report can say why."""
  mod = import_tct(module_name)
  out = []
  for t in json_texts:
    try:
      out.append(list(mod.encode(t)))
    except Exception as e:  # noqa: BLE001 -- TCT raises its own types on schema-invalid input
      out.append(rejection_message(e))
  return out


def rejection_message(e: Exception) -> str:
  """One line (at most 300 characters) of what a tokenizer raised."""
  first = (str(e).strip().splitlines() or [""])[0]
  return f"{type(e).__name__}: {first}"[:300] if first else type(e).__name__


def unusable(tok, ids) -> str | None:
  """Why a document's ids (or the message of a tokenizer that refused it) are not usable; None
  when they are: TCT refused it, no ids, ids past the vocab, or PAD inside the content."""
  if isinstance(ids, str):
    return ids
  ids = np.asarray(ids, np.int64)
  if not ids.size:
    return "no tokens"
  hi, lo = int(ids.max()), int(ids.min())
  if hi >= tok.vocab_size or lo < 0:
    return f"token id {hi if hi >= tok.vocab_size else lo} outside the vocabulary"
  return f"the PAD id {tok.pad_id} inside the document" if (ids == tok.pad_id).any() else None


# ---------------------------------------------------------------------------------------- BPE


class BpeTokenizer:
  """Byte-level BPE (HF `tokenizers`), lossless: `decode(encode(text)) == text` for any text.

  The trained model holds at most `vocab_size - 1` tokens; `pad_id = vocab_size - 1` is not a
  token of the model, so no input text (not even "<pad>") can encode to it.
  """

  name = "bpe"

  def __init__(self, tok, vocab_size: int):
    import tokenizers

    if tok.get_vocab_size() > vocab_size - 1:
      raise TokenizerError(
        f"BPE model has {tok.get_vocab_size()} tokens; vocab_size {vocab_size} "
        "leaves no room for PAD"
      )
    self._tok = tok
    self.vocab_size = int(vocab_size)
    self.pad_id = self.vocab_size - 1
    self.version = f"bytelevel-bpe/tokenizers-{tokenizers.__version__}"

  @staticmethod
  def _empty():
    from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()  # no normalizer, no post-processor: bytes in, bytes out
    return tok

  @classmethod
  def train(
    cls,
    texts: Iterable[str],
    vocab_size: int = 8192,
    min_frequency: int = 2,
    show_progress: bool = False,
  ) -> "BpeTokenizer":
    """Trains on `texts` (the training split only); `vocab_size` includes PAD."""
    from tokenizers import pre_tokenizers, trainers

    if vocab_size < 258:
      raise TokenizerError(
        f"bpe_vocab_size {vocab_size} is too small (>= 258: 256 bytes + PAD + 1)"
      )
    tok = cls._empty()
    trainer = trainers.BpeTrainer(
      vocab_size=vocab_size - 1,
      min_frequency=min_frequency,
      show_progress=show_progress,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      special_tokens=[],
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return cls(tok, vocab_size)

  @classmethod
  def load(cls, path: str | pathlib.Path, vocab_size: int) -> "BpeTokenizer":
    from tokenizers import Tokenizer as HFTokenizer

    path = pathlib.Path(path)
    if not path.is_file():
      raise TokenizerError(f"BPE tokenizer file not found: {path} (rebuild the token cache)")
    return cls(HFTokenizer.from_file(str(path)), vocab_size)

  @classmethod
  def from_json(cls, text: str, vocab_size: int) -> "BpeTokenizer":
    from tokenizers import Tokenizer as HFTokenizer

    return cls(HFTokenizer.from_str(text), vocab_size)

  def save(self, path: str | pathlib.Path) -> None:
    self._tok.save(str(path))

  def to_json(self) -> str:
    return self._tok.to_str()

  def encode(self, text: str) -> list[int]:
    return self._tok.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """Parallel over threads in Rust (without offset tracking where the library can)."""
    fn = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
    return [e.ids for e in fn(list(texts), add_special_tokens=False)]

  def token_bytes(self) -> np.ndarray:
    """[vocab_size] int: each id's length in bytes (0 for PAD): byte-level tokens are strings of
    one character per byte, so a document's tokens locate its text exactly."""
    n = self._tok.get_vocab_size()
    return np.array(
      [len(self._tok.id_to_token(i)) for i in range(n)] + [0] * (self.vocab_size - n), np.int64
    )

  def decode(self, ids: Sequence[int]) -> str:
    """Ids outside the model (PAD) are dropped."""
    n = self._tok.get_vocab_size()
    return self._tok.decode([int(i) for i in ids if 0 <= int(i) < n], skip_special_tokens=False)


# ------------------------------------------------------------------------------------ factory


def resolve(name: str, tct_module: str = corpus.WORKFLOW_TCT) -> str:
  """ "auto" -> "tct" when the TCT module imports, else "bpe"; checks the name."""
  if name == "auto":
    try:
      importlib.import_module(tct_module)
      return "tct"
    except ImportError:
      return "bpe"
  if name not in ("tct", "bpe"):
    raise TokenizerError(f"unknown tokenizer {name!r}: use auto, tct or bpe (data.tokenizer)")
  return name


def make_tokenizer(
  name: str = "auto",
  *,
  tct_module: str = corpus.WORKFLOW_TCT,
  bpe_vocab_size: int = 8192,
  bpe_file: str | pathlib.Path | None = None,
  train_texts: Iterable[str] | None = None,
) -> Tokenizer:
  """A tokenizer by name. BPE loads `bpe_file` when it exists, else trains on `train_texts`."""
  name = resolve(name, tct_module)
  if name == "tct":
    return TctTokenizer(tct_module)
  if bpe_file is not None and pathlib.Path(bpe_file).is_file():
    return BpeTokenizer.load(bpe_file, bpe_vocab_size)
  if train_texts is None:
    raise TokenizerError(f"BPE tokenizer file not found: {bpe_file} and no texts to train on")
  return BpeTokenizer.train(train_texts, bpe_vocab_size)
