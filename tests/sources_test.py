"""Corpus inputs beyond files: JSONL, Parquet, Hugging Face datasets, gs:// URLs; JSONC; document
kinds. Every table is a small file the test writes."""

import gzip
import importlib
import json
import pathlib
import shutil

import pytest

from fimjax.data import corpus
from fimjax.data import sources

WF = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo {}\n"
TSCONFIG = (
  '{\n  // compiler options\n  "compilerOptions": {"strict": true, "outDir": "dist/*",},\n}\n'
)


def _rows():
  """Rows of every kind a table may hold, in order; (expected name suffix, reason) in ROW_REASONS."""
  return [
    {"content": WF.format(1), "repo": "octo/app", "path": ".github/workflows/ci.yml"},
    {"content": WF.format(2)},
    {"text": WF.format(3)},  # no `content` field
    {"content": 7},  # not a string
    {"content": "on: [push\njobs: {}\n", "path": "broken.yml"},  # broken YAML
    {"content": WF.format(1)},  # a duplicate of row 0
    {"content": "name: no jobs\n"},
  ]


ROW_REASONS = [
  ("2", "bad_row"),
  ("3", "bad_row"),
  ("4 (broken.yml)", "yaml_error"),
  ("5", "duplicate"),
  ("6", "not_workflow"),
]


def _skips(c: corpus.Corpus, table: str) -> list[tuple[str, str]]:
  return [(s["file"][len(table) + 1 :], s["reason"]) for s in c.skipped]


def _write_jsonl(path: pathlib.Path, rows, blank_lines=False) -> pathlib.Path:
  lines = [json.dumps(r) for r in rows]
  text = ("\n\n".join(lines) if blank_lines else "\n".join(lines)) + "\n"
  path.write_bytes(gzip.compress(text.encode()) if path.name.endswith(".gz") else text.encode())
  return path


def _write_parquet(path: pathlib.Path, rows) -> pathlib.Path:
  import pyarrow as pa
  import pyarrow.parquet as pq

  cols = {
    "content": [r.get("content") if isinstance(r.get("content"), str) else None for r in rows],
    "repo": [r.get("repo") for r in rows],
    "path": [r.get("path") for r in rows],
  }
  pq.write_table(pa.table(cols), path, row_group_size=3)  # rows span row groups
  return path


def _write_dataset(path: pathlib.Path, rows, splits=False) -> pathlib.Path:
  import datasets

  cols = {
    "content": [r.get("content") if isinstance(r.get("content"), str) else None for r in rows],
    "path": [r.get("path") or "" for r in rows],
  }
  ds = datasets.Dataset.from_dict(cols)
  if splits:
    ds = datasets.DatasetDict(
      {"train": ds.select(range(4)), "test": ds.select(range(4, len(rows)))}
    )
  ds.save_to_disk(str(path))
  return path


def test_jsonl_rows_are_documents_and_bad_rows_are_counted(tmp_path):
  table = _write_jsonl(tmp_path / "data.jsonl", _rows(), blank_lines=True)
  (tmp_path / "data.jsonl").write_text((tmp_path / "data.jsonl").read_text() + "{not json\n[1]\n")
  c = corpus.read_corpus([str(table)])
  lines = [1, 3, 5, 7, 9, 11, 13, 14, 15]  # blank lines between rows are no rows
  assert [d.name for d in c.documents] == [
    f"{table}:1 (octo/app/.github/workflows/ci.yml)",
    f"{table}:3",
  ]
  assert c.documents[0].text == WF.format(1) and all(d.split is None for d in c.documents)
  assert _skips(c, str(table)) == [(f"{lines[int(n[0])]}{n[1:]}", r) for n, r in ROW_REASONS] + [
    ("14", "bad_row"),
    ("15", "bad_row"),
  ]
  assert c.num_inputs == 9
  bad = {s["file"][len(str(table)) + 1 :]: s.get("message") for s in c.skipped}
  assert (
    bad["5"] == "field 'content' is missing" and bad["7"] == "field 'content' is int, not a string"
  )
  assert bad["14"].startswith("not JSON") and bad["15"] == "not a JSON object"
  # Another field holds the text: set text_field.
  c = corpus.read_corpus([str(table)], text_field="text")
  assert [d.name for d in c.documents] == [f"{table}:5"]
  with pytest.raises(corpus.CorpusError, match=r"bad_row 9 \(rows need .* 'body'.*text_field"):
    corpus.read_corpus([str(table)], text_field="body")


