"""Evaluation: exact-match buckets, held-out holes, generation validity, the CLIs and the loop."""

import json

import ml_collections
import numpy as np
import pytest

from fimjax import evaluate
from fimjax import inference
from fimjax import infill_eval
from fimjax.cli import evaluate as evaluate_cli
from fimjax.cli import generate as generate_cli
from fimjax.data import cache as cache_lib
from fimjax.data import corpus
from tests.conftest import byte_docs


WORKFLOW = """name: CI
on: [push]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Test
        run: make test
"""


class _Bytes:
  name, vocab_size = "bpe", 256

  def decode(self, ids):
    return bytes(ids).decode(errors="replace")


def test_held_out_holes_by_kind_are_fixed_and_well_formed():
  docs = byte_docs([WORKFLOW, WORKFLOW.replace("Test", "Unit tests"), "jobs:\n  a:\n    b: 1\n"])
  holes = infill_eval.make_holes(docs, 4, 64, seed=3)
  assert holes == infill_eval.make_holes(docs, 4, 64, seed=3)
  assert holes != infill_eval.make_holes(docs, 4, 64, seed=4)
  kinds = [h["kind"] for h in holes]
  assert all(
    kinds.count(k) == 4
    for k in ("value", "line", "step", "span1", "span2_8", "span9_32", "span33plus")
  )
  text = lambda h: bytes(
    docs[h["doc"]][h["start"] : h["start"] + h["length"]].astype(np.uint8)
  ).decode()
  for h in holes:
    assert 1 <= h["length"] <= 63 and h["start"] + h["length"] <= docs.lengths[h["doc"]]
    t = text(h)
    if h["kind"] == "value":
      assert t in (
        " CI",
        " [push]",
        " ubuntu-latest",
        " actions/checkout@v4",
        " Test",
        " make test",
        " Unit tests",
        " 1",
      )
    elif h["kind"] == "line":
      assert (t.startswith("\n") or h["start"] == 0) and "\n" not in t[1:] and t.strip()
    elif h["kind"] == "step":
      assert t.lstrip("\n ").startswith("- ")
    elif h["kind"] == "block":  # at most 63 bytes: only the small ones
      assert t.lstrip("\n").split(":")[0].strip() in ("a", "steps", "build", "jobs")


def test_all_holes_and_a_choice_of_kinds():
  docs = byte_docs([WORKFLOW, WORKFLOW.replace("Test", "Unit tests"), "jobs:\n  a:\n    b: 1\n"])
  every = infill_eval.make_holes(docs, None, 64)
  for kind in infill_eval.STRUCTURE_KINDS:  # every node of the split, once
    got = sorted((h["doc"], h["start"], h["length"]) for h in every if h["kind"] == kind)
    assert got == sorted(infill_eval.candidates(docs, kind, 63)), kind
  assert sorted(h["doc"] for h in every if h["kind"] == "span1") == [0, 1, 2]
  sample = infill_eval.make_holes(docs, 3, 64)
  assert infill_eval.make_holes(docs, 3, 64, kinds=("line", "span1")) == [
    h for h in sample if h["kind"] in ("line", "span1")
  ]  # asking for fewer kinds does not change their holes
  with pytest.raises(ValueError, match="unknown hole kinds.*choose among value"):
    infill_eval.make_holes(docs, 3, 64, kinds=("values",))


