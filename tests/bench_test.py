"""bench/: the shared statistics and table, the suite's bench list and derived rows, and one
bench function at a tiny size."""

import argparse
import json
import pathlib
import subprocess
import sys

import pytest

from bench import common
from bench import __main__ as suite

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_stats_median_and_spread():
  s = common.stats([3.0, 1.0, 10.0, 2.0])
  assert s == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4, "spread": pytest.approx(1.8)}
  assert common.stats([2.0])["spread"] == 0.0
  assert common.rates(10, [2.0, 5.0]) == [5.0, 2.0]


def test_table_markdown():
  t = common.table(
    [{"what": "a", "median": 1234.5678, "n": 3}, {"what": "b"}], ["what", "median", "n"]
  )
  assert t.splitlines() == [
    "| what | median | n |",
    "|---|---|---|",
    "| a | 1235 | 3 |",
    "| b |  |  |",
  ]


def test_options_quick_then_explicit():
  p = argparse.ArgumentParser()
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--batch", type=int, default=8)
  assert common.options(p, {"steps": 2}, False, {}) == {"steps": 5, "batch": 8}
  assert common.options(p, {"steps": 2}, True, {"batch": 1}) == {"steps": 2, "batch": 1}
  with pytest.raises(TypeError):
    common.options(p, {}, True, {"nope": 1})


def test_list_names_every_bench_module():
  out = subprocess.run(
    [sys.executable, "-m", "bench", "--list"], cwd=REPO, check=True, capture_output=True, text=True
  ).stdout.split()
  assert sorted(out) == sorted(p.stem for p in (REPO / "bench").glob("*_bench.py"))
  assert out[:4] == ["cache_bench", "pipeline_bench", "packing_bench", "train_step_bench"]


def test_real_token_rows_and_markdown():
  train = {
    "config": "small",
    "batch": 4,
    "context": 512,
    "median": 1000.0,
    "min": 900.0,
    "max": 1100.0,
    "n": 3,
    "spread": 0.1,
    "mfu": 0.4,
    "peak_tflops": 0.3,
    "compile_s": 5.0,
    "what": "train step small",
    "unit": "tokens/s",
  }
  packing = [
    {
      "context": c,
      "pack": pack,
      "median": f,
      "what": "p",
      "unit": "fraction",
      "spread": 0.0,
      "n": 3,
    }
    for c in (512, 1024)
    for pack, f in ((True, 0.99), (False, 0.5))
  ]
  results = {"train_step_bench": {"rows": [train]}, "packing_bench": {"rows": packing}}
  rows = suite.real_token_rows(results)
  assert [(r["median"], r["min"], r["spread"]) for r in rows] == [
    (pytest.approx(990.0), pytest.approx(891.0), 0.1),
    (500.0, 450.0, 0.1),
  ]
  assert "packed" in rows[0]["what"] and "unpacked" in rows[1]["what"]
  m = {
    "date": "2026-01-01",
    "cpu": "X",
    "cores": 2,
    "accelerator": "cpu",
    "num_devices": 1,
    "python": "3.12",
    "platform": "cpu",
    "versions": {k: "1" for k in ("jax", "flax", "grain", "orbax-checkpoint")},
  }
  md = suite.markdown(
    {
      "machine": m,
      "rows": [train] + rows,
      "load_avg_start": [1, 2, 3],
      "load_avg_end": [1, 2, 3],
      "total_s": 60.0,
      "targets": {"t": True},
      "benches": {"x": {"error": "exit status 1", "wall_s": 2.0}},
    }
  )
  assert "| train step small | 1000 | 10.0% | tokens/s | 3 | MFU 40.0% of 0.3 TFLOP/s" in md
  assert "- target t: met" in md and "- x failed: exit status 1" in md
  assert (
    suite.machine_slug({**m, "cpu": "Intel(R) Xeon(R) Processor"}) == "cpu2-intel-xeon-processor"
  )


def test_pipeline_bench_tiny_run():
  from bench import pipeline_bench  # pylint: disable=g-import-not-at-top

  res = pipeline_bench.run(
    source="synthetic", cores=0, context=64, batch=2, seconds=0.02, repeat=2, threads=0
  )
  assert len(res["rows"]) == 4 and set(res["targets"]) == {"at_least_2M_tokens_per_s_per_core"}
  for r in res["rows"]:
    assert {"what", "unit", "median", "spread", "min", "max"} <= set(r) and r["n"] == 2
    assert r["min"] <= r["median"] <= r["max"] and 0 < r["real_fraction"] <= 1


def test_quality_sweep_rows_pair_each_evaluation_with_the_train_loss_before_it(tmp_path):
  sys.path.insert(0, str(REPO / "bench"))
  import quality_sweep  # pylint: disable=import-outside-toplevel

  records = [
    {"step": 10, "loss": 3.0},
    {"step": 20, "loss": 2.0},
    {"step": 20, "eval_loss": 2.5, "eval_fim_eom_acc": 0.75, "infill_exact_value": 0.3},
    {"step": 30, "loss": 1.0},
    {"step": 40, "eval_loss": 2.25, "eval_fim_eom_acc": 0.0},  # an AR run: no infill figures
  ]
  (tmp_path / "long4800").mkdir()
  (tmp_path / "long4800" / "metrics.jsonl").write_text(
    "".join(json.dumps(r) + "\n" for r in records)
  )
  rows = quality_sweep.rows(tmp_path, ["long4800", "ar4800"])  # ar4800 never ran: no rows
  assert [(r["variant"], r["step"], r["loss"]) for r in rows] == [
    ("long4800", 20, 2.0),
    ("long4800", 40, 1.0),
  ]
  lines = quality_sweep.table(rows).splitlines()
  assert lines[2].startswith("| long4800 | 20 | 2.000 | 2.500 | 75 | 30 | - |")
  assert lines[3].startswith("| long4800 | 40 | 1.000 | 2.250 | 0 | - |")
  out = subprocess.run(
    [sys.executable, "bench/quality_sweep.py", "--root", str(tmp_path), "--variants", "nope"],
    cwd=REPO,
    capture_output=True,
    text=True,
  )
  assert out.returncode == 2 and "unknown ['nope']" in out.stderr
