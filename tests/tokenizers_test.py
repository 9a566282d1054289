"""Tokenizers: lossless BPE on every parsable shared file; the TCT adapter against a fake module."""

import json
import sys
import types

import pytest
import yaml

from fimjax.data import parse
from fimjax.data import tokenizers as T

TRICKY = [
  "",
  " ",
  "\n",
  "a\r\nb\r\n",
  "\ttab\t\n",
  "  trailing  \n\n\n",
  "\ufeffname: bom\n",
  "name: caf\u00e9 \u65e5\u672c \U0001f680\n",
  "x\x00y\x7f",
  "<pad> <|endoftext|> <s></s>",
  "on:\n  push:\n    branches: [ main ]\njobs:\n  a:\n    steps:\n      - run: |\n          echo hi  \n",
]


@pytest.fixture(scope="session")
def parsable_texts(shared_workflows):
  """Text of every shared file that YAML loads (workflows or not)."""
  texts = []
  for p in sorted((shared_workflows / "raw").rglob("*")):
    if p.suffix in (".yml", ".yaml"):
      text = p.read_bytes().decode("utf-8")
      try:
        parse.load_workflow(text)
      except yaml.YAMLError:
        continue
      texts.append(text)
  assert len(texts) == 1258  # MANIFEST: parse_ok=yes
  return texts


@pytest.fixture(scope="session")
def bpe(parsable_texts):
  return T.BpeTokenizer.train(parsable_texts, 8192)


def test_bpe_contract(bpe, parsable_texts):
  assert (bpe.name, bpe.vocab_size, bpe.pad_id) == ("bpe", 8192, 8191)
  assert bpe._tok.get_vocab_size() == 8191  # the corpus fills the vocab; PAD is the id after it
  ids = bpe.encode_batch(parsable_texts)
  flat = [i for x in ids for i in x]
  assert min(flat) >= 0 and max(flat) < bpe.pad_id
  assert sum(map(len, parsable_texts)) / len(flat) > 3.0  # it did learn merges (bytes/token)


def test_bpe_round_trips_every_parsable_file(bpe, parsable_texts):
  ids = bpe.encode_batch(parsable_texts)
  bad = [i for i, (t, x) in enumerate(zip(parsable_texts, ids)) if bpe.decode(x) != t]
  assert not bad
  assert ids == [bpe.encode(t) for t in parsable_texts]


@pytest.mark.parametrize("text", TRICKY)
def test_bpe_round_trips_tricky_text(bpe, text):
  ids = bpe.encode(text)
  assert bpe.decode(ids) == text
  assert bpe.pad_id not in ids
  assert bpe.decode(ids + [bpe.pad_id, bpe.pad_id]) == text  # PAD decodes to nothing


def test_bpe_save_load_and_small_vocab(bpe, tmp_path, parsable_texts):
  bpe.save(tmp_path / "tok.json")
  again = T.make_tokenizer("bpe", bpe_file=tmp_path / "tok.json", bpe_vocab_size=8192)
  assert again.encode(parsable_texts[0]) == bpe.encode(parsable_texts[0])
  small = T.BpeTokenizer.train(parsable_texts[:50], 300)
  assert (small.vocab_size, small.pad_id) == (300, 299)
  for t in parsable_texts[:50] + TRICKY:
    x = small.encode(t)
    assert small.decode(x) == t and (not x or max(x) < 299)
  with pytest.raises(T.TokenizerError, match="PAD"):
    T.BpeTokenizer.load(tmp_path / "tok.json", 8191)
  with pytest.raises(T.TokenizerError, match="not found"):
    T.make_tokenizer("bpe", bpe_file=tmp_path / "missing.json")


def _fake_tct(with_pad=True, version="1.2.3"):
  """A module with TCT's API: ids are the JSON's bytes; schema check = needs `on` and `jobs`."""
  m = types.ModuleType("fake_tct")
  m.seen = []

  def encode(json_str):
    obj = json.loads(json_str)  # raises on non-JSON, as TCT would
    if not isinstance(obj, dict) or "on" not in obj or "jobs" not in obj:
      raise ValueError("schema-invalid")
    m.seen.append(json_str)
    return list(json_str.encode("utf-8"))

  def decode(tokens):
    data = bytes(t for t in tokens if t < 256)
    return data.decode("utf-8", "replace"), len(data), len(tokens)

  m.encode, m.decode, m.vocab_size = encode, decode, lambda: 8192
  m.decode_prefix = lambda tokens: decode(tokens)[0]
  m.__version__ = version
  if with_pad:
    m.pad_token = lambda: 8191
  return m