def test_gzipped_jsonl_and_broken_tables_are_unreadable(tmp_path):
  table = _write_jsonl(tmp_path / "data.jsonl.gz", _rows())
  c = corpus.read_corpus([str(table)])
  assert [d.name for d in c.documents] == [
    f"{table}:1 (octo/app/.github/workflows/ci.yml)",
    f"{table}:2",
  ]
  assert _skips(c, str(table)) == [(f"{int(n[0]) + 1}{n[1:]}", r) for n, r in ROW_REASONS]
  (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip")
  (tmp_path / "bad.parquet").write_bytes(b"not parquet")
  c = corpus.read_corpus([str(tmp_path)])
  assert [(pathlib.Path(s["file"]).name, s["reason"]) for s in c.skipped[:2]] == [
    ("bad.jsonl.gz", "unreadable"),
    ("bad.parquet", "unreadable"),
  ]


def test_parquet_rows(tmp_path):
  table = _write_parquet(tmp_path / "data.parquet", _rows())
  c = corpus.read_corpus([str(table)])
  assert [d.name for d in c.documents] == [
    f"{table}:0 (octo/app/.github/workflows/ci.yml)",
    f"{table}:1",
  ]
  assert _skips(c, str(table)) == ROW_REASONS
  with pytest.raises(
    corpus.CorpusError,
    match=r"data.parquet has no column 'text' \(it has content, "
    r"repo, path\); set --config.data.text_field",
  ):
    corpus.read_corpus([str(table)], text_field="text")


@pytest.mark.parametrize("splits", [False, True])
def test_hugging_face_dataset_saved_to_disk(tmp_path, splits):
  root = _write_dataset(tmp_path / "ds", _rows(), splits=splits)
  src = [s for s in sources.list_sources([str(tmp_path)])]
  assert src == [sources.Table("hf", str(root))]  # a folder walk finds it and reads it whole
  c = corpus.read_corpus([str(root)])
  pre = [f"{root}/train:{i}" for i in range(4)] + [f"{root}/test:{i}" for i in range(3)]
  if not splits:
    pre = [f"{root}:{i}" for i in range(7)]
  assert [d.name for d in c.documents] == [pre[0] + " (.github/workflows/ci.yml)", pre[1]]
  assert [s["file"] for s in c.skipped] == [
    pre[2],
    pre[3],
    pre[4] + " (broken.yml)",
    pre[5],
    pre[6],
  ]
  assert c.fingerprint == corpus.fingerprint([str(root)])


def test_folder_of_files_and_tables(tmp_path):
  (tmp_path / "b").mkdir()
  (tmp_path / "b" / "w.yml").write_text(WF.format(9))
  _write_jsonl(tmp_path / "a.jsonl", _rows()[:2])
  _write_parquet(tmp_path / "b" / "c.parquet", _rows()[1:2] + [{"content": WF.format(8)}])
  _write_dataset(tmp_path / "b" / "d", [{"content": WF.format(7)}])
  (tmp_path / "notes.txt").write_text("x")
  units = sources.list_sources([str(tmp_path)])
  assert [
    (type(u).__name__, pathlib.Path(u.path).relative_to(tmp_path).as_posix()) for u in units
  ] == [("Table", "a.jsonl"), ("Table", "b/c.parquet"), ("Table", "b/d"), ("Source", "b/w.yml")]
  c = corpus.read_corpus([str(tmp_path)])
  assert len(c.documents) == 5 and c.num_inputs == 6
  assert c.skipped == [{"file": f"{tmp_path}/b/c.parquet:0", "reason": "duplicate"}]


def test_table_fingerprint_follows_its_bytes(tmp_path):
  table = _write_jsonl(tmp_path / "data.jsonl", _rows())
  f1 = corpus.fingerprint([str(table)])
  assert f1 == corpus.read_corpus([str(table)]).fingerprint
  copy = tmp_path / "copy.jsonl"
  shutil.copy(table, copy)
  assert corpus.fingerprint([str(copy)]) == f1  # content, not location
  _write_jsonl(table, _rows()[:-1])
  assert corpus.fingerprint([str(table)]) != f1


# ------------------------------------------------------------------------------------- gs://


@pytest.fixture
def fake_gcs(monkeypatch):
  """gs:// served from memory by fsspec (gcsfs's place), emptied after the test."""
  from fsspec.implementations.memory import MemoryFileSystem

  class FakeGcs(MemoryFileSystem):
    protocol = ("gs", "gcs")
    store, pseudo_dirs = {}, [""]

    @classmethod
    def _strip_protocol(cls, path):
      return super()._strip_protocol(path.split("://", 1)[-1])

  registry = importlib.import_module(
    "fsspec.registry"
  )  # the module: `fsspec.registry` is a mapping
  monkeypatch.setitem(registry._registry, "gs", FakeGcs)
  yield FakeGcs()
  FakeGcs.store.clear()


def test_gs_urls_read_every_format(tmp_path, fake_gcs):
  local = tmp_path / "corpus"
  (local / "wf").mkdir(parents=True)
  (local / "wf" / "a.yml").write_text(WF.format(1))
  (local / "wf" / "bad.yml").write_text("on: [\n")
  _write_jsonl(local / "t.jsonl", _rows())
  _write_parquet(local / "t.parquet", [{"content": WF.format(5)}])
  _write_dataset(local / "ds", [{"content": WF.format(6)}, {"content": "- a list\n"}])
  fake_gcs.put(str(local), "bucket/corpus", recursive=True)
  c = corpus.read_corpus(["gs://bucket/corpus"], num_proc=1)
  assert [d.name for d in c.documents] == [
    "gs://bucket/corpus/ds:0",
    "gs://bucket/corpus/t.jsonl:1 (octo/app/.github/workflows/ci.yml)",
    "gs://bucket/corpus/t.jsonl:2",
    "gs://bucket/corpus/t.parquet:0",
  ]
  assert {"file": "gs://bucket/corpus/wf/bad.yml", "reason": "yaml_error"} in c.skipped
  assert {"file": "gs://bucket/corpus/wf/a.yml", "reason": "duplicate"} in c.skipped
  # Same contents, same fingerprint: where the corpus lies is not what it is.
  assert (
    c.fingerprint == corpus.fingerprint(["gs://bucket/corpus"]) == corpus.fingerprint([str(local)])
  )
  # A file and a table named by URL.
  c = corpus.read_corpus(["gs://bucket/corpus/wf/a.yml", "gs://bucket/corpus/t.parquet"])
  assert [d.name for d in c.documents] == [
    "gs://bucket/corpus/wf/a.yml",
    "gs://bucket/corpus/t.parquet:0",
  ]
  with pytest.raises(corpus.CorpusError, match="input not found: gs://bucket/nope"):
    corpus.read_corpus(["gs://bucket/nope"])


def test_gs_without_gcsfs_says_what_to_install(monkeypatch):
  import fsspec

  with pytest.raises(corpus.CorpusError, match="Protocol not known: nope"):
    corpus.read_corpus(["nope://b/c"])

  def missing(url, **kw):
    raise ImportError("Install gcsfs to access Google Storage")

  monkeypatch.setattr(fsspec.core, "url_to_fs", missing)
  with pytest.raises(
    corpus.CorpusError,
    match=r"^input gs://b/c: gs:// paths need gcsfs, which is "
    r"not installed: pip install 'fimjax\[gcs\]'",
  ):
    corpus.read_corpus(["gs://b/c"])


# ----------------------------------------------------------------- document kinds and JSONC


@pytest.mark.parametrize(
  "text, want",
  [
    (TSCONFIG, {"compilerOptions": {"strict": True, "outDir": "dist/*"}}),
    (
      '{"a": "http://x/*y*/", "b": "q\\"//", /* c, ] */ "d": [1, 2, /* e */ ], // f, }\n}',
      {"a": "http://x/*y*/", "b": 'q"//', "d": [1, 2]},
    ),
    ("[1, // ]\n 2]", [1, 2]),
    ('{"a": [1,/**/],\r\n "b": {"c": 1 ,\r\n},}', {"a": [1], "b": {"c": 1}}),
    ('{"a": 1, /* } */ "b": 2}', {"a": 1, "b": 2}),
    ('"// not a comment, ]"', "// not a comment, ]"),
  ],
)
def test_strip_jsonc(text, want):
  assert json.loads(corpus.strip_jsonc(text)) == want


@pytest.mark.parametrize("text", ["[1,,]", '{"a": 1 /* open', '{"a": "unterminated}', "[,]"])
def test_strip_jsonc_leaves_broken_json_broken(text):
  with pytest.raises(ValueError):
    json.loads(corpus.strip_jsonc(text))


def test_strip_jsonc_keeps_lines():
  text = '{\n  /* two\n lines */ "a": 1,\n  // c\n  "b": x\n}'
  with pytest.raises(json.JSONDecodeError) as e:
    json.loads(corpus.strip_jsonc(text))
  assert e.value.lineno == 5  # the error points at the original line


def test_any_documents_and_jsonc(tmp_path):
  (tmp_path / "tsconfig.json").write_text(TSCONFIG)
  (tmp_path / "eslintrc.yml").write_text("root: true\nrules: {semi: error}\n")
  (tmp_path / "list.yml").write_text("- a\n")
  (tmp_path / "wf.yml").write_text(WF.format(1))
  _write_jsonl(tmp_path / "rows.jsonl", [{"content": TSCONFIG.replace("dist", "out")}])  # no path
  names = lambda c: sorted(pathlib.Path(d.name).name for d in c.documents)  # noqa: E731
  reasons = lambda c: {pathlib.Path(s["file"]).name: s["reason"] for s in c.skipped}  # noqa: E731
  c = corpus.read_corpus([str(tmp_path)], documents="any", jsonc=True)
  assert names(c) == ["eslintrc.yml", "rows.jsonl:1", "tsconfig.json", "wf.yml"]
  assert reasons(c) == {"list.yml": "not_mapping"}
  tsconfig = next(d for d in c.documents if d.name.endswith("tsconfig.json"))
  assert json.loads(tsconfig.json_text)["compilerOptions"]["outDir"] == "dist/*"
  c = corpus.read_corpus([str(tmp_path)], documents="any")
  assert reasons(c) == {
    "list.yml": "not_mapping",
    "rows.jsonl:1": "yaml_error",
    "tsconfig.json": "json_error",
  }
  c = corpus.read_corpus([str(tmp_path)], jsonc=True)  # workflows only
  assert names(c) == ["wf.yml"] and set(reasons(c).values()) == {"not_mapping", "not_workflow"}
  with pytest.raises(corpus.CorpusError, match="documents='yaml': use one of workflow, any"):
    corpus.read_corpus([str(tmp_path)], documents="yaml")


def test_document_kind():
  assert corpus.document_kind("auto", "bpe", "tct_tsconfig") == "workflow"
  assert corpus.document_kind("auto", "tct", "tct_github_workflow") == "workflow"
  assert corpus.document_kind("auto", "tct", "tct_tsconfig") == "any"
  assert corpus.document_kind("workflow", "tct", "tct_tsconfig") == "workflow"
  with pytest.raises(corpus.CorpusError, match="data.documents"):
    corpus.document_kind("yaml", "bpe")
