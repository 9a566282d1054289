"""Loading one document (fimjax.data.parse): the short path agrees with PyYAML's SafeConstructor."""

import pytest
import yaml

from fimjax.data import corpus, parse

SCALARS = """on:
  push: {branches: [main]}
ints: [0x1F, 0o17, 017, 1_000, -3, +4, 1:30, 0b101]
floats: [1.5, .inf, -.INF, .nan, 1e3, 6.8523015e+5, 1:30.5]
bools: [yes, No, on, OFF, true, False, y]
nulls: [~, null, '', ""]
strings: ['1', "true", 2026-12-03, 12:30:00, plain text, "quoted: yes"]
1: int key
2.5: float key
null: null key
tagged: [!!str 5, !!int "7"]
dup: first
dup: second
jobs:
  a:
    steps:
      - run: |
          echo "block"
      - with: {x: [1, [2, [3]]]}
"""
SLOW = [
  "base: &b {a: 1}\njobs:\n  x:\n    <<: *b\n    c: 2\n",  # alias and merge key
  "jobs: !!set {a, b}\n",
  "jobs: !!binary aGVsbG8=\n",
  "jobs: !custom x\n",  # an unknown tag: SafeConstructor refuses it
  "? [a, b]\n: c\njobs: 1\n",  # a collection as a key
  "jobs: " + "[" * 80 + "]" * 80 + "\n",  # deeper than the short path goes
  "=: value key\njobs: 1\n",
]


class _Reference(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):
  yaml_implicit_resolvers = parse._Loader.yaml_implicit_resolvers


def _reference(text):
  try:
    return repr(parse.fix_on(yaml.load(text, Loader=_Reference)))
  except yaml.YAMLError as e:
    return type(e).__name__


def _ours(text):
  try:
    return repr(parse.load_workflow(text))
  except yaml.YAMLError as e:
    return type(e).__name__


@pytest.mark.parametrize("text", [SCALARS, *SLOW], ids=["scalars", *map(str, range(len(SLOW)))])
def test_load_equals_safe_constructor(text):
  """Same object (types included: repr tells True from 1) or the same error class."""
  assert _ours(text) == _reference(text)


def test_short_path_takes_plain_trees_and_leaves_the_rest():
  loader = parse._Loader(SCALARS)
  assert repr(parse._build(loader, loader.get_single_node())) == repr(
    yaml.load(SCALARS, _Reference)
  )
  for text in SLOW:
    loader = parse._Loader(text)
    with pytest.raises(parse._Slow):
      parse._build(loader, loader.get_single_node())


def test_load_equals_safe_constructor_on_the_embedded_corpus():
  docs = corpus.read_corpus(["default"]).documents
  assert len(docs) > 1000
  for doc in docs:
    assert _ours(doc.text) == _reference(doc.text), doc.name
