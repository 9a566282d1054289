"""One document's text -> a Python object: YAML (libyaml's C parser when present) or JSON (with
comments and trailing commas for JSONC), the `on:` fix, and the guard against alias bombs.

Loading is most of a cache build's time, so the common case takes a short path: a document
without aliases, merge keys or unusual tags is built by `_build` (plain dicts, lists and
scalars through PyYAML's own scalar constructors); anything else goes through PyYAML's
SafeConstructor, and a test checks the two agree.
"""

import json
import re

import yaml

_STR, _SEQ, _MAP = (f"tag:yaml.org,2002:{t}" for t in ("str", "seq", "map"))
_SCALARS = {f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null")}
_MAX_DEPTH = 64  # deeper trees take SafeConstructor's (non-recursive) path
_RESOLVED: dict[str, str] = {}  # plain scalar -> its implicit tag (this process's memo)


class _Loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):
  """Safe YAML loader that keeps timestamps as strings (as GitHub does), so JSON can hold them."""

  def resolve(self, kind, value, implicit):
    """The resolver's answer, memoised: with no path resolvers, a plain scalar's tag depends on
    its text only (a quoted one is always a string), and workflows repeat their scalars."""
    if kind is not yaml.ScalarNode or self.yaml_path_resolvers:
      return super().resolve(kind, value, implicit)
    if not implicit[0]:
      return _STR
    tag = _RESOLVED.get(value)
    if tag is None:
      tag = super().resolve(kind, value, implicit)
      if len(_RESOLVED) < 100_000:
        _RESOLVED[value] = tag
    return tag


_Loader.yaml_implicit_resolvers = {
  k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
  for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Slow(Exception):
  """A node the short path leaves to SafeConstructor."""


def _build(loader, node, depth: int = 0):
  """SafeConstructor's result for a tree of plain mappings, lists and str/int/float/bool/null
  scalars (built by the loader's own scalar constructors), without its generator machinery;
  raises _Slow at anything else (merge keys, tags, sets, collections as keys, deep trees)."""
  cls, tag = type(node), node.tag
  if cls is yaml.ScalarNode:
    if tag == _STR:
      return node.value
    if tag in _SCALARS:
      return loader.yaml_constructors[tag](loader, node)
    raise _Slow
  if depth > _MAX_DEPTH:
    raise _Slow
  if cls is yaml.SequenceNode and tag == _SEQ:
    return [_build(loader, n, depth + 1) for n in node.value]
  if cls is yaml.MappingNode and tag == _MAP:
    out = {}
    for k, v in node.value:
      if type(k) is not yaml.ScalarNode:
        raise _Slow
      out[_build(loader, k)] = _build(loader, v, depth + 1)
    return out
  raise _Slow


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
    kids = (
      node.value
      if isinstance(node, yaml.SequenceNode)
      else [n for pair in node.value for n in pair]
      if isinstance(node, yaml.MappingNode)
      else []
    )
    if id(node) not in opened:
      opened.add(id(node))
      todo += [k for k in kids if id(k) not in size and id(k) not in opened]
      continue
    todo.pop()
    size[id(node)] = min(limit + 1, 1 + sum(size.get(id(k), 1) for k in kids))
  return size[id(root)]


# An alias (`*a`) needs an anchor (`&a`), each at the start of a token: at a line start or after
# a blank, a flow indicator or `:`. Globs, cron strings and `&&` in scripts match one of these,
# rarely both, so most texts skip the (slow) expanded-size walk.
_ANCHOR = re.compile(r"(?:^|[\s\[{,:])&[^\s,\[\]{}]", re.M)
_ALIAS = re.compile(r"(?:^|[\s\[{,:])\*[^\s,\[\]{}]", re.M)


def may_alias(text: str) -> bool:
  """False only when the YAML text has no alias (it may have one otherwise)."""
  return (
    "*" in text
    and "&" in text
    and _ALIAS.search(text) is not None
    and _ANCHOR.search(text) is not None
  )


def load_workflow(
  text: str,
  json_file: bool = False,
  max_nodes: int | None = None,
  jsonc: bool = False,
  on_node=None,
):
  """Loads a document (YAML, or JSON when `json_file`, with comments and trailing commas when
  `jsonc`) with the `on:` fix; raises on bad syntax, and TooLarge when the YAML has more than
  `max_nodes` nodes with its aliases expanded (a "billion laughs" file), checked before anything
  is built. `on_node(root)` sees the composed YAML before construction changes it (merge keys)."""
  if json_file:
    return fix_on(json.loads(strip_jsonc(text) if jsonc else text))
  loader = _Loader(text)
  try:
    node = loader.get_single_node()
    if node is None:
      return None
    aliases = may_alias(text)
    # Without aliases every node is written out, so nodes < bytes <= limit.
    if max_nodes is not None and aliases and expanded_size(node, max_nodes) > max_nodes:
      raise TooLarge(f"more than {max_nodes} YAML nodes with aliases expanded")
    if on_node is not None:
      on_node(node)
    if not aliases:
      try:
        return fix_on(_build(loader, node))
      except _Slow:
        pass
    return fix_on(loader.construct_document(node))
  finally:
    loader.dispose()


# A JSON string, a comment, or a comma that only blanks and comments keep from a closing bracket.
# Strings match first wherever they start, so `//` or `,]` inside one is never touched; the
# possessive quantifiers stop the look-ahead from ending a comment early to find a bracket in it.
_COMMENT = r"//[^\n]*+|/\*(?:[^*]|\*(?!/))*+\*/"
_JSONC = re.compile(rf'("(?:[^"\\\n]|\\.)*")|({_COMMENT})|,(?=(?:\s|{_COMMENT})*[}}\]])', re.S)


def strip_jsonc(text: str) -> str:
  """JSON with `//` and `/* */` comments and trailing commas (tsconfig style) -> JSON. Comments
  become spaces (their newlines kept), so a JSON error still points at the right line."""
  out, pos, last = [], 0, ""  # last: the last character of JSON before the match
  for m in _JSONC.finditer(text):
    gap = text[pos : m.start()]
    last = gap.rstrip()[-1:] or last
    pos = m.end()
    if m.group(1) is not None:
      out += [gap, m.group(1)]
      last = '"'
    elif m.group(2) is not None:
      out += [gap, re.sub(r"[^\n]", " ", m.group(2))]
    else:  # a comma after no value (`[,]`, `[1,,]`) is an error, not a trailing comma: kept
      out += [gap, "," if last in ("", "[", "{", ",") else " "]
      last = "," if last in ("", "[", "{", ",") else last
  out.append(text[pos:])
  return "".join(out)


def to_json(obj) -> str:
  """The JSON text tokenizers such as TCT take (raises ValueError/TypeError when impossible)."""
  return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