@pytest.fixture
def fake_tct(monkeypatch):
  m = _fake_tct()
  monkeypatch.setitem(sys.modules, "fake_tct", m)
  return m


def test_tct_adapter(fake_tct):
  tok = T.make_tokenizer("tct", tct_module="fake_tct")
  assert isinstance(tok, T.TctTokenizer)
  assert (tok.name, tok.vocab_size, tok.pad_id, tok.version) == (
    "tct",
    8192,
    8191,
    "fake_tct-1.2.3",
  )
  ids = tok.encode("name: x\non:\n  push: {}\njobs: {}\n")  # YAML -> JSON with the on: fix
  assert fake_tct.seen[-1] == '{"name":"x","on":{"push":{}},"jobs":{}}'
  assert json.loads(tok.decode(ids)) == {"name": "x", "on": {"push": {}}, "jobs": {}}
  assert tok.decode_full(ids) == (fake_tct.seen[-1], len(ids), len(ids))
  assert tok.decode_prefix(ids[:5]) == fake_tct.seen[-1][:5]
  assert tok.encode('{"on": "push", "jobs": {"a": 1}}') == list(b'{"on":"push","jobs":{"a":1}}')
  assert tok.encode_batch(['{"on": 1, "jobs": 2}']) == [list(b'{"on":1,"jobs":2}')]
  with pytest.raises(ValueError, match="schema-invalid"):
    tok.encode("name: no jobs\n")


def test_tct_encode_chunk_marks_rejections(fake_tct):
  out = T.tct_encode_chunk(['{"on":1,"jobs":2}', '{"jobs":2}', "not json"], module_name="fake_tct")
  assert out[0] == list(b'{"on":1,"jobs":2}')
  assert out[1] == "ValueError: schema-invalid" and out[2].startswith("JSONDecodeError: ")


def test_unusable_says_why():
  tok = types.SimpleNamespace(vocab_size=10, pad_id=9)
  assert T.unusable(tok, [1, 2]) is None
  assert T.unusable(tok, "ValueError: schema-invalid") == "ValueError: schema-invalid"
  assert T.unusable(tok, []) == "no tokens"
  assert T.unusable(tok, [1, 12]) == "token id 12 outside the vocabulary"
  assert T.unusable(tok, [1, 9]) == "the PAD id 9 inside the document"
  assert T.rejection_message(ValueError("bad\nmore")) == "ValueError: bad"


def test_tct_without_pad_token(monkeypatch):
  m = _fake_tct(with_pad=False)
  m.vocab_size = lambda: 1000
  monkeypatch.setitem(sys.modules, "fake_tct", m)
  assert T.TctTokenizer("fake_tct").pad_id == 999
  del m.decode_prefix
  with pytest.raises(NotImplementedError):
    T.TctTokenizer("fake_tct").decode_prefix([1])


def test_tct_missing_says_how_to_install():
  with pytest.raises(T.TokenizerError) as e:
    T.make_tokenizer("tct", tct_module="no_such_tct_module")
  msg = str(e.value)
  assert "\n" not in msg and "no_such_tct_module" in msg
  assert "pip install /path/to/tct_github_workflow-*.whl" in msg and "tokenizer=bpe" in msg


def test_resolve(fake_tct):
  assert T.resolve("auto", "fake_tct") == "tct"
  assert T.resolve("auto", "no_such_tct_module") == "bpe"
  assert T.resolve("bpe", "fake_tct") == "bpe"
  with pytest.raises(T.TokenizerError, match="auto, tct or bpe"):
    T.resolve("gpt2")
  assert isinstance(
    T.make_tokenizer(
      "auto", tct_module="no_such_tct_module", train_texts=["on: push\n"] * 3, bpe_vocab_size=300
    ),
    T.BpeTokenizer,
  )
