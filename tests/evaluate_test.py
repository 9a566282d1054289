"""Evaluation: exact-match buckets, held-out holes, generation validity, the CLIs and the loop."""

import json

import numpy as np

from fimjax import evaluate
from fimjax import generate
from fimjax.data import cache as cache_lib


def test_bucket_boundaries():
  assert [evaluate.bucket_of(n) for n in (1, 2, 8, 9, 32, 33, 500)] == [
      "len1", "len2_8", "len2_8", "len9_32", "len9_32", "len33plus", "len33plus"]


def test_exact_match_summary_on_a_hand_made_case():
  holes = [{"kind": k} for k in ("len1", "len1", "len2_8", "len9_32", "len9_32", "len9_32",
                                 "line", "line")]
  matches = [True, False, True, False, False, True, True, False]
  out = evaluate.exact_match_summary(holes, matches)
  assert out == {"infill_exact": 3 / 6, "infill_n": 6,
                 "infill_exact_len1": 0.5, "infill_n_len1": 2,
                 "infill_exact_len2_8": 1.0, "infill_n_len2_8": 1,
                 "infill_exact_len9_32": 1 / 3, "infill_n_len9_32": 3,
                 "infill_exact_line": 0.5, "infill_n_line": 2}  # empty len33plus: absent


def test_held_out_holes_are_fixed_and_well_formed():
  rng = np.random.default_rng(0)
  NL = 7  # the "newline" token
  docs_list = [list(rng.integers(0, 7, n)) for n in (3, 40, 90, 200)]
  for d in docs_list[1:]:
    d[::6] = [NL] * len(d[::6])
  docs = cache_lib.Documents.from_lists(docs_list)
  newline = np.zeros(8, bool)
  newline[NL] = True
  holes = evaluate.make_holes(docs, 40, 64, newline_ids=newline, seed=3)
  assert holes == evaluate.make_holes(docs, 40, 64, newline_ids=newline, seed=3)
  assert holes != evaluate.make_holes(docs, 40, 64, newline_ids=newline, seed=4)
  spans = [h for h in holes if h["kind"] != "line"]
  lines = [h for h in holes if h["kind"] == "line"]
  assert len(spans) == 40 and len(lines) == 10
  assert {h["kind"] for h in spans} == {"len1", "len2_8", "len9_32", "len33plus"}
  for h in holes:
    n = docs.lengths[h["doc"]]
    assert 1 <= h["length"] <= 63 and 0 <= h["start"] and h["start"] + h["length"] <= n
  for h in spans:
    assert h["kind"] == evaluate.bucket_of(h["length"])
  for h in lines:  # from a line start to the next one
    toks = docs[h["doc"]]
    assert toks[h["start"]] == NL and NL not in toks[h["start"] + 1:h["start"] + h["length"]]
    assert h["start"] + h["length"] == len(toks) or toks[h["start"] + h["length"]] == NL


class _TextTokenizer:
  name = "bpe"

  def __init__(self, text):
    self.text = text

  def decode(self, ids):
    del ids
    return self.text


def test_check_decodes_parses_and_validates(shared_schema):
  validator = generate.make_validator(str(shared_schema))
  good = "name: CI\non:\n  push:\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n" \
         "      - run: make\n"
  s = generate.check(generate.Sample([1], True), _TextTokenizer(good), validator)
  assert (s.decoded, s.parsed, s.schema_valid) == (True, True, True), s.error  # `on` mapped back
  s = generate.check(generate.Sample([1], True), _TextTokenizer("name: CI\njobs: 3\n"), validator)
  assert (s.decoded, s.parsed, s.schema_valid) == (True, True, False)
  s = generate.check(generate.Sample([1], True), _TextTokenizer("a: [b\n"), validator)
  assert (s.decoded, s.parsed) == (True, False) and s.error.startswith("parse")
  s = generate.check(generate.Sample([1], False), _TextTokenizer(good), validator)
  assert not s.decoded and "EOS" in s.error


def test_generate_json_counts_are_consistent(trained_workdir, capsys, shared_schema):
  rc = generate.main(["--workdir", str(trained_workdir), "--num", "3", "--json", "--seed", "1",
                      "--max-tokens", "40", "--schema", str(shared_schema)])
  assert rc == 0
  report = json.loads(capsys.readouterr().out)
  assert {"num", "decoded", "parsed", "schema_valid"} <= report.keys()
  assert report["num"] == 3
  assert 0 <= report["schema_valid"] <= report["parsed"] <= report["decoded"] <= report["num"]


def test_evaluate_cli_writes_a_report(trained_workdir, tmp_path, capsys):
  out = tmp_path / "report.json"
  rc = evaluate.main(["--workdir", str(trained_workdir), "--out", str(out), "--infill-holes", "4",
                      "--generate-samples", "2", "--max-new-tokens", "8"])
  assert rc == 0, capsys.readouterr().err
  report = json.loads(out.read_text())
  for key in ("eval_loss", "eval_fim_loss", "infill_exact", "infill_written", "infill_n",
              "gen_decoded_rate", "gen_parsed_rate", "step"):
    assert key in report, key
  assert report["infill_n"] == 4 and report["infill_holes"] == 4
  assert 0.0 <= report["infill_exact"] <= report["infill_written"] <= 1.0
  assert np.isfinite(report["eval_loss"])
  assert evaluate.main(["--workdir", str(tmp_path / "none")]) == 1
  assert "no checkpoint" in capsys.readouterr().err


def test_training_loop_logs_sampling_metrics(trained_workdir):
  records = [json.loads(l) for l in open(trained_workdir / "metrics.jsonl")]
  evals = [r for r in records if "eval_loss" in r]
  assert evals and {"eval_fim_loss", "infill_exact", "gen_decoded_rate"} <= evals[-1].keys()
