"""Where users make holes: per-token structure marks of a document, computed once per cache build.

For a document's text and its tokens (with each token's length in bytes: a lossless tokenizer
such as the byte-level BPE), two arrays of the document's length:

  flags[i]  uint8 bits: LINE  a line starts at token i (the token holds the newline that ends
                              the line before, with nothing but whitespace before that newline
                              in the token; or i = 0): line holes end here;
                        TEXT  ... and that line is not blank: line holes start here;
                        VALUE a YAML value starts at token i (a scalar or a flow collection,
                              after `key:` or `- `, with the spaces before it);
                        STEP  a list item that is a mapping starts (a step, a matrix entry):
                              at its line's LINE token, so the hole is the whole item;
                        BLOCK a `key:` line whose value is a block collection starts (`with:`
                              and its lines, a job), at its line's LINE token.
  span[i]   for VALUE / STEP / BLOCK: the node's length in tokens (0 elsewhere, at most 65535).

A node's end is the end of its last scalar, so trailing newlines, comments and indentation stay
in the suffix. A node is marked only when both its ends are token boundaries; a token starts at
most one node (the first found wins). Documents that do not parse as YAML keep their LINE marks.
"""

import array
import bisect
from typing import Sequence

import numpy as np
import yaml

from fimjax.data import parse

LINE, VALUE, STEP, BLOCK, TEXT = 1, 2, 4, 8, 16
NODE_KINDS = {"value": VALUE, "step": STEP, "block": BLOCK}  # hole kind -> flag (span in `span`)
MAX_SPAN = 2**16 - 1
MAX_NODES = 100_000  # a document with more YAML nodes keeps only its line marks
_WS = np.zeros(256, bool)
_WS[list(b" \t\r\n\f\v")] = True


class _Loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):
  """Composes nodes only (no construction), so nothing is expanded: aliases stay one node."""

  _TAGS = {
    yaml.ScalarNode: "tag:yaml.org,2002:str",
    yaml.SequenceNode: "tag:yaml.org,2002:seq",
    yaml.MappingNode: "tag:yaml.org,2002:map",
  }

  def resolve(self, kind, value, implicit):  # pylint: disable=unused-argument
    """No tags are needed for marks: skips the implicit-tag regexes (a quarter of compose)."""
    return self._TAGS[kind]


class _Marks:
  """Maps character positions of the text to token indices (the boundary rules above)."""

  def __init__(self, text: str, token_bytes: np.ndarray):
    self.text = text
    data = np.frombuffer(text.encode("utf-8"), np.uint8)
    self.num_bytes = len(data)
    self.starts = np.concatenate([[0], np.cumsum(token_bytes, dtype=np.int64)])[:-1]
    if text.isascii():
      self.byte_of = None
    else:  # byte offset of each character (and of the end)
      widths = np.frombuffer(text.encode("utf-32-le"), np.uint32)
      widths = 1 + (widths >= 0x80) + (widths >= 0x800) + (widths >= 0x10000)
      self.byte_of = np.concatenate([[0], np.cumsum(widths)])
    self.nonws_before = np.concatenate([[0], np.cumsum(~_WS[data])])  # non-space bytes < b
    # Python lists for the per-node lookups below: bisect on a list is ~10x numpy on a scalar.
    self._starts, self._nonws = self.starts.tolist(), None

  def byte(self, c):
    return c if self.byte_of is None else self.byte_of[c]

  def at_start(self, c: int) -> int:
    """The token that starts exactly at character c (len(tokens) at the end), else -1."""
    b = int(self.byte(c))
    if b == self.num_bytes:
      return len(self._starts)
    i = bisect.bisect_left(self._starts, b)
    return i if i < len(self._starts) and self._starts[i] == b else -1

  def snap_one(self, c: int) -> int:
    """`snap` of one character, in plain Python."""
    if self._nonws is None:
      self._nonws = self.nonws_before.tolist()
    b = int(self.byte(c))
    i = bisect.bisect_right(self._starts, b) - 1
    return i if i >= 0 and self._nonws[b] == self._nonws[self._starts[i]] else -1

  def snap(self, c):
    """The token holding character(s) c when only whitespace lies between its start and c."""
    b = np.asarray(self.byte(c), np.int64)
    i = np.searchsorted(self.starts, b, side="right") - 1
    s = self.starts[np.maximum(i, 0)]
    ok = (i >= 0) & (self.nonws_before[b] == self.nonws_before[s])
    return np.where(ok, i, -1)

  def value_token(self, c: int) -> int:
    """The first token starting in the spaces before character c (or at c), else -1: a value
    hole takes the spaces after `key:` (BPE words carry their leading space)."""
    ws = c
    while ws > 0 and self.text[ws - 1] in " \t":
      ws -= 1
    i = bisect.bisect_left(self._starts, int(self.byte(ws)))
    return i if i < len(self._starts) and self._starts[i] <= self.byte(c) else -1

  def line_token(self, c: int, lead: str) -> int:
    """The LINE token of character c's line when the line before c is `lead` (a regex class of
    whitespace, or whitespace + "- "), else -1."""
    ls = self.text.rfind("\n", 0, c) + 1
    head = self.text[ls:c]
    if (lead == "key" and head.strip(" \t")) or (lead == "item" and head.strip(" \t") != "-"):
      return -1
    return 0 if ls == 0 else self.snap_one(ls - 1)