def test_scores_on_a_hand_made_case(shared_schema):
  docs = byte_docs([WORKFLOW])
  doc = list(docs[0])
  at = WORKFLOW.index(" ubuntu-latest")
  line_at = WORKFLOW.index("\n        run: make test")
  holes = [
    {"doc": 0, "start": at, "length": 14, "kind": "value"},
    {"doc": 0, "start": at, "length": 14, "kind": "value"},
    {"doc": 0, "start": line_at, "length": 23, "kind": "line"},
    {"doc": 0, "start": line_at, "length": 23, "kind": "line"},
  ]
  outputs = [
    (doc[at : at + 14], True),  # exact
    (doc[at : at + 14] + list(b": x"), False),  # written, did not stop, breaks the file
    (doc[line_at : line_at + 23] + list(b"\n  x: 1"), False),  # the line stop cuts it
    (list(b" runs-on: [oops"), True),
  ]  # breaks the file
  rows = infill_eval.score(
    holes,
    outputs,
    docs,
    tokenizer=_Bytes(),
    newline=np.array([b == 10 for b in range(256)]),
    validator=inference.make_validator(str(shared_schema)),
  )
  assert [r["exact"] for r in rows] == [True, False, False, False]
  assert [r["written"] for r in rows] == [True, True, True, False]
  assert [r.get("line_stop") for r in rows] == [None, None, True, False]
  assert [r["valid"] for r in rows] == [True, False, False, False]
  out = infill_eval.summary(rows)
  assert out["infill_exact"] == 0.25 and out["infill_exact_value"] == 0.5
  assert out["infill_n_line"] == 2 and out["infill_exact_line_stop"] == 0.5
  assert out["infill_valid_after_fill"] == 0.25 and "infill_n_block" not in out
  assert out["infill_se_value"] == pytest.approx(0.5 / np.sqrt(2))  # sqrt(p (1 - p) / n)


class _TextTokenizer:
  name = "bpe"

  def __init__(self, text):
    self.text = text

  def decode(self, ids):
    del ids
    return self.text


def test_check_decodes_parses_and_validates(shared_schema):
  validator = inference.make_validator(str(shared_schema))
  good = (
    "name: CI\non:\n  push:\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n"
    "      - run: make\n"
  )
  s = inference.check(inference.Sample([1], True), _TextTokenizer(good), validator)
  assert (s.decoded, s.parsed, s.schema_valid) == (True, True, True), s.error  # `on` mapped back
  s = inference.check(inference.Sample([1], True), _TextTokenizer("name: CI\njobs: 3\n"), validator)
  assert (s.decoded, s.parsed, s.schema_valid) == (True, True, False)
  s = inference.check(inference.Sample([1], True), _TextTokenizer("a: [b\n"), validator)
  assert (s.decoded, s.parsed) == (True, False) and s.error.startswith("parse")
  s = inference.check(inference.Sample([1], False), _TextTokenizer(good), validator)
  assert not s.decoded and "EOS" in s.error


def test_generate_json_counts_are_consistent(trained_workdir, capsys, shared_schema):
  rc = generate_cli.main(
    [
      "--workdir",
      str(trained_workdir),
      "--num",
      "3",
      "--json",
      "--seed",
      "1",
      "--max_tokens",
      "40",
      "--schema",
      str(shared_schema),
    ]
  )
  assert rc == 0
  report = json.loads(capsys.readouterr().out)
  assert {"num", "decoded", "parsed", "schema_valid"} <= report.keys()
  assert report["num"] == 3
  assert 0 <= report["schema_valid"] <= report["parsed"] <= report["decoded"] <= report["num"]


def test_evaluate_cli_writes_a_report(trained_workdir, tmp_path, capsys):
  out = tmp_path / "report.json"
  rc = evaluate_cli.main(
    [
      "--workdir",
      str(trained_workdir),
      "--out",
      str(out),
      "--infill_holes",
      "4",
      "--generate_samples",
      "2",
      "--max_new_tokens",
      "8",
    ]
  )
  assert rc == 0, capsys.readouterr().err
  report = json.loads(out.read_text())
  for key in (
    "eval_loss",
    "eval_fim_loss",
    "eval_fim_first_acc",
    "eval_fim_eom_acc",
    "infill_exact",
    "infill_written",
    "infill_n",
    "infill_valid_after_fill",
    "gen_decoded_rate",
    "gen_parsed_rate",
    "gen_schema_valid_rate",
    "step",
  ):
    assert key in report, key
  assert report["infill_holes"] == 4
  for kind in ("value", "line", "span1", "span2_8"):  # 9+ tokens do not fit max-new 8
    assert report[f"infill_n_{kind}"] == 4, kind
  assert report["infill_n"] == sum(report.get(f"infill_n_{k}", 0) for k in infill_eval.KINDS)
  assert 0.0 <= report["infill_exact"] <= report["infill_written"] <= 1.0
  assert np.isfinite(report["eval_loss"]) and 0 <= report["eval_fim_eom_acc"] <= 1
  assert evaluate_cli.main(["--workdir", str(tmp_path / "none")]) == 1
  assert "no checkpoint" in capsys.readouterr().err


