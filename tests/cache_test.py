"""Token cache: contents, stable split, atomic writes, staleness, CLI; inputs never touched."""

import dataclasses
from contextlib import nullcontext
import hashlib
import importlib.util
import json
import os
import pathlib
import pickle
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fimjax import synthetic
from fimjax.config_base import base_config
from fimjax.data import cache
from fimjax.data import corpus
from fimjax.data import tokenizers as tok_lib

REPO = pathlib.Path(__file__).resolve().parent.parent
WF = "name: w{i}\non: push\njobs:\n  j{i}:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo {i}\n"
SMALL = dict(tokenizer="bpe", bpe_vocab_size=300, progress=False, log=lambda s: None)

# A TCT module (bytes as ids) that rejects documents matching `{rejects}` with `{why}`.
FAKE_TCT = '''
import json
__version__ = "{version}"
def vocab_size(): return 8192
def pad_token(): return 8191
def encode(json_str):
  obj = json.loads(json_str)
  if {rejects}: raise ValueError("{why}")
  return list(json_str.encode("utf-8"))
def decode(tokens):
  data = bytes(t for t in tokens if t < 256)
  return data.decode("utf-8"), len(tokens), len(tokens)
'''


def fake_tct(
  version: str, rejects: str = '"REJECTME" in json_str', why: str = "schema-invalid"
) -> str:
  return FAKE_TCT.format(version=version, rejects=rejects, why=why)


def _snapshot(root: pathlib.Path) -> dict:
  """Bytes hash and mtime of every file below `root` (to prove a build changes nothing)."""
  out = {}
  for p in sorted(root.rglob("*")):
    if p.is_file() or p.is_symlink():
      st = os.lstat(p)
      out[str(p)] = (
        hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "link",
        st.st_mtime_ns,
        st.st_mode,
      )
  return out


def _make_corpus(root: pathlib.Path, ids, prefix: str = "w") -> pathlib.Path:
  root.mkdir(parents=True, exist_ok=True)
  for i in ids:
    (root / f"{prefix}{i:03d}.yml").write_text(WF.format(i=i))
  return root


def _splits(path) -> dict[str, str]:
  """sha256 -> split, from documents.tsv."""
  lines = (pathlib.Path(path) / cache.DOCS_TSV).read_text().splitlines()[1:]
  return {ln.split("\t")[3]: ln.split("\t")[1] for ln in lines}


@pytest.fixture(scope="session")
def shared_cache(shared_workflows, tmp_path_factory):
  before = _snapshot(shared_workflows)
  out = tmp_path_factory.mktemp("shared") / "cache"
  meta = cache.build_cache(
    [str(shared_workflows)], out, tokenizer="bpe", progress=False, log=lambda s: None
  )
  assert _snapshot(shared_workflows) == before  # inputs unchanged, nothing added
  return out, meta


def test_shared_cache_meta(shared_cache):
  out, meta = shared_cache
  tc = cache.load_cache(out)
  assert tc.meta == meta
  assert (meta["tokenizer"], meta["vocab_size"], meta["pad_id"]) == ("bpe", 8192, 8191)
  assert meta["special_ids"] == {
    "pad": 8191,
    "bos": 8192,
    "eos": 8193,
    "mask": 8194,
    "mid": 8195,
    "eom": 8196,
  }
  assert tc.special_ids == meta["special_ids"] and tc.model_vocab_size == 8197
  assert meta["num_inputs"] == 1269 and sum(meta["num_documents"].values()) == 1245
  assert meta["skipped_counts"] == {
    "empty": 4,
    "yaml_error": 11,
    "not_mapping": 1,
    "not_workflow": 6,
    "not_json": 2,
  }
  assert len(meta["skipped"]) == 24 and set(meta["skipped"][0]) == {"file", "reason"}
  assert meta["summary"].startswith("kept 1245 of 1269; skipped: empty 4, yaml_error 11")
  assert tc.tokens.dtype == np.uint16 and isinstance(tc.tokens, np.memmap)
  for split in ("train", "validation"):
    docs = tc.documents(split)
    assert (
      len(docs) == meta["num_documents"][split] and docs.num_tokens == meta["num_tokens"][split]
    )
  lengths = np.diff(tc.offsets)
  assert meta["tokens_per_document"]["max"] == lengths.max() and lengths.min() > 0
  assert meta["tokens_per_document"]["median"] == np.median(lengths)
  assert int(np.asarray(tc.tokens).max()) < 8191  # no content token is PAD or a model special
  assert meta["settings"]["tokenizer"] == "bpe" and "inputs_sha256" in meta["settings"]