def _end(node, aliases: bool = True) -> int:
  """Character just after the node's last non-space character (of its last scalar if block).

  An alias is the anchored node itself (marks at the anchor, so such ends fail the checks), and a
  recursive one (`&a [*a]`) would loop: with `aliases`, the walk stops at a node seen before."""
  seen = set()
  while (
    isinstance(node, (yaml.MappingNode, yaml.SequenceNode))
    and not node.flow_style
    and node.value
    and not (aliases and id(node) in seen)
  ):
    if aliases:
      seen.add(id(node))
    last = node.value[-1]
    node = last[1] if isinstance(last, tuple) else last
  return node.end_mark.index


def _trim(text: str, start: int, end: int) -> int:
  while end > start and text[end - 1].isspace():
    end -= 1
  return end


def compose(text: str):
  """The document's YAML node tree (None when it does not parse: it keeps its line marks)."""
  try:
    return yaml.compose(text, Loader=_Loader)
  except (yaml.YAMLError, RecursionError, ValueError):
    return None


def node_marks(text: str, root) -> np.ndarray:
  """[k, 3] int32 (kind, at, end) per VALUE / STEP / BLOCK node of a composed document, in the
  order marks are tried: the node's hole starts at the token found from character `at` (the
  value, the item's `-` line, the key's line) and ends at character `end`. Tokenizer-free, so
  the cache build computes them while the reader has the document parsed (one parse, not two)."""
  aliases = parse.may_alias(text)  # without, the tree is a tree: no node is seen twice
  out, seen, todo, walked = array.array("i"), set(), [root] if root is not None else [], 0
  while todo and walked < MAX_NODES:
    node = todo.pop()
    if aliases:
      if id(node) in seen:
        continue
      seen.add(id(node))
    if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
      continue
    walked += 1
    pairs = node.value if isinstance(node, yaml.MappingNode) else [(None, v) for v in node.value]
    block = not node.flow_style
    for key, value in pairs:
      leaf = isinstance(value, yaml.ScalarNode) or value.flow_style
      start = value.start_mark.index
      end = value.end_mark.index if leaf else _end(value, aliases)
      if end > start and text[end - 1].isspace():  # a block scalar's trailing newlines
        end = _trim(text, start, end)
      if leaf and end > start:
        out.extend((VALUE, start, end))
      elif block and key is None and isinstance(value, yaml.MappingNode):
        out.extend((STEP, start, end))
      elif block and key is not None:
        out.extend((BLOCK, key.start_mark.index, end))
      if not leaf:
        todo.append(value)
  return np.frombuffer(out, np.int32).reshape(-1, 3)


