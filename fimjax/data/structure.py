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

import bisect

import numpy as np
import yaml

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


def _end(node) -> int:
  """Character just after the node's last non-space character (of its last scalar if block).

  An alias is the anchored node itself (marks at the anchor, so such ends fail the checks), and a
  recursive one (`&a [*a]`) would loop: the walk stops at a node seen before."""
  seen = set()
  while (
    isinstance(node, (yaml.MappingNode, yaml.SequenceNode))
    and not node.flow_style
    and node.value
    and id(node) not in seen
  ):
    seen.add(id(node))
    last = node.value[-1]
    node = last[1] if isinstance(last, tuple) else last
  return node.end_mark.index


def _trim(text: str, start: int, end: int) -> int:
  while end > start and text[end - 1].isspace():
    end -= 1
  return end


def structure(text: str, token_bytes) -> tuple[np.ndarray, np.ndarray]:
  """(flags uint8 [n], span uint16 [n]) of a document's n tokens; `token_bytes[i]` is token i's
  length in bytes (they add up to the UTF-8 text)."""
  token_bytes = np.asarray(token_bytes, np.int64)
  n = len(token_bytes)
  flags, span = np.zeros(n, np.uint8), np.zeros(n, np.uint16)
  if n == 0:
    return flags, span
  m = _Marks(text, token_bytes)
  if token_bytes.sum() != m.num_bytes:
    raise ValueError(f"tokens cover {token_bytes.sum()} bytes, the text has {m.num_bytes}")
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

  def mark(kind, tok, end_char):
    b = m.at_start(end_char)
    if tok < 0 or b <= tok or span[tok]:
      return
    flags[tok] |= kind
    span[tok] = min(b - tok, MAX_SPAN)

  try:
    root = yaml.compose(text, Loader=_Loader)
  except (yaml.YAMLError, RecursionError, ValueError):
    return flags, span
  seen, todo = set(), [root] if root is not None else []
  while todo and len(seen) < MAX_NODES:
    node = todo.pop()
    if id(node) in seen or not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
      continue
    seen.add(id(node))
    pairs = node.value if isinstance(node, yaml.MappingNode) else [(None, v) for v in node.value]
    block = not node.flow_style
    for key, value in pairs:
      leaf = isinstance(value, yaml.ScalarNode) or value.flow_style
      start, end = value.start_mark.index, _trim(text, value.start_mark.index, _end(value))
      if leaf and end > start:
        mark(VALUE, m.value_token(start), end)
      elif block and key is None and isinstance(value, yaml.MappingNode):
        mark(STEP, m.line_token(start, "item"), end)
      elif block and key is not None:
        mark(BLOCK, m.line_token(key.start_mark.index, "key"), end)
      if not leaf:
        todo.append(value)
  return flags, span