def test_shared_cache_decodes_to_files_and_split_by_hash(shared_cache):
  out, meta = shared_cache
  tc = cache.load_cache(out)
  tok = tc.tokenizer()
  rows = [ln.split("\t") for ln in (out / cache.DOCS_TSV).read_text().splitlines()[1:]]
  assert len(rows) == len(tc.split)
  for (idx, split, n, sha, src), s in zip(rows, tc.split):
    assert split == ("validation" if s else "train")
    assert s == cache.split_of(sha, 0.05)
  for idx in range(0, len(rows), 50):  # every 50th document decodes to its file, byte for byte
    i = int(idx)
    ids = tc.tokens[tc.offsets[i] : tc.offsets[i + 1]]
    assert tok.decode(ids) == pathlib.Path(rows[i][4]).read_text(encoding="utf-8")
  val = meta["num_documents"]["validation"] / sum(meta["num_documents"].values())
  assert 0.02 < val < 0.09


def test_structure_marks_are_stored_per_token(shared_cache):
  """struct_flags / struct_span line up with the tokens: a VALUE mark decodes to a YAML value."""
  from fimjax.data import structure  # pylint: disable=g-import-not-at-top

  tc = cache.load_cache(shared_cache[0])
  tok = tc.tokenizer()
  assert tc.flags.shape == tc.span.shape == tc.tokens.shape and isinstance(tc.flags, np.memmap)
  docs = tc.documents("train")
  assert docs.flags is tc.flags and docs.span is tc.span
  for d in range(0, len(docs), 97):
    s, n = docs.starts[d], docs.lengths[d]
    fl, sp, ids = (np.asarray(a[s : s + n]) for a in (tc.flags, tc.span, tc.tokens))
    assert fl[0] & structure.LINE
    again = structure.structure(tok.decode(ids), tok.token_bytes()[ids])  # as at build time
    np.testing.assert_array_equal(again[0], fl)
    np.testing.assert_array_equal(again[1], sp)
  counts = {
    b: int((np.asarray(tc.flags) & b > 0).sum())
    for b in (structure.VALUE, structure.STEP, structure.BLOCK, structure.TEXT)
  }
  assert all(c > 1000 for c in counts.values()), counts


def test_documents(shared_cache):
  tc = cache.load_cache(shared_cache[0])
  docs = tc.documents("validation")
  blob = pickle.dumps(docs)
  assert len(blob) < tc.tokens.nbytes / 10  # the memmap travels as its path, not its content
  again = pickle.loads(blob)
  assert isinstance(again.tokens, np.memmap) and np.array_equal(again[3], docs[3])
  sliced = dataclasses.replace(docs, tokens=docs.tokens[10:])  # not the file's array: sent as data
  assert np.array_equal(pickle.loads(pickle.dumps(sliced))[0], sliced[0])
  d = cache.Documents.from_lists([[1, 2, 3], [], [4]])
  assert d.starts.tolist() == [0, 3, 3] and d.lengths.tolist() == [3, 0, 1] and d[2].tolist() == [4]
  d2 = pickle.loads(pickle.dumps(d))
  assert d.num_tokens == 4 and d2.tokens.tolist() == [1, 2, 3, 4] and d2.path is None
  with pytest.raises(ValueError, match="split"):
    tc.documents("test")


def test_split_is_stable_when_files_are_added(tmp_path):
  src = _make_corpus(tmp_path / "in", range(60))
  cache.build_cache([str(src)], tmp_path / "a", val_fraction=0.3, **SMALL)
  first = _splits(tmp_path / "a")
  _make_corpus(src, range(60, 200), prefix="v")  # sorted before the first ones: order moves
  cache.build_cache([str(src)], tmp_path / "b", val_fraction=0.3, **SMALL)
  second = _splits(tmp_path / "b")
  assert len(first) == 60 and len(second) == 200
  assert all(second[h] == s for h, s in first.items())
  assert 0.15 < list(second.values()).count("validation") / 200 < 0.45