def _line_marks(m: _Marks, text: str, flags: np.ndarray) -> None:
  """Sets LINE and TEXT (see the module docstring)."""
  newlines = (
    np.array([i for i, ch in enumerate(text) if ch == "\n"], np.int64)
    if not text.isascii()
    else np.flatnonzero(np.frombuffer(text.encode(), np.uint8) == 10)
  )
  lines = m.snap(newlines) if len(newlines) else np.zeros(0, np.int64)
  flags[lines[lines >= 0]] |= LINE
  flags[0] |= LINE
  # A line has text when a non-space byte lies between its newline and the next one.
  line_start_b = np.concatenate([[0], m.byte(newlines + 1)]).astype(np.int64)
  line_end_b = np.concatenate([m.byte(newlines), [m.num_bytes]]).astype(np.int64)
  has_text = m.nonws_before[line_end_b] > m.nonws_before[line_start_b]
  tok = np.concatenate([[0], lines])
  flags[tok[has_text & (tok >= 0)]] |= TEXT


def _start(text: str, token_bytes) -> tuple[_Marks | None, np.ndarray, np.ndarray]:
  token_bytes = np.asarray(token_bytes, np.int64)
  n = len(token_bytes)
  flags, span = np.zeros(n, np.uint8), np.zeros(n, np.uint16)
  if n == 0:
    return None, flags, span
  m = _Marks(text, token_bytes)
  if token_bytes.sum() != m.num_bytes:
    raise ValueError(f"tokens cover {token_bytes.sum()} bytes, the text has {m.num_bytes}")
  _line_marks(m, text, flags)
  return m, flags, span


def structure(text: str, token_bytes, nodes: np.ndarray | None = None):
  """(flags uint8 [n], span uint16 [n]) of a document's n tokens; `token_bytes[i]` is token i's
  length in bytes (they add up to the UTF-8 text). `nodes`: the text's `node_marks` if known
  (else the text is parsed here). The readable reference: one node at a time; `fast_structure`
  is the vectorised twin the cache build uses."""
  m, flags, span = _start(text, token_bytes)
  if m is None:
    return flags, span
  for kind, at, end in node_marks(text, compose(text)) if nodes is None else nodes:
    tok = (
      m.value_token(at) if kind == VALUE else m.line_token(at, "item" if kind == STEP else "key")
    )
    b = m.at_start(end)
    if tok < 0 or b <= tok or span[tok]:
      continue  # not at token boundaries, or the token already starts a node
    flags[tok] |= kind
    span[tok] = min(b - tok, MAX_SPAN)
  return flags, span


def fast_structure(text: str, token_bytes, nodes: np.ndarray | None = None):
  """`structure`, with every node's tokens looked up at once (numpy)."""
  return fast_structures([text], [token_bytes], [nodes])[0]


