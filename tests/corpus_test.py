"""Corpus reader: skip reasons (checked against the shared corpus' manifest), on: fix, dedup."""

import csv
import json
import pathlib
import time

import pytest
import yaml

from fimjax.data import corpus, parse

WF = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo {}\n"


@pytest.fixture(scope="session")
def manifest(shared_workflows):
  with open(shared_workflows / "MANIFEST.tsv", encoding="utf-8") as f:
    return {str(shared_workflows / r["file"]): r for r in csv.DictReader(f, delimiter="\t")}


@pytest.fixture(scope="session")
def shared_corpus(shared_workflows):
  return corpus.read_corpus([str(shared_workflows)])


def test_shared_corpus_counts(shared_corpus, manifest):
  c = shared_corpus
  assert c.num_inputs == len(manifest) == 1269  # README/TSV/licence files are not inputs
  assert corpus.skip_counts(c.skipped) == {
    "empty": 4,
    "yaml_error": 11,
    "not_mapping": 1,
    "not_workflow": 6,
    "not_json": 2,
  }
  assert len(c.documents) == 1245
  assert corpus.summary(c.num_inputs, len(c.documents), c.skipped) == (
    "kept 1245 of 1269; skipped: empty 4, yaml_error 11, not_mapping 1, not_workflow 6, not_json 2"
  )
  assert len({d.sha256 for d in c.documents}) == len(c.documents)


def test_shared_corpus_reasons_match_manifest(shared_corpus, manifest):
  reason = {s["file"]: s["reason"] for s in shared_corpus.skipped}
  kept = {d.name: d for d in shared_corpus.documents}
  assert set(reason) | set(kept) == set(manifest) and not set(reason) & set(kept)
  for f, r in manifest.items():
    if r["parse_ok"] == "no":
      assert reason[f] == "yaml_error", f
    elif r["top_mapping"] == "no":
      assert reason[f] in ("empty", "not_mapping"), f
    elif r["json_ok"] == "no":
      assert reason[f] == "not_json", f
    if f in kept:
      assert r["parse_ok"] == r["json_ok"] == r["top_mapping"] == "yes", f
      assert kept[f].sha256 == r["sha256"]
      assert kept[f].text.encode("utf-8") == pathlib.Path(f).read_bytes()
  # Every real workflow/template that loads as a mapping is kept (they all have jobs).
  real = [
    f
    for f, r in manifest.items()
    if r["kind"] in ("workflow", "template") and r["json_ok"] == "yes" and r["top_mapping"] == "yes"
  ]
  assert real and all(f in kept or reason[f] == "empty" for f in real)


def test_shared_corpus_on_fix(shared_corpus, manifest):
  for d in shared_corpus.documents:
    obj = json.loads(d.json_text)
    assert "true" not in obj, d.name
    if manifest[d.name]["on_is_bool"] == "yes":
      assert "on" in obj, d.name


def test_on_fix():
  assert corpus.load_workflow("on: push\njobs: {}\n") == {"on": "push", "jobs": {}}
  assert corpus.load_workflow('"on": [push]\njobs: {}\n') == {"on": ["push"], "jobs": {}}
  assert list(corpus.load_workflow("name: x\non: push\njobs: {}\n")) == ["name", "on", "jobs"]
  assert corpus.load_workflow('{"on": "push", "jobs": {}}', json_file=True)["on"] == "push"
  # A nested `on` is a value of some other key, not the trigger: left alone.
  assert corpus.load_workflow("jobs:\n  a:\n    with:\n      on: 1\n")["jobs"]["a"]["with"] == {
    True: 1
  }
  # Dates stay strings so the workflow still serialises to JSON.
  obj = corpus.load_workflow("on: push\njobs: {}\nenv:\n  D: 2024-01-02\n")
  assert obj["env"]["D"] == "2024-01-02" and corpus.to_json(obj)


def _write(root: pathlib.Path, name: str, data) -> pathlib.Path:
  p = root / name
  p.parent.mkdir(parents=True, exist_ok=True)
  p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
  return p