def test_failed_build_leaves_no_cache(tmp_path, monkeypatch):
  src = _make_corpus(tmp_path / "in", range(20))
  out = tmp_path / "out"

  def boom(*a, **k):
    raise RuntimeError("disk full")

  monkeypatch.setattr(cache.folder, "write_meta", boom)
  with pytest.raises(RuntimeError, match="disk full"):
    cache.build_cache([str(src)], out, **SMALL)
  assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in"]
  monkeypatch.undo()
  cache.build_cache([str(src)], out, val_fraction=0.1, **SMALL)
  monkeypatch.setattr(cache.folder, "write_meta", boom)
  with pytest.raises(RuntimeError):
    cache.build_cache([str(src)], out, val_fraction=0.2, **SMALL)
  assert cache.load_cache(out).meta["settings"]["val_fraction"] == 0.1  # the old cache, intact


def test_killed_build_leaves_no_loadable_cache(tmp_path):
  src = _make_corpus(tmp_path / "in", range(20))
  out = tmp_path / "out"
  script = textwrap.dedent(f"""
      import os, signal
      from fimjax.data import cache
      cache.folder.write_meta = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
      cache.build_cache([{str(src)!r}], {str(out)!r}, tokenizer="bpe", bpe_vocab_size=300,
                        progress=False)
  """)
  r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
  assert r.returncode == -9, r.stderr
  leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]
  assert len(leftovers) == 1 and (leftovers[0] / "tokens.npy").exists()
  assert not out.exists()
  with pytest.raises(cache.CacheError, match="no fimjax token cache"):
    cache.load_cache(out)
  with pytest.raises(cache.CacheError):
    cache.load_cache(leftovers[0])  # the torn build itself does not load either
  (tmp_path / ".out.old-1234abcd").mkdir()  # a cache replaced by a commit that was killed
  cache.build_cache([str(src)], out, **SMALL)  # the next build clears the dead build's folders
  assert cache.load_cache(out) and sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def _cfg(inputs, **kw):
  data = base_config("tiny").data
  data.corpus = ",".join(inputs)
  data.tokenizer, data.bpe_vocab_size = "bpe", 300
  for k, v in kw.items():
    setattr(data, k, v)
  return data


def test_ensure_cache_reuses_and_rebuilds_stale(tmp_path, monkeypatch):
  src = _make_corpus(tmp_path / "in", range(30))
  out = tmp_path / "cache"
  logs = []
  ens = lambda cfg: cache.ensure_cache(cfg, out, progress=False, log=logs.append)  # noqa: E731
  tc = ens(_cfg([str(src)]))
  assert len(logs) == 1 and logs[0].startswith("kept 30 of 30")
  created = tc.meta["created"], tc.meta["build_seconds"]
  assert ens(_cfg([str(src)])).meta["created"] == created[0] and len(logs) == 1  # reused as is
  ens(_cfg([str(src)], val_fraction=0.5))
  assert "stale (val_fraction: 0.05 -> 0.5)" in logs[1]
  (src / "w000.yml").write_text(WF.format(i=0) + "# edited\n")
  ens(_cfg([str(src)], val_fraction=0.5))
  assert "stale (inputs_sha256:" in logs[3]
  # Switching tokenizer (here to a TCT build on the path) is detected, so is a new TCT version.
  (tmp_path / "fake_tct_file.py").write_text(fake_tct("1.0"))
  monkeypatch.syspath_prepend(str(tmp_path))
  tc = ens(_cfg([str(src)], val_fraction=0.5, tokenizer="auto", tct_module="fake_tct_file"))
  assert "bpe' -> 'tct'" in logs[5] and tc.meta["tokenizer"] == "tct"
  sys.modules.pop("fake_tct_file")
  (tmp_path / "fake_tct_file.py").write_text(fake_tct("2.0"))
  tc = ens(_cfg([str(src)], val_fraction=0.5, tokenizer="tct", tct_module="fake_tct_file"))
  assert "tokenizer_version: 'fake_tct_file-1.0' -> 'fake_tct_file-2.0'" in logs[7]
  sys.modules.pop("fake_tct_file")


