"""Two processes on this machine (CPU, coordinator on 127.0.0.1) train as one run.

Each process feeds its own shard of every global batch; losses must equal a 1-process run with the
same global batch, and a resumed 2-process run must continue identically.
"""

import json
import socket
import subprocess
import sys

import numpy as np

from tests.train_test import REPO, SMALL, run_main, train_losses

# Unpacked rows: with packing, each process packs its own examples, so the rows (not the
# examples of an epoch) differ from a 1-process run.
COMMON = [*SMALL, "--config.data.pack=False", "--config.train.steps=6"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_two_processes(workdir, cache_dir, *extra, timeout=240):
  port = _free_port()
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "fimjax.main",
        "--config",
        str(REPO / "configs/tiny.py"),
        "--workdir",
        str(workdir),
        f"--config.data.cache_dir={cache_dir}",
        *COMMON,
        *extra,
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={i}",
      ],
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=timeout))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.communicate()
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, f"exit {p.returncode}\n{out}\n{err}"
  return outputs


def test_two_processes_match_one_and_resume_identically(tmp_path):
  cache_dir = tmp_path / "cache"
  run_main(tmp_path / "one", *COMMON[len(SMALL) :], cache_dir=cache_dir)
  one = train_losses(tmp_path / "one")

  outputs = run_two_processes(tmp_path / "two", cache_dir, "--config.train.stop_after_steps=4")
  assert "Validation at step 4" in outputs[0][0]
  assert "Validation" not in outputs[1][0]  # only process 0 reports
  outputs = run_two_processes(tmp_path / "two", cache_dir)
  assert "Resuming from step 4" in outputs[0][0]
  two = train_losses(tmp_path / "two")

  assert sorted(two) == sorted(one) == list(range(1, 7))
  np.testing.assert_allclose(
    [two[s] for s in range(1, 7)], [one[s] for s in range(1, 7)], rtol=1e-5
  )
  # Each process saved its own data-iterator state beside the shared arrays.
  data_files = sorted(
    p.name
    for p in (tmp_path / "two" / "checkpoints" / "6" / "data").iterdir()
    if p.suffix == ".json"
  )
  assert data_files == ["process_0-of-2.json", "process_1-of-2.json"]
  lines = [json.loads(l) for l in open(tmp_path / "two" / "metrics.jsonl")]
  assert len([l for l in lines if "loss" in l]) == 6  # one writer, no duplicate lines


def test_processes_with_different_caches_stop_with_one_line(tmp_path):
  """Each worker built its own cache from its own files (here: process 1 has one more): the run
  stops before training, on every process, naming what differs and the fix."""
  port = _free_port()
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "fimjax.main",
        "--config",
        str(REPO / "configs/tiny.py"),
        "--workdir",
        str(tmp_path / f"w{i}"),
        f"--config.data.cache_dir={tmp_path / f'c{i}'}",
        *COMMON,
        f"--config.data.corpus=synthetic:{60 + i}",
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={i}",
      ],
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  try:
    outputs = [p.communicate(timeout=240) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode != 0
    assert "process 1 (of 2; 1 differ) has another token cache than process 0" in err, err
    assert "share it (data.cache_dir" in err and "Traceback" not in err
  assert not (tmp_path / "w0" / "checkpoints").exists() or not any(
    (tmp_path / "w0" / "checkpoints").iterdir()
  )
