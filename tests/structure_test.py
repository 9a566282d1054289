"""Structure marks of a document (fimjax.data.structure) and the holes cut from them."""

import numpy as np
import pytest

from fimjax.data import corpus, holes, rand, structure
from fimjax.data import tokenizers as tok_lib
from fimjax.data.cache import Documents

WORKFLOW = """name: CI
on: [push]
jobs:
  build:
    runs-on: ubuntu-latest   # a comment
    steps:
      - uses: actions/checkout@v4

      - name: Tëst ✓
        run: |
          make
          make test
"""


@pytest.fixture(scope="module")
def bpe():
  return tok_lib.BpeTokenizer.train([WORKFLOW] * 3 + ["jobs:\n  x: 1\n"], 320)


def marks(bpe, text):
  ids = bpe.encode(text)
  flags, span = structure.structure(text, bpe.token_bytes()[ids])
  return ids, flags, span


def holes_of(bpe, text, bit):
  ids, flags, span = marks(bpe, text)
  return [bpe.decode(ids[i : i + span[i]]) for i in np.flatnonzero(flags & bit)]


def test_values_steps_and_blocks_are_whole_nodes(bpe):
  assert holes_of(bpe, WORKFLOW, structure.VALUE) == [
    " CI",
    " [push]",
    " ubuntu-latest",
    " actions/checkout@v4",
    " Tëst ✓",
    " |\n          make\n          make test",
  ]
  assert holes_of(bpe, WORKFLOW, structure.STEP) == [
    "\n      - uses: actions/checkout@v4",
    "\n\n      - name: Tëst ✓\n        run: |\n          make\n          make test",
  ]
  tail = lambda key: WORKFLOW[WORKFLOW.index(key) :].rstrip()  # noqa: E731
  assert holes_of(bpe, WORKFLOW, structure.BLOCK) == [
    tail("\njobs:"),
    tail("\n  build:"),
    tail("\n    steps:"),
  ]


def test_lines_start_at_their_newline_and_blank_lines_are_no_holes(bpe):
  ids, flags, _ = marks(bpe, WORKFLOW)
  line = np.flatnonzero(flags & structure.LINE)
  text = np.flatnonzero(flags & structure.TEXT)
  pieces = [bpe.decode(ids[a:b]) for a, b in zip(line, list(line[1:]) + [len(ids)])]
  assert "".join(pieces) == WORKFLOW
  assert pieces[0] == "name: CI" and "\n    runs-on: ubuntu-latest   # a comment" in pieces
  written = [bpe.decode(ids[a : line[line > a][0] if (line > a).any() else len(ids)]) for a in text]
  assert all(w.strip() for w in written) and len(text) == WORKFLOW.strip().count("\n") + 1 - 1


def test_broken_yaml_keeps_line_marks_and_recursion_ends(bpe):
  ids, flags, span = marks(bpe, "a: [1\nb: 2\n")
  assert (flags & structure.LINE).sum() == 3 and not span.any()
  ids, flags, span = marks(bpe, "a: &x\n  - *x\n  - b: 1\n")  # a list that holds itself
  assert len(ids) == len(flags)


def test_token_bytes_must_cover_the_text(bpe):
  ids = bpe.encode(WORKFLOW)
  with pytest.raises(ValueError, match="bytes"):
    structure.structure(WORKFLOW + "x", bpe.token_bytes()[ids])