def test_every_skip_reason(tmp_path, shared_schema):
  _write(tmp_path, "a_ok.yml", WF.format(1))
  _write(tmp_path, "b_dup.yaml", WF.format(1))
  _write(tmp_path, "c_not_utf8.yml", b"on: push\njobs: {a: \xff}\n")
  _write(tmp_path, "d_empty.yml", "\n  \n")
  _write(tmp_path, "e_comment.yml", "# on: push\n")
  _write(tmp_path, "f_bad.yml", "on: [push\njobs: {}\n")
  _write(tmp_path, "g_list.yml", "- on\n- jobs\n")
  _write(tmp_path, "h_nojobs.yml", "on: push\nname: x\n")
  _write(tmp_path, "i_bad.json", '{"on": "push", "jobs": ')
  _write(
    tmp_path,
    "j_ok.json",
    json.dumps({"on": "push", "jobs": {"a": {"runs-on": "x", "steps": [{"run": "y"}]}}}),
  )
  _write(tmp_path, "k_recursive.yml", "on: push\njobs: &a\n  x: *a\n")
  _write(tmp_path, "l_big.yml", WF.format("x" * 5000))
  _write(tmp_path, "m_schema.yml", "on: push\njobs:\n  a:\n    runs-on: 1\n    steps: 7\n")
  _write(tmp_path, "sub/.github/workflows/n_ok.yaml", WF.format(2))
  _write(tmp_path, "notes.txt", WF.format(3))  # not a workflow suffix: not an input
  (tmp_path / "o_dangling.yml").symlink_to(tmp_path / "missing")
  _write(tmp_path, "cache/.fimjax-cache", "")
  _write(tmp_path, "cache/meta.json", "{}")  # inside a token cache: never an input
  before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

  c = corpus.read_corpus(
    [str(tmp_path)], max_file_bytes=2000, schema_check=True, schema_path=str(shared_schema)
  )
  got = {pathlib.Path(s["file"]).name: s["reason"] for s in c.skipped}
  assert got == {
    "b_dup.yaml": "duplicate",
    "c_not_utf8.yml": "not_utf8",
    "d_empty.yml": "empty",
    "e_comment.yml": "empty",
    "f_bad.yml": "yaml_error",
    "g_list.yml": "not_mapping",
    "h_nojobs.yml": "not_workflow",
    "i_bad.json": "json_error",
    "k_recursive.yml": "not_json",
    "l_big.yml": "too_large",
    "m_schema.yml": "schema_invalid",
    "o_dangling.yml": "unreadable",
  }
  assert [pathlib.Path(d.name).name for d in c.documents] == ["a_ok.yml", "j_ok.json", "n_ok.yaml"]
  assert c.num_inputs == 15
  assert before == {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
  # Without the schema check the schema-invalid file is kept.
  c2 = corpus.read_corpus([str(tmp_path)], max_file_bytes=2000)
  assert "m_schema.yml" in [pathlib.Path(d.name).name for d in c2.documents]


def _laughs(levels: int) -> str:
  """A YAML "billion laughs": 9**levels strings once its aliases are expanded, in ~400 bytes."""
  rows = ["on: push", "l0: &l0 [" + ",".join(["lol"] * 9) + "]"]
  rows += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
  return "\n".join(rows + [f"jobs: {{a: {{steps: *l{levels - 1}}}}}", ""])


def test_alias_bombs_are_too_large_and_skipped_quickly(tmp_path):
  _write(tmp_path, "a_laughs9.yml", _laughs(9))
  _write(tmp_path, "b_laughs10.yml", _laughs(10))
  _write(
    tmp_path,
    "c_aliases.yml",
    "on: push\ndefaults: &d {run: {shell: bash}}\njobs:\n"
    "  a: {runs-on: x, defaults: *d, steps: [{run: y}]}\n  b: {runs-on: x, defaults: *d}\n",
  )
  t0 = time.perf_counter()
  c = corpus.read_corpus([str(tmp_path)], num_proc=1)
  assert time.perf_counter() - t0 < 5
  assert len(_laughs(9)) < 500
  assert [(pathlib.Path(s["file"]).name, s["reason"]) for s in c.skipped] == [
    ("a_laughs9.yml", "too_large"),
    ("b_laughs10.yml", "too_large"),
  ]
  assert corpus.skip_counts(c.skipped)["too_large"] == 2
  [doc] = c.documents
  assert json.loads(doc.json_text)["jobs"]["b"]["defaults"] == {"run": {"shell": "bash"}}
  # 4 levels (6561 strings) is a document like any other, under a limit that allows it
  assert corpus.read_source(corpus.Source("x.yml", data=_laughs(4).encode()))[2] is None
  assert (
    corpus.read_source(corpus.Source("x.yml", data=_laughs(4).encode()), 5000)[2] == "too_large"
  )


def test_explicit_files_and_order(tmp_path):
  a = _write(tmp_path, "z.yml", WF.format(1))
  b = _write(tmp_path, "workflow.txt", WF.format(2))  # named explicitly: read whatever its suffix
  c = corpus.read_corpus([str(a), str(b), str(a)])
  assert [d.name for d in c.documents] == [str(a), str(b)]
  assert c.skipped == [{"file": str(a), "reason": "duplicate"}]


def test_errors(tmp_path, monkeypatch):
  with pytest.raises(corpus.CorpusError, match="input not found: .*nope"):
    corpus.read_corpus([str(tmp_path / "nope")])
  _write(tmp_path, "bad.yml", "on: [")
  with pytest.raises(corpus.CorpusError, match="no usable workflow.*yaml_error 1"):
    corpus.read_corpus([str(tmp_path)])
  monkeypatch.chdir(tmp_path)  # the bundled schema is found from anywhere
  assert corpus.find_schema("") == corpus.BUNDLED_SCHEMA and corpus.BUNDLED_SCHEMA.is_file()
  with pytest.raises(corpus.CorpusError, match="not found: /x.json .*--schema"):
    corpus.find_schema("/x.json")


def test_fingerprint(tmp_path):
  _write(tmp_path, "a.yml", WF.format(1))
  f1 = corpus.fingerprint([str(tmp_path)])
  assert f1 == corpus.read_corpus([str(tmp_path)]).fingerprint
  other = tmp_path.parent / (tmp_path.name + "_copy")
  _write(other, "a.yml", WF.format(1))
  assert corpus.fingerprint([str(other)]) == f1  # content, not location
  _write(tmp_path, "a.yml", WF.format(2))
  assert corpus.fingerprint([str(tmp_path)]) != f1


def test_parallel_equals_serial(shared_workflows):
  kw = dict(max_file_bytes=10_000)
  a = corpus.read_corpus([str(shared_workflows / "raw" / "rhysd__actionlint")], num_proc=1, **kw)
  b = corpus.read_corpus([str(shared_workflows / "raw" / "rhysd__actionlint")], num_proc=2, **kw)
  assert a == b and any(s["reason"] == "too_large" for s in a.skipped)


def test_default_corpus_is_the_shipped_real_corpus_with_its_split(shared_workflows):
  """'default' reads the packed 1,269 real workflows byte for byte, with SPLIT.tsv's split."""
  c = corpus.read_corpus(["default"])
  split = dict(
    line.split("\t") for line in (shared_workflows / "SPLIT.tsv").read_text().splitlines()[1:]
  )
  assert c.num_inputs == len(split) == 1269
  assert corpus.summary(c.num_inputs, len(c.documents), c.skipped).startswith("kept 1245 of 1269")
  for d in c.documents[::50]:
    name = d.name[len("default:") :]
    assert d.text.encode() == (shared_workflows / name).read_bytes()
    assert d.split == ("train", "validation").index(split[name])
  assert {s["reason"] for s in c.skipped} >= {"yaml_error", "empty"}  # broken files stay in


def test_synthetic_corpus_and_bad_embedded_names():
  c = corpus.read_corpus(["synthetic:10"])
  assert c.num_inputs > 10 and all(d.name.startswith("synthetic:") for d in c.documents)
  assert all(d.split is None for d in c.documents)  # split by content hash
  assert len(c.documents) >= 0.9 * c.num_inputs  # the project's own corpus is (nearly) all usable
  with pytest.raises(corpus.CorpusError, match="synthetic:N"):
    corpus.list_sources(["synthetic:many"])


def test_may_alias_misses_no_alias():
  """The cheap text test that spares most files the expanded-size walk never misses an alias."""
  with_alias = [
    "a: &x 1\nb: *x\n",
    "a: [&x 1,*x]\n",
    '{"a":&x 1, "b":*x}\n',
    "- &x\n  k: v\n- *x\n",
    "&x a: 1\n*x : 2\n",
    _laughs(3),
  ]
  for text in with_alias:
    assert corpus.may_alias(text), text
  # `&&` looks like an anchor, a cron string like an alias: one without the other is no alias
  assert not corpus.may_alias("run: make && make test\npaths: ['**/*.js']\n")
  assert not corpus.may_alias("on: {schedule: [{cron: '0 * * * *'}]}\npaths: ['**/*.js']\n")
  # Property over the embedded corpus: a document whose composed tree shares a node (an alias)
  # is always caught.
  for doc in corpus.read_corpus(["default"]).documents:
    try:
      root = yaml.compose(doc.text, Loader=parse._Loader)
    except yaml.YAMLError:
      continue
    if root is not None and corpus.expanded_size(root, 10**9) != _count(root):
      assert corpus.may_alias(doc.text), doc.name


def _count(root) -> int:
  """Nodes in the composed tree, each object once (an alias counts nothing extra)."""
  seen, todo = set(), [root]
  while todo:
    node = todo.pop()
    if id(node) in seen:
      continue
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
      todo += node.value
    elif isinstance(node, yaml.MappingNode):
      todo += [n for pair in node.value for n in pair]
  return len(seen)