def test_training_loop_logs_sampling_metrics(trained_workdir):
  # The run was given no schema path: the workflow schema shipped with fimjax gives the rate.
  records = [json.loads(l) for l in open(trained_workdir / "metrics.jsonl")]
  evals = [r for r in records if "eval_loss" in r]
  assert (
    evals
    and {"eval_fim_loss", "infill_exact", "gen_decoded_rate", "gen_schema_valid_rate"}
    <= evals[-1].keys()
  )
  assert corpus.find_schema("") == corpus.BUNDLED_SCHEMA and corpus.BUNDLED_SCHEMA.is_file()


def test_a_missing_schema_in_the_training_loop_names_its_flag(tmp_path):
  config = ml_collections.ConfigDict({"data": {"schema_path": str(tmp_path / "no.json")}})
  with pytest.raises(ValueError, match=r"no\.json; fix --config\.data\.schema_path"):
    evaluate.evaluate(config, None, None, None)  # checked before any loss is computed


def test_evaluate_on_a_held_out_folder(trained_workdir, tmp_path, capsys):
  folder = tmp_path / "repo"
  folder.mkdir()
  (folder / "ci.yml").write_text(WORKFLOW)
  (folder / "broken.yml").write_text("on: [")
  rc = evaluate_cli.main(
    [
      "--workdir",
      str(trained_workdir),
      "--corpus",
      str(folder),
      "--infill_holes",
      "2",
      "--generate_samples",
      "0",
      "--max_new_tokens",
      "8",
      "--span_policy",
      "line",
    ]
  )
  assert rc == 0, capsys.readouterr().err
  report = json.loads(capsys.readouterr().out)
  assert report["corpus_summary"] == "kept 1 of 2; skipped: yaml_error 1"
  assert report["span_policy"] == "line" and report["infill_n_line"] == 2
  tok = cache_lib.load_cache(trained_workdir / "cache").tokenizer()
  assert report["eval_tokens"] == len(tok.encode(WORKFLOW)) + 1  # every token and EOS, once


def test_evaluate_every_hole_of_chosen_kinds(trained_workdir, tmp_path, capsys):
  (tmp_path / "ci.yml").write_text(WORKFLOW)
  args = ["--workdir", str(trained_workdir), "--corpus", str(tmp_path / "ci.yml")]
  args += ["--generate_samples", "0", "--max_new_tokens", "8", "--infill_kinds", "value,span1"]
  assert evaluate_cli.main(args + ["--infill_all"]) == 0, capsys.readouterr().err
  report = json.loads(capsys.readouterr().out)
  assert {k for k in infill_eval.KINDS if f"infill_n_{k}" in report} == {"value", "span1"}
  assert report["infill_n_span1"] == 1 and report["infill_holes"] == "all"  # a span per document
  assert evaluate_cli.main(args + ["--infill_holes", "1"]) == 0
  assert json.loads(capsys.readouterr().out)["infill_n_value"] == 1 < report["infill_n_value"]
  p, n = report["infill_exact_value"], report["infill_n_value"]
  assert report["infill_se_value"] == pytest.approx((p * (1 - p) / n) ** 0.5)