@pytest.mark.parametrize("kind", ["line", "value", "step", "block", "yaml"])
def test_vectorised_holes_equal_the_reference(bpe, kind):
  texts = [WORKFLOW, WORKFLOW.replace("CI", "Build and test"), "jobs:\n  x:\n    y: 1\n"]
  per_doc = [marks(bpe, t) for t in texts]
  docs = Documents.from_lists(
    [p[0] for p in per_doc], [p[1] for p in per_doc], [p[2] for p in per_doc]
  )
  n_ext = docs.lengths + 2
  d = np.repeat(np.arange(len(texts)), 12)
  rng = np.random.default_rng(0)
  start = np.array([rng.integers(0, n_ext[i] - 2) for i in d])
  n = np.array([rng.integers(2, n_ext[i] - s + 1) for i, s in zip(d, start)])
  lo = (start == 0).astype(np.int64)
  eos = start + n == n_ext[d]
  hi = n - eos
  keep = hi - lo >= 1
  d, start, n, lo, eos, hi = d[keep], start[keep], n[keep], lo[keep], eos[keep], hi[keep]
  k = np.full(len(d), holes.KINDS.index(kind))
  hp = rand.hash_u64(1, 0, np.arange(len(d)), rand.S_PICK)
  hl = rand.hash_u64(1, 0, np.arange(len(d)), rand.S_LINES)
  g, m, found = holes.structured_holes(docs, d, start, n, lo, hi, eos, k, hp, hl, 3)
  ext_flags = [np.concatenate([[0], p[1], [0]]) for p in per_doc]
  ext_span = [np.concatenate([[0], p[2], [0]]) for p in per_doc]
  assert found.any()  # some windows hold a hole of the kind (the rest fall back)
  for i in range(len(d)):
    w = slice(start[i], start[i] + n[i])
    ref = holes.hole_reference(
      ext_flags[d[i]][w],
      ext_span[d[i]][w],
      lo[i],
      hi[i],
      eos[i],
      k[i],
      hp[i : i + 1],
      hl[i : i + 1],
      3,
    )
    assert (ref is not None) == found[i]
    if ref is not None:
      assert (g[i], m[i]) == ref and lo[i] <= g[i] and g[i] + m[i] <= hi[i] and m[i] >= 1


TRICKY = [
  WORKFLOW,
  WORKFLOW.replace("\n", "\r\n"),
  "on: push\ndefaults: &d\n  run: {shell: bash}\njobs:\n  a:\n    <<: *d\n    steps:\n"
  "    - run: x\n    -   name: y   # spaced item\n  b: *d\n",
  'jobs: {"a": [1, &x "two", *x], b: {c: d}}\n',
  "jobs:\n\tbad: tab\n",
  "jobs:\n  a:\n    - - nested\n      - list\n    -\n      k: v\n  \"q\": 'é ✓'\n",
  "a: [1\nb: 2\n",
  "",
]


@pytest.mark.parametrize("i", range(len(TRICKY)))
def test_fast_structure_equals_the_reference(bpe, i):
  text = TRICKY[i]
  ids = bpe.encode(text)
  nb = bpe.token_bytes()[ids]
  ref = structure.structure(text, nb)
  nodes = structure.node_marks(text, structure.compose(text))
  for got in (structure.fast_structure(text, nb), structure.fast_structure(text, nb, nodes)):
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
  # The reader's nodes come from its own parse (before merge keys are expanded): the same.
  _, doc, _ = corpus.read_source(corpus.Source("x.yml", data=text.encode()), nodes=True)
  if doc is not None:
    np.testing.assert_array_equal(doc.nodes, nodes)
  if i == 2:  # aliases mark nothing (their node lies at the anchor); the spaced item is a step
    assert holes_of(bpe, text, structure.VALUE) == [" push", " {shell: bash}", " x", " y"]
    assert holes_of(bpe, text, structure.STEP) == ["\n    - run: x", "\n    -   name: y"]


def test_documents_marked_together_equal_each_alone(bpe):
  """fast_structures lays a chunk's documents end to end: no mark may cross into a neighbour
  (documents without a final newline, starting with one, blank, non-ASCII, in any order)."""
  texts = (
    TRICKY
    + ["\n", "x", "\n\n  - a\n", "é", "jobs:\n  a: 1"]
    + [d.text for d in corpus.read_corpus(["default"]).documents[:60]]
  )
  texts = [texts[i] for i in np.random.default_rng(0).permutation(len(texts))]
  nb = [bpe.token_bytes()[bpe.encode(t)] for t in texts]
  together = structure.fast_structures(texts, nb, [None] * len(texts))
  for text, b, got in zip(texts, nb, together):
    ref = structure.structure(text, b)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
