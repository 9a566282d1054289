"""A small YAML emitter that writes workflows the way people do (block style, `on:` unquoted).

Values are dicts, lists, str, int, bool and None. Two helpers carry formatting only:
`COMMENT` as a dict key holds `# ...` lines written before the next entry (before the `-` when
it is in a list item), and `Tail(value, text)` writes `key: value  # text`, `Q(text)` is always
quoted. `strip` removes both, giving the data that a YAML loader returns for the text.
"""

import dataclasses
import json
import re

import yaml

COMMENT = "__comment__"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLAIN_CACHE: dict[str, bool] = {}
_BAD_START = tuple("!&*{}[],#|>@`\"'%")
_FLOW_CHARS = re.compile(r"[,\[\]{}]")


@dataclasses.dataclass(frozen=True)
class Tail:
  """A scalar written with a trailing comment."""

  value: object
  comment: str


class Q(str):
  """A string that is always written quoted."""


@dataclasses.dataclass
class Style:
  """Per-document formatting choices."""

  indent_seq: bool = True  # `steps:\n  - run: x` (True) or `steps:\n- run: x` (False)
  quote: str = "'"  # quote character when a string needs (or gets) quotes
  quote_rate: float = 0.0  # chance to quote a string that would be fine plain
  flow_lists: float = 0.5  # chance to write a short list of scalars as `[a, b]`
  flow_space: bool = False  # `[ a, b ]` instead of `[a, b]`
  blank_steps: bool = False  # blank line between steps
  blank_top: bool = True  # blank line between top-level keys
  blank_jobs: bool = True  # blank line between jobs
  rand: object = None  # a random.Random for the per-value choices


def _plain_ok(s: str) -> bool:
  """Whether `s` can be written unquoted and read back as the same string."""
  ok = _PLAIN_CACHE.get(s)
  if ok is None:
    ok = (
      bool(s)
      and s == s.strip()
      and not s.startswith(_BAD_START)
      and ": " not in s
      and " #" not in s
      and not s.endswith(":")
      and "\n" not in s
      and "\t" not in s
    )
    if ok:
      try:
        ok = yaml.load("k: " + s, Loader=_Loader) == {"k": s}
      except yaml.YAMLError:
        ok = False
    if s[:1] in "-?:" and s[1:2] in ("", " "):
      ok = False
    _PLAIN_CACHE[s] = ok
  return ok


def _quoted(s: str, q: str) -> str:
  if q == "'" and "\\" not in s or '"' in s and "\\" not in s and "\n" not in s:
    return "'" + s.replace("'", "''") + "'"
  return json.dumps(s, ensure_ascii=False)


def scalar(v, st: Style, flow: bool = False) -> str:
  """One-line text of a scalar (strings quoted only when needed, or by the style's choice)."""
  if v is None:
    return "null"
  if isinstance(v, bool):
    return "true" if v else "false"
  if isinstance(v, (int, float)):
    return repr(v)
  s = str(v)
  need = not _plain_ok(s) or (flow and _FLOW_CHARS.search(s) is not None)
  if (
    need
    or isinstance(v, Q)
    or (st.quote_rate and st.rand.random() < st.quote_rate and "${{" not in s)
  ):
    return _quoted(s, st.quote)
  return s


def _flowable(v: list) -> bool:
  return (
    0 < len(v) <= 5
    and all(
      isinstance(x, (str, int, float)) and not isinstance(x, bool) and "\n" not in str(x) for x in v
    )
    and sum(len(str(x)) for x in v) < 60
  )


def _value_after_key(prefix: str, v, ind: int, st: Style, out: list[str]):
  """Write `prefix` (a `key:` or `-`) followed by the value `v` at indentation `ind`."""
  comment = ""
  if isinstance(v, Tail):
    v, comment = v.value, "  # " + v.comment
  if isinstance(v, str) and "\n" in v:
    body = v[:-1] if v.endswith("\n") else v
    out.append(prefix + (" |" if v.endswith("\n") else " |-") + comment)
    pad = " " * (ind + 2)
    out.extend(pad + line if line else "" for line in body.split("\n"))
  elif isinstance(v, dict) and v:
    if prefix.endswith("-"):  # list item: first key on the dash line
      sub: list[str] = []
      _map(v, ind + 2, st, sub, top=False)
      first = next(i for i, line in enumerate(sub) if not line.lstrip().startswith("#"))
      sub[first] = prefix + " " + sub[first][ind + 2 :]
      out.extend(sub)
    else:
      out.append(prefix + comment)
      _map(v, ind + 2, st, out, top=False)
  elif isinstance(v, list) and v:
    if _flowable(v) and st.rand.random() < st.flow_lists:
      inner = ", ".join(scalar(x, st, flow=True) for x in v)
      out.append(prefix + (" [ " + inner + " ]" if st.flow_space else " [" + inner + "]") + comment)
    else:
      out.append(prefix + comment)
      _seq(v, ind + 2 if st.indent_seq or prefix.endswith("-") else ind, st, out)
  elif v is None:
    out.append(prefix + comment)
  elif isinstance(v, (dict, list)):
    out.append(prefix + (" {}" if isinstance(v, dict) else " []") + comment)
  else:
    out.append(prefix + " " + scalar(v, st) + comment)


def _comment_lines(text: str, ind: int) -> list[str]:
  return [" " * ind + "# " + line if line else " " * ind + "#" for line in text.split("\n")]


def _map(d: dict, ind: int, st: Style, out: list[str], top: bool):
  pending = None
  for i, (k, v) in enumerate(d.items()):
    if k == COMMENT:
      pending = v
      continue
    if top and i and st.blank_top:
      out.append("")
    if pending:
      out.extend(_comment_lines(pending, ind))
      pending = None
    is_jobs = top and k == "jobs"
    if is_jobs and isinstance(v, dict):
      out.append(" " * ind + "jobs:")
      for j, (jk, jv) in enumerate(v.items()):
        if j and st.blank_jobs:
          out.append("")
        if isinstance(jv, dict) and COMMENT in jv:
          out.extend(_comment_lines(jv[COMMENT], ind + 2))
          jv = {kk: vv for kk, vv in jv.items() if kk != COMMENT}
        _value_after_key(" " * (ind + 2) + jk + ":", jv, ind + 2, st, out)
      continue
    _value_after_key(" " * ind + str(k) + ":", v, ind, st, out)


def _seq(items: list, ind: int, st: Style, out: list[str]):
  for i, item in enumerate(items):
    if isinstance(item, dict) and COMMENT in item:
      if i and st.blank_steps:
        out.append("")
      out.extend(_comment_lines(item[COMMENT], ind))
      item = {k: v for k, v in item.items() if k != COMMENT}
    elif i and st.blank_steps and isinstance(item, dict):
      out.append("")
    _value_after_key(" " * ind + "-", item, ind, st, out)


def emit(doc: dict, st: Style, header: str = "") -> str:
  """The YAML text of a workflow mapping."""
  out: list[str] = _comment_lines(header, 0) if header else []
  _map(doc, 0, st, out, top=True)
  return "\n".join(out) + "\n"


def strip(v):
  """The data a YAML loader returns for `emit(v)` (comments dropped, `on` as True)."""
  if isinstance(v, Tail):
    return strip(v.value)
  if isinstance(v, dict):
    return {(True if k == "on" else k): strip(x) for k, x in v.items() if k != COMMENT}
  if isinstance(v, list):
    return [strip(x) for x in v]
  return v
