"""Metrics files, their mirror to a remote run directory, and the loss plot."""

import json

from fimjax import checkpoint
from fimjax import metrics
from fimjax import plot


def test_writer_appends_json_lines_and_mirrors_them(tmp_path):
  local, remote = tmp_path / "local", tmp_path / "remote"
  remote.mkdir()
  w = metrics.MetricsWriter(str(local), enabled=True, mirror=str(remote))
  w.write(1, {"loss": 2.5, "grad_norm": float("nan")})
  w.write(2, {"loss": 2.0, "eval_loss": 2.2})
  w.flush()
  lines = [json.loads(l) for l in (local / "metrics.jsonl").read_text().splitlines()]
  assert lines == [
    {"step": 1, "loss": 2.5, "grad_norm": "nan"},
    {"step": 2, "loss": 2.0, "eval_loss": 2.2},
  ]
  assert (remote / "metrics.jsonl").read_text() == (local / "metrics.jsonl").read_text()
  w.close()
  assert metrics.read_metrics(str(local))[1]["eval_loss"] == 2.2


def test_bucket_workdirs_keep_local_files_local(monkeypatch, tmp_path):
  monkeypatch.setenv("FIMJAX_LOCAL_DIR", str(tmp_path))
  assert checkpoint.local_dir("runs/a") == "runs/a"
  assert checkpoint.local_dir("gs://bucket/runs/a") == str(tmp_path / "gs/bucket/runs/a")


def test_plot_uses_the_latest_record_of_a_repeated_step(tmp_path):
  w = metrics.MetricsWriter(str(tmp_path), enabled=True)
  for step, loss in [(1, 3.0), (2, 2.0), (2, 1.5), (3, 1.0)]:  # step 2 logged twice (resume)
    w.write(step, {"loss": loss})
  w.write(3, {"eval_loss": 1.2})
  w.close()
  steps, values = plot._series(metrics.read_metrics(str(tmp_path)), "loss")  # pylint: disable=protected-access
  assert steps == [1, 2, 3] and values == [3.0, 1.5, 1.0]
  out = plot.plot_losses(str(tmp_path))
  assert out.endswith("loss.png") and (tmp_path / "loss.png").stat().st_size > 1000


def test_the_eval_line_gives_each_hole_kind_its_sample_size_and_error():
  line = metrics.eval_line(
    {
      "eval_loss": 2.3,
      "infill_exact": 0.07,
      "infill_exact_value": 0.25,
      "infill_n_value": 96,
      "infill_se_value": 0.0442,
      "infill_exact_line": 0.0,
      "infill_n_line": 16,
      "infill_se_line": 0.0,
    }
  )
  assert line == (
    "validation loss 2.3000, infill exact match 7.0%, value 25% of 96 (+-4), line 0% of 16"
  )