def fast_structures(texts: Sequence[str], token_bytes: Sequence, nodes: Sequence) -> list:
  """`structure` of several documents (`nodes[k]` None: parsed here), laid end to end so that a
  few dozen numpy calls mark them all: the cache build's hot path, one call per chunk."""
  nodes = [node_marks(t, compose(t)) if n is None else n for t, n in zip(texts, nodes)]
  tb = [np.asarray(b, np.int64) for b in token_bytes]
  tok_off = np.concatenate([[0], np.cumsum([len(b) for b in tb])]).astype(np.int64)
  char_off = np.concatenate([[0], np.cumsum([len(t) for t in texts])]).astype(np.int64)
  text = "".join(texts)
  data = np.frombuffer(text.encode("utf-8"), np.uint8)
  if text.isascii():
    codes, byte_of = data, None
  else:
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    widths = 1 + (codes >= 0x80) + (codes >= 0x800) + (codes >= 0x10000)
    byte_of = np.concatenate([[0], np.cumsum(widths)])
  byte = (lambda c: c) if byte_of is None else (lambda c: byte_of[c])
  byte_off = byte(char_off)
  cum = np.concatenate([[0], np.cumsum(np.concatenate([[0], *tb]))[1:]]).astype(np.int64)
  covered, need = cum[tok_off[1:]] - cum[tok_off[:-1]], np.diff(byte_off)
  for k in np.flatnonzero(covered != need)[:1]:
    raise ValueError(f"tokens cover {covered[k]} bytes, the text has {need[k]}")
  num, starts = int(tok_off[-1]), cum  # starts[i]: byte where token i starts; starts[num]: end
  flags, span = np.zeros(num, np.uint8), np.zeros(num, np.uint16)
  nonws = np.concatenate([[0], np.cumsum(~_WS[data])])

  def snap(b):  # the token holding byte b when only whitespace lies between its start and b
    i = np.searchsorted(starts[:num], b, side="right") - 1
    return np.where((i >= 0) & (nonws[b] == nonws[starts[np.maximum(i, 0)]]), i, -1)

  # Lines: a record per document start and per newline, in text order (a document's start
  # before its first newline); each line runs to the next record of its document.
  newline = np.flatnonzero(codes == 10)
  docs = np.flatnonzero(np.diff(tok_off) > 0)
  order = np.argsort(np.concatenate([2 * char_off[docs] - 1, 2 * newline]), kind="stable")
  rec_doc = np.concatenate([docs, np.searchsorted(char_off, newline, side="right") - 1])[order]
  nl_b = byte(newline)
  rec_start = np.concatenate([byte_off[docs], byte(newline + 1)])[order]
  rec_tok = np.concatenate([tok_off[docs], snap(nl_b)])[order]
  rec_nl = np.concatenate([np.zeros(len(docs), np.int64), nl_b])[order]
  same = np.append(rec_doc[1:] == rec_doc[:-1], False)
  rec_end = np.where(same, np.append(rec_nl[1:], 0), byte_off[rec_doc + 1])
  has_text = nonws[rec_end] > nonws[rec_start]
  flags[rec_tok[rec_tok >= 0]] |= LINE
  flags[rec_tok[has_text & (rec_tok >= 0)]] |= TEXT

  # Nodes: value_token, line_token and at_start of every node at once.
  node_doc = np.repeat(np.arange(len(texts)), [len(n) for n in nodes])
  if not len(node_doc):
    return [(flags[a:b], span[a:b]) for a, b in zip(tok_off[:-1], tok_off[1:])]
  kind, at, end = np.concatenate([np.asarray(n, np.int64).reshape(-1, 3) for n in nodes]).T
  doc_start = char_off[node_doc]
  at, end = at + doc_start, end + doc_start
  blank = (codes == 32) | (codes == 9)
  # prev[c]: the last character before c that is not a space or tab (-1: none).
  prev = np.concatenate([[-1], np.maximum.accumulate(np.where(blank, -1, np.arange(len(codes))))])
  solid = np.concatenate([[0], np.cumsum(~blank)])  # non-blank characters before c
  # VALUE: the first token starting in the blanks before the value (or at it).
  i = np.searchsorted(starts, byte(np.maximum(prev[at] + 1, doc_start)), side="left")
  value_tok = np.where((i < num) & (starts[i] <= byte(at)), i, -1)
  # STEP / BLOCK: the line's LINE token when only "-" (STEP) or nothing (BLOCK) precedes `at`.
  before = np.searchsorted(newline, at, side="left")
  line_start = np.maximum(np.where(before > 0, newline[before - 1] + 1, 0), doc_start)
  head = solid[at] - solid[line_start]
  dash = (head == 1) & (codes[np.maximum(prev[at], 0)] == ord("-"))
  line_ok = np.where(kind == STEP, dash, head == 0)
  line_tok = np.where(
    line_start == doc_start, tok_off[node_doc], snap(byte(np.maximum(line_start - 1, 0)))
  )
  tok = np.where(kind == VALUE, value_tok, np.where(line_ok, line_tok, -1))
  # The token starting exactly at `end` (the next document's first at a document's end).
  b_end = byte(end)
  i = np.searchsorted(starts, b_end, side="left")
  b = np.where(starts[np.minimum(i, num)] == b_end, i, -1)
  ok = (tok >= 0) & (b > tok)
  tok, b, kind = tok[ok], b[ok], kind[ok]
  _, first = np.unique(tok, return_index=True)  # the first node tried at a token wins
  tok, b, kind = tok[first], b[first], kind[first]
  flags[tok] |= kind.astype(np.uint8)
  span[tok] = np.minimum(b - tok, MAX_SPAN)
  return [(flags[a:b], span[a:b]) for a, b in zip(tok_off[:-1], tok_off[1:])]