def test_table_cache_goes_stale_with_its_file_and_reader_settings(tmp_path):
  table = tmp_path / "rows.jsonl"
  table.write_text(
    "".join(json.dumps({"content": WF.format(i=i), "path": f"w{i}.yml"}) + "\n" for i in range(20))
  )
  out, logs = tmp_path / "cache", []
  ens = lambda **kw: cache.ensure_cache(
    _cfg([str(table)], **kw),
    out,
    progress=False,  # noqa: E731
    log=logs.append,
  )
  tc = ens()
  assert logs == ["kept 20 of 20; skipped: none"]
  assert {k: tc.meta["settings"][k] for k in ("documents", "jsonc", "text_field")} == {
    "documents": "workflow",
    "jsonc": False,
    "text_field": "content",
  }
  ens()
  assert len(logs) == 1  # reused
  with table.open("a") as f:
    f.write(json.dumps({"content": 5}) + "\n")
  ens()
  assert "stale (inputs_sha256:" in logs[1] and logs[2] == "kept 20 of 21; skipped: bad_row 1"
  kw = {}
  for change, diff in (
    (dict(documents="any"), "documents: 'workflow' -> 'any'"),
    (dict(jsonc=True), "jsonc: False -> True"),
    (dict(text_field="body"), "text_field: 'content' -> 'body'"),
  ):
    n, kw = len(logs), {**kw, **change}
    with pytest.raises(corpus.CorpusError, match="no usable") if "body" in diff else nullcontext():
      ens(**kw)  # every row lacks `body`: nothing usable, nothing replaced
    assert logs[n].startswith(f"token cache at {out} is stale ({diff}); rebuilding"), logs[n]


FAKE_TSCONFIG_TCT = fake_tct(
  "0.1", '"compilerOptions" not in obj', "missing required field compilerOptions"
)


def test_tct_of_another_schema_keeps_any_mapping_and_its_rejections(tmp_path, monkeypatch):
  """A TCT build of another schema (here tsconfig) trains end to end: documents need no `jobs`,
  JSONC files are read, and the module's own rejection message is kept in the skip report."""
  (tmp_path / "fake_tsconfig_tct.py").write_text(FAKE_TSCONFIG_TCT)
  monkeypatch.syspath_prepend(str(tmp_path))
  src = tmp_path / "in"
  src.mkdir()
  for i in range(6):
    (src / f"t{i}.json").write_text(
      f'{{\n  // project {i}\n  "compilerOptions": {{"target": "es{i}",}},\n}}\n'
    )
  (src / "other.json").write_text('{"extends": "./base.json"}')
  cfg = _cfg([str(src)], tokenizer="tct", tct_module="fake_tsconfig_tct", jsonc=True)
  tc = cache.ensure_cache(cfg, tmp_path / "c", progress=False, log=lambda s: None)
  sys.modules.pop("fake_tsconfig_tct", None)
  assert tc.meta["settings"]["documents"] == "any" and tc.meta["summary"] == (
    "kept 6 of 7; skipped: tokenizer_rejected 1"
  )
  assert tc.meta["skipped"] == [
    {
      "file": str(src / "other.json"),
      "reason": "tokenizer_rejected",
      "message": "ValueError: missing required field compilerOptions",
    }
  ]
  tok = tc.tokenizer()
  ids = tc.tokens[tc.offsets[0] : tc.offsets[1]]
  assert json.loads(tok.decode(ids)) == {"compilerOptions": {"target": "es0"}}


def test_cli_reads_tables_with_reader_flags(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq

  texts = [WF.format(i=i) for i in range(12)] + ["name: no jobs\n", None]
  pq.write_table(pa.table({"body": texts}), tmp_path / "rows.parquet")
  out = tmp_path / "cache"
  r = _cli(
    "build",
    "--input",
    str(tmp_path / "rows.parquet"),
    "--out",
    str(out),
    "--tokenizer",
    "bpe",
    "--bpe-vocab-size",
    "300",
    "--text-field",
    "body",
    "--documents",
    "any",
    "--jsonc",
    "--no-progress",
  )
  assert r.returncode == 0, r.stderr
  assert "kept 13 of 14; skipped: bad_row 1" in r.stdout
  meta = cache.load_cache(out).meta
  assert {k: meta["settings"][k] for k in ("documents", "jsonc", "text_field")} == {
    "documents": "any",
    "jsonc": True,
    "text_field": "body",
  }
  r = _cli("build", "--input", str(tmp_path / "rows.parquet"), "--out", str(out), "--no-progress")
  assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
  assert "has no column 'content' (it has body); set --config.data.text_field" in r.stderr


def test_damaged_cache_is_detected_and_rebuilt(tmp_path):
  src = _make_corpus(tmp_path / "in", range(10))
  out = tmp_path / "cache"
  cache.build_cache([str(src)], out, **SMALL)
  offsets = np.load(out / "offsets.npy")
  np.save(out / "offsets.npy", offsets[:-1])
  with pytest.raises(cache.CacheError, match=r"offsets\.npy is damaged \(\d+ bytes, meta"):
    cache.load_cache(out)
  logs = []
  tc = cache.ensure_cache(_cfg([str(src)]), out, progress=False, log=logs.append)
  assert f"file {out / 'offsets.npy'} is damaged" in logs[0] and len(tc.offsets) == len(offsets)
  assert tc.tokenizer().vocab_size == 300
  other = tmp_path / "other"
  cache.build_cache([str(_make_corpus(tmp_path / "in2", range(50, 70)))], other, **SMALL)
  (out / "tokenizer.json").write_bytes((other / "tokenizer.json").read_bytes())
  with pytest.raises(cache.CacheError, match=r"tokenizer\.json is damaged"):
    cache.load_cache(out)
  _drop_checksums(out)  # a cache built before checksums: the tokenizer's own hash still refuses it
  with pytest.raises(cache.CacheError, match="not the tokenizer"):
    cache.load_cache(out).tokenizer()
  (out / "tokenizer.json").unlink()
  with pytest.raises(cache.CacheError, match=r"tokenizer\.json is damaged \(missing\)"):
    cache.load_cache(out)


def test_foreign_folders_are_refused(tmp_path):
  src = _make_corpus(tmp_path / "in", range(5))
  foreign = tmp_path / "mine"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("keep me")
  with pytest.raises(cache.CacheError, match="not a fimjax token cache"):
    cache.ensure_cache(_cfg([str(src)]), foreign, progress=False, log=lambda s: None)
  with pytest.raises(cache.CacheError, match="refusing"):
    cache.build_cache([str(src)], foreign, **SMALL)
  assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
  with pytest.raises(cache.CacheError, match="inside the cache folder"):
    cache.build_cache([str(src)], tmp_path, **SMALL)
  cache.build_cache([str(src)], src / "cache", **SMALL)  # a cache inside an input folder ...
  meta = cache.build_cache([str(src)], tmp_path / "c2", **SMALL)
  assert meta["num_inputs"] == 5  # ... is never read as input


def test_tct_cache_with_worker_processes(tmp_path, monkeypatch):
  (tmp_path / "fake_tct_file.py").write_text(fake_tct("3.1"))
  monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit sys.path
  src = _make_corpus(tmp_path / "in", range(12))
  (src / "w005.yml").write_text(WF.format(i=5) + "env:\n  X: REJECTME\n")
  meta = cache.build_cache(
    [str(src)],
    tmp_path / "c",
    tokenizer="tct",
    tct_module="fake_tct_file",
    num_proc=2,
    progress=False,
    log=lambda s: None,
  )
  sys.modules.pop("fake_tct_file", None)
  assert (meta["tokenizer"], meta["tokenizer_version"], meta["vocab_size"], meta["pad_id"]) == (
    "tct",
    "fake_tct_file-3.1",
    8192,
    8191,
  )
  assert meta["skipped"] == [
    {
      "file": str(src / "w005.yml"),
      "reason": "tokenizer_rejected",
      "message": "ValueError: schema-invalid",
    }
  ]  # TCT's own words
  assert meta["tokenizer_file"] is None and not (tmp_path / "c" / "tokenizer.json").exists()
  tc = cache.load_cache(tmp_path / "c")
  assert not np.asarray(tc.flags).any()  # no byte offsets: no structure (holes fall back)
  tok = tc.tokenizer()
  rows = [ln.split("\t") for ln in (tmp_path / "c" / cache.DOCS_TSV).read_text().splitlines()[1:]]
  assert len(rows) == 11 == len(tc.documents("train")) + len(tc.documents("validation"))
  for i, row in enumerate(rows):  # TCT saw the JSON of each file, with the on: fix
    ids = tc.tokens[tc.offsets[i] : tc.offsets[i + 1]]
    assert tok.decode(ids) == corpus.to_json(corpus.load_workflow(pathlib.Path(row[4]).read_text()))


def _cli(*args):
  return subprocess.run(
    [sys.executable, "-m", "fimjax.data.cache", *args], cwd=REPO, capture_output=True, text=True
  )


def test_cli_build_and_info(tmp_path):
  src = _make_corpus(tmp_path / "in", range(40))
  (src / "broken.yml").write_text("on: [\n")
  out = tmp_path / "cache"
  r = _cli(
    "build",
    "--input",
    str(src),
    str(src / "w001.yml"),
    "--out",
    str(out),
    "--tokenizer",
    "bpe",
    "--val-fraction",
    "0.25",
    "--no-progress",
  )
  assert r.returncode == 0, r.stderr
  assert "kept 40 of 42; skipped: duplicate 1, yaml_error 1" in r.stdout
  r = _cli("info", str(out), "--json")
  assert r.returncode == 0, r.stderr
  meta = json.loads(r.stdout)
  for key in (
    "tokenizer",
    "vocab_size",
    "pad_id",
    "special_ids",
    "num_documents",
    "num_tokens",
    "skipped",
    "tokens_per_document",
    "settings",
  ):
    assert key in meta
  assert meta["vocab_size"] == 8192 and meta["settings"]["val_fraction"] == 0.25
  assert {"file": str(src / "broken.yml"), "reason": "yaml_error"} in meta["skipped"]
  assert sum(meta["num_documents"].values()) == 40
  r = _cli("info", str(out))
  assert r.returncode == 0 and "validation" in r.stdout and "kept 40 of 42" in r.stdout


def test_out_below_a_file_is_refused_before_reading(tmp_path, monkeypatch):
  src = _make_corpus(tmp_path / "in", range(5))
  (tmp_path / "file").write_text("x")
  monkeypatch.setattr(corpus, "read_corpus", lambda *a, **k: pytest.fail("read before checking"))
  for out in (tmp_path / "file" / "c", tmp_path / "file" / "a" / "b"):
    with pytest.raises(cache.CacheError, match=f"{tmp_path / 'file'} is a file"):
      cache.build_cache([str(src)], out, **SMALL)
  monkeypatch.undo()
  r = _cli("build", "--input", str(src), "--out", str(tmp_path / "file" / "c"))
  assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(tmp_path / "file") in r.stderr
  assert (tmp_path / "file").read_text() == "x"


def test_cli_errors_are_one_line(tmp_path):
  r = _cli("build", "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "c"))
  assert r.returncode == 2 and r.stderr.count("\n") == 1
  assert "input not found" in r.stderr and str(tmp_path / "nope") in r.stderr
  if importlib.util.find_spec("tct_github_workflow") is None:
    r = _cli("build", "--input", str(tmp_path), "--out", str(tmp_path / "c"), "--tokenizer", "tct")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert (
      "pip install /path/to/tct_github_workflow-*.whl" in r.stderr and "tokenizer=bpe" in r.stderr
    )
  r = _cli("info", str(tmp_path))
  assert r.returncode == 2 and "no fimjax token cache" in r.stderr and r.stderr.count("\n") == 1
  r = _cli("build", "--input", str(tmp_path), "--out", str(tmp_path / "c"), "--val-fraction", "1.5")
  assert r.returncode == 2 and "--val_fraction" in r.stderr


# ------------------------------------------ a damaged cache is named on load, never trained on


def _drop_checksums(path: pathlib.Path) -> None:
  """Makes `path` look built before meta.json recorded file sizes and checksums."""
  meta = json.loads((path / cache.META).read_text())
  meta.pop("files")
  (path / cache.META).write_text(json.dumps(meta))


def _poke(path: pathlib.Path, offset: int, data: bytes) -> None:
  """Overwrites bytes in place (the size stays)."""
  with open(path, "r+b") as f:
    f.seek(offset)
    f.write(data)


def _token_offset(path: pathlib.Path, index: int) -> int:
  """Byte offset of tokens.npy's entry `index` (after the .npy header)."""
  data_start = path.stat().st_size - np.load(path, mmap_mode="r").nbytes
  return data_start + 2 * index  # uint16


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
  root = tmp_path_factory.mktemp("small")
  out = root / "cache"
  cache.build_cache([str(_make_corpus(root / "in", range(10)))], out, **SMALL)
  return out


@pytest.fixture
def damaged(small_cache, tmp_path):
  """A fresh copy of the small cache, to damage."""
  return pathlib.Path(shutil.copytree(small_cache, tmp_path / "cache"))


def test_meta_records_size_and_sha256_of_every_file(small_cache):
  files = cache.load_cache(small_cache).meta["files"]
  assert sorted(files) == sorted([*cache.ARRAYS, cache.TOKENIZER_FILE, cache.DOCS_TSV])
  for name, rec in files.items():
    data = (small_cache / name).read_bytes()
    assert rec == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
  assert sorted(cache.load_cache(small_cache).checksummed) == sorted(files)  # small: all on load


def test_token_id_out_of_range_is_named(damaged):
  _poke(damaged / "tokens.npy", _token_offset(damaged / "tokens.npy", 5) + 1, b"\xff")
  with pytest.raises(
    cache.CacheDamaged,
    match=r"token id 6\d{4} at index 5 is not below the vocab "
    r"size 300",
  ) as e:
    cache.load_cache(damaged, checksums=False)  # found without hashing: old caches too
  msg = str(e.value)
  assert e.value.file == damaged / "tokens.npy" and "\n" not in msg
  assert f"cache file {damaged / 'tokens.npy'} is damaged" in msg
  assert f"--out {damaged}" in msg and "restore it from a copy" in msg
  assert re.search(r"its own tokenizer \(bpe:[0-9a-f]{12}\)", msg)
  assert "optim.lr" not in msg


def test_flipped_token_in_range_fails_its_checksum(damaged):
  path = damaged / "tokens.npy"
  ids = np.load(path)
  _poke(path, _token_offset(path, 7), np.uint16((ids[7] + 1) % 256).tobytes())
  with pytest.raises(cache.CacheDamaged, match=r"tokens\.npy is damaged \(sha256 differs"):
    cache.load_cache(damaged)
  assert cache.load_cache(damaged, checksums=False).checksummed == ()  # asked not to hash


def test_truncated_file_is_named_by_size(damaged):
  path = damaged / cache.STRUCT_SPAN
  size = path.stat().st_size
  os.truncate(path, size - 10)
  with pytest.raises(
    cache.CacheDamaged,
    match=rf"struct_span\.npy is damaged \({size - 10} bytes, "
    rf"meta\.json says {size}: truncated",
  ):
    cache.load_cache(damaged, checksums=False)
  _drop_checksums(damaged)  # without recorded sizes, the array's own header gives it away
  with pytest.raises(cache.CacheDamaged, match=r"struct_span\.npy is damaged \(unreadable"):
    cache.load_cache(damaged)


def test_damaged_tokenizer_is_named(damaged):
  path = damaged / cache.TOKENIZER_FILE
  text = path.read_bytes()
  at = text.index(b'"vocab"') + 20
  _poke(path, at, bytes([text[at] ^ 0x01]))
  with pytest.raises(cache.CacheDamaged, match=r"tokenizer\.json is damaged \(sha256 differs"):
    cache.load_cache(damaged)
  _drop_checksums(damaged)
  path.write_bytes(text[: len(text) // 2])  # an old cache: the parse error names the file
  with pytest.raises(cache.CacheDamaged, match=r"tokenizer\.json is damaged \(unreadable"):
    cache.load_cache(damaged).tokenizer()


def test_cache_without_checksums_still_loads(damaged):
  _drop_checksums(damaged)
  tc = cache.load_cache(damaged, checksums=True)
  assert tc.checksummed == () and len(tc.documents("train")) + len(tc.documents("validation")) == 10
  assert tc.tokenizer().vocab_size == 300
  meta = json.loads((damaged / cache.META).read_text())
  assert meta["format_version"] == cache.FORMAT_VERSION  # same version: runs keep their caches
  r = _cli("info", str(damaged))
  assert r.returncode == 0 and "no sizes or checksums: built before they were kept" in r.stdout


def test_ensure_cache_rebuilds_a_damaged_cache_only_with_the_same_tokenizer(damaged):
  src = pathlib.Path(cache.load_cache(damaged).meta["inputs"][0])
  tsv = damaged / cache.DOCS_TSV
  _poke(tsv, tsv.stat().st_size - 3, b"X")
  before = _snapshot(damaged)

  def refuse(meta, folder):
    raise ValueError("tokenizer: saved 'bpe:1', now 'bpe:2'")

  logs = []
  with pytest.raises(
    cache.CacheError,
    match=r"documents\.tsv is damaged \(sha256 differs.*\), and "
    r"its rebuild is refused \(tokenizer: saved.*\); restore .* from a copy",
  ) as e:
    cache.ensure_cache(_cfg([str(src)]), damaged, progress=False, log=logs.append, verify=refuse)
  assert "\n" not in str(e.value) and _snapshot(damaged) == before  # the damaged cache is kept
  assert "only if it gives the run's tokenizer" in logs[0]
  tc = cache.ensure_cache(
    _cfg([str(src)]), damaged, progress=False, log=logs.append, verify=lambda meta, folder: None
  )
  assert f"file {tsv} is damaged (sha256 differs" in logs[1] and tc.checksummed


def test_cli_info_verifies_and_names_the_damaged_file(damaged):
  r = _cli("info", str(damaged))
  assert r.returncode == 0, r.stderr
  assert "verified     ok: 7 files match the sizes and sha256 in meta.json" in r.stdout
  _poke(damaged / cache.STRUCT_FLAGS, (damaged / cache.STRUCT_FLAGS).stat().st_size - 1, b"\x7f")
  for args in ((), ("--json",)):
    r = _cli("info", str(damaged), *args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"cache file {damaged / cache.STRUCT_FLAGS} is damaged (sha256 differs" in r.stderr
  assert "verified     DAMAGED" in _cli("info", str(damaged)).stdout


# ---------------------------------------------------------------- scale: processes, BPE sample


def test_a_build_over_two_processes_is_byte_identical_to_one(tmp_path):
  """Parsing and encoding in worker processes merge in input order: the same cache to the byte
  (the timing fields of meta.json aside), duplicates and skips included."""
  src = tmp_path / "src"
  src.mkdir()
  for i in range(40):
    (src / f"w{i:02d}.yml").write_text(synthetic.generate(i))
  (src / "dup.yml").write_text(synthetic.generate(3))
  (src / "broken.yml").write_text("jobs: [\n")
  metas = [cache.build_cache([str(src)], tmp_path / f"c{n}", num_proc=n, **SMALL) for n in (1, 2)]
  for m in metas:
    del m["build_seconds"], m["created"], m["build_phases_s"]
  assert metas[0] == metas[1]
  assert metas[0]["skipped_counts"] == {"duplicate": 1, "yaml_error": 1}
  for name in metas[0]["files"]:
    assert (tmp_path / "c1" / name).read_bytes() == (tmp_path / "c2" / name).read_bytes(), name
  assert not list((tmp_path / "c1").glob("texts.*"))  # the spilled texts and nodes are not kept
  assert set(metas[0]["files"]) >= {"tokens.npy", "struct_flags.npy", "struct_span.npy"}


def test_bpe_trains_on_a_bounded_sample_of_training_texts():
  from fimjax.data import encode  # pylint: disable=g-import-not-at-top

  texts = [f"jobs: {{a{i}: {{}}}}\n" * (i + 1) for i in range(6)]
  split = [0, 1, 0, 0, 1, 0]
  seen = lambda limit: encode.BackgroundBpe(0, limit, train=list)  # noqa: E731  # texts it got
  everything = seen(None)
  for t, sp in zip(texts, split):
    everything.feed(t, sp)
  assert everything.result() == [texts[i] for i in (0, 2, 3, 5)]
  # Stops at the first text past the limit: texts 0 and 2 make 13 + 39 characters >= 20.
  bounded = seen(20)
  for t, sp in zip(texts, split):
    bounded.feed(t, sp)
  assert bounded.closed and bounded.result() == [texts[0], texts[2]]

  def fails(texts):
    raise RuntimeError(f"trainer failed after {len(list(texts))} texts")

  broken = encode.BackgroundBpe(0, train=fails)
  broken.feed("jobs: {}\n", 0)
  with pytest.raises(RuntimeError, match="after 1 texts"):  # the thread's error, in the caller
    broken.result()


def test_encoding_by_lines_equals_the_tokenizer(shared_cache, shared_workflows):
  """Pieces cut before a newline's blanks encode to the whole text's ids (the reference)."""
  from fimjax.data import encode  # pylint: disable=g-import-not-at-top

  tok = cache.load_cache(shared_cache[0]).tokenizer()
  texts = [d.text for _, d, _ in corpus.Reader([str(shared_workflows)]) if d is not None]
  texts += [synthetic.generate(i) for i in range(50)]
  texts += [
    "a:  \n  b: 1\n",  # blanks before a newline
    "x\t\n\ty\r\nz \r\n",
    "é:\n é\n\n\n   \n",
    "k: 'v' # c\u00a0\n  - x\x0b\n\x1cy\u2028\n",
    "only",
    "\n",
    "  \n  ",
  ]
  encode._init(tok)
  for _ in range(2):  # the second time every piece is known
    got = encode.encode_by_lines(tok, texts, np.uint16)
    assert [g.tolist() for g in got] == tok.encode_batch(texts)
  other = tok_lib.BpeTokenizer.train(texts[:20], 300)
  encode._init(other)  # another tokenizer forgets the pieces
  got = encode.encode_by_lines(other, texts[:30], np.uint16)
  assert [g.tolist() for g in got] == other.encode_batch(texts[:30])
