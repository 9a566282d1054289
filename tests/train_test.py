"""The training loop as a user meets it: exact resume, faults, config guards, logs.

Runs `python -m fimjax.main` in subprocesses (a restart must be a new process) on a very small
model; all runs share one token cache built once.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

SMALL = [
  "--config.model.d_model=32",
  "--config.model.num_layers=2",
  "--config.model.num_heads=2",
  "--config.model.context=64",
  "--config.train.batch_size=8",
  "--config.train.eval_batch_size=16",
  "--config.train.log_every_steps=1",
  "--config.train.eval_every_steps=4",
  "--config.train.checkpoint_every_steps=2",
  "--config.train.progress=False",
  "--config.data.corpus=synthetic:60",
  "--config.data.bpe_vocab_size=400",
  "--config.data.val_fraction=0.1",
  "--config.data.tokenizer=bpe",
  "--config.optim.warmup_steps=2",
  "--nodemo",
]


def run_main(workdir, *extra, cache_dir, env=None, check=True, timeout=240):
  cmd = [
    sys.executable,
    "-m",
    "fimjax.main",
    "--config",
    str(REPO / "configs/tiny.py"),
    "--workdir",
    str(workdir),
    f"--config.data.cache_dir={cache_dir}",
    *SMALL,
    *extra,
  ]
  proc = subprocess.run(
    cmd,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
    env={**os.environ, **(env or {})},
  )
  if check and proc.returncode != 0:
    raise AssertionError(f"{' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
  return proc


def train_losses(workdir) -> dict[int, float]:
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r["loss"] for r in lines if "loss" in r}


def saved_params(workdir, step):
  restored = ocp.StandardCheckpointer().restore(
    pathlib.Path(workdir).resolve() / "checkpoints" / str(step) / "state"
  )
  return restored["params"]


def leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top

  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("cache") / "c"


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, cache_dir):
  """8 steps in one go: the reference the other tests compare against."""
  workdir = tmp_path_factory.mktemp("straight")
  proc = run_main(workdir, "--config.train.steps=8", "--demo", cache_dir=cache_dir)
  return workdir, proc


def test_run_writes_metrics_checkpoints_and_plot(straight_run):
  workdir, proc = straight_run
  # The run ends by filling one held-out hole (a line) and showing it beside the file's text.
  assert "One held-out hole" in proc.stdout and "<FILL>" in proc.stdout
  assert "model wrote:" in proc.stdout and "the file has:" in proc.stdout
  records = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  steps = [r["step"] for r in records if "loss" in r]
  assert steps == list(range(1, 9))
  for r in records:
    if "loss" in r:
      assert {"ar_loss", "fim_loss", "grad_norm", "lr", "tokens_per_s", "mfu"} <= r.keys()
      assert np.isfinite(r["loss"]) and r["tokens_per_s"] > 0
  evals = [r for r in records if "eval_loss" in r]
  assert [r["step"] for r in evals] == [4, 8]
  assert all(np.isfinite(r["eval_loss"]) and np.isfinite(r["eval_fim_loss"]) for r in evals)
  assert (workdir / "loss.png").stat().st_size > 1000
  assert list((workdir / "tensorboard").iterdir())
  assert "Validation at step 8" in proc.stdout and "metrics.jsonl" in proc.stdout
  kept = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert kept[-1] == 8 and len(kept) <= 4  # last 3 + best


def test_rerun_of_finished_run_says_complete(straight_run, cache_dir):
  workdir, _ = straight_run
  before = (workdir / "metrics.jsonl").read_text()
  proc = run_main(workdir, "--config.train.steps=8", cache_dir=cache_dir)
  assert "already complete" in proc.stdout
  assert (workdir / "metrics.jsonl").read_text() == before


def test_resume_in_new_process_is_exact(straight_run, tmp_path, cache_dir):
  straight, _ = straight_run
  run_main(
    tmp_path, "--config.train.steps=8", "--config.train.stop_after_steps=4", cache_dir=cache_dir
  )
  proc = run_main(tmp_path, "--config.train.steps=8", cache_dir=cache_dir)
  assert "Resuming from step 4" in proc.stdout
  assert train_losses(tmp_path) == train_losses(straight)  # same floats, FIM randomness included
  for a, b in zip(leaves(saved_params(tmp_path, 8)), leaves(saved_params(straight, 8))):
    np.testing.assert_array_equal(a, b)


def test_resume_onto_fsdp_mesh_of_8_devices(straight_run, tmp_path, cache_dir):
  straight, _ = straight_run
  run_main(
    tmp_path, "--config.train.steps=8", "--config.train.stop_after_steps=4", cache_dir=cache_dir
  )
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  run_main(
    tmp_path,
    "--config.train.steps=8",
    "--config.mesh.data=1",
    "--config.mesh.fsdp=8",
    cache_dir=cache_dir,
    env=env,
  )
  a, b = train_losses(tmp_path), train_losses(straight)
  assert sorted(a) == sorted(b)
  np.testing.assert_allclose([a[s] for s in sorted(a)], [b[s] for s in sorted(b)], rtol=2e-4)


def test_corrupt_latest_checkpoint_falls_back_to_previous(straight_run, tmp_path, cache_dir):
  run_main(
    tmp_path, "--config.train.steps=8", "--config.train.stop_after_steps=6", cache_dir=cache_dir
  )
  # Damage every array file of the latest checkpoint (a torn write).
  damaged = 0
  for path in (tmp_path / "checkpoints" / "6" / "state").rglob("*"):
    if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
      path.write_bytes(b"\0garbage")
      damaged += 1
  assert damaged
  proc = run_main(tmp_path, "--config.train.steps=8", cache_dir=cache_dir)
  assert "unreadable" in proc.stdout + proc.stderr
  assert "Resuming from step 4" in proc.stdout
  assert (tmp_path / "checkpoints_unreadable" / "6").is_dir()  # kept, not deleted
  straight, _ = straight_run
  assert train_losses(tmp_path)[8] == train_losses(straight)[8]


def test_flipped_bit_in_array_data_falls_back_to_previous(straight_run, tmp_path, cache_dir):
  from fimjax import checkpoint, checksums  # pylint: disable=g-import-not-at-top

  straight, _ = straight_run
  workdir = tmp_path / "w"
  shutil.copytree(straight, workdir)
  state_dir = workdir / "checkpoints" / "8" / "state"
  data = max(
    (p for p in state_dir.rglob("*") if p.is_file() and p.parent.name == "d"),
    key=lambda p: p.stat().st_size,
  )  # an ocdbt file of compressed chunks
  raw = bytearray(data.read_bytes())
  raw[len(raw) // 2] ^= 0x10
  data.write_bytes(bytes(raw))
  # Orbax alone reads it without complaint, into other values: what the checksums are for.
  read = lambda d: leaves(ocp.StandardCheckpointer().restore(d.resolve()))  # noqa: E731
  assert any(
    not np.array_equal(a, b)
    for a, b in zip(read(state_dir), read(straight / "checkpoints" / "8" / "state"))
  )
  # A tool that only reads the run names the array and the other steps, and moves nothing.
  with pytest.raises(
    checksums.ChecksumError,
    match=r"checkpoints/8: array \S+ differs .*pass another --step \(have: ",
  ):
    checkpoint.load_run(str(workdir), step=8)
  assert not (workdir / "checkpoints_unreadable").exists()
  proc = run_main(workdir, "--config.train.steps=8", cache_dir=cache_dir)
  notes = [l for l in proc.stdout.splitlines() if "is unreadable" in l]
  assert len(notes) == 1 and "checkpoints/8" in notes[0] and "ChecksumError" in notes[0], notes
  assert "Resuming from step 6" in proc.stdout
  assert (workdir / "checkpoints_unreadable" / "8").is_dir()  # kept, not deleted
  assert train_losses(workdir)[8] == train_losses(straight)[8]


def _empty_folder(step_dir):
  shutil.rmtree(step_dir)
  step_dir.mkdir()


@pytest.mark.parametrize(
  "damage",
  [
    lambda d: (d / "config" / "metadata").write_text('{"model": {"d_mo'),
    lambda d: (d / "meta" / "metadata").write_bytes(b"\xff\0"),
    _empty_folder,
    lambda d: shutil.rmtree(d / "data"),
  ],
  ids=["config_json", "meta_json", "empty_folder", "missing_item"],
)
def test_every_unreadable_part_falls_back_to_previous(straight_run, tmp_path, cache_dir, damage):
  straight, _ = straight_run
  workdir = tmp_path / "w"
  shutil.copytree(straight, workdir)
  damage(workdir / "checkpoints" / "8")
  proc = run_main(workdir, "--config.train.steps=8", cache_dir=cache_dir)
  notes = [l for l in proc.stdout.splitlines() if "is unreadable" in l]
  assert len(notes) == 1 and "checkpoints/8" in notes[0], proc.stdout
  assert "Resuming from step 6" in proc.stdout
  assert (workdir / "checkpoints_unreadable" / "8").is_dir()  # kept, not deleted
  assert train_losses(workdir)[8] == train_losses(straight)[8]


def test_sigterm_saves_and_exits_cleanly(tmp_path, cache_dir, straight_run):
  del straight_run  # only to have the cache built
  cmd = [
    sys.executable,
    "-m",
    "fimjax.main",
    "--config",
    str(REPO / "configs/tiny.py"),
    "--workdir",
    str(tmp_path),
    f"--config.data.cache_dir={cache_dir}",
    *SMALL,
    "--config.train.steps=100000",
    "--config.train.checkpoint_every_steps=100000",
    "--config.train.eval_every_steps=100000",
  ]
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.monotonic() + 180
    metrics = tmp_path / "metrics.jsonl"
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
      assert proc.poll() is None, proc.communicate()
      assert time.monotonic() < deadline, "training did not start"
      time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, err
  assert "SIGTERM received" in out + err
  steps = [int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
  assert len(steps) == 1 and steps[0] >= 3


def test_nonfinite_loss_stops_naming_the_step(tmp_path, cache_dir, straight_run):
  del straight_run
  proc = run_main(
    tmp_path,
    "--config.train.steps=8",
    "--config.optim.lr=1e30",
    "--config.optim.warmup_steps=1",
    "--config.optim.grad_clip=1e30",
    cache_dir=cache_dir,
    check=False,
  )
  assert proc.returncode != 0
  assert "non-finite loss or gradient at step" in proc.stderr
  assert "Traceback" not in proc.stderr
  for step_dir in (tmp_path / "checkpoints").glob("[0-9]*"):
    for leaf in leaves(saved_params(tmp_path, int(step_dir.name))):
      assert np.isfinite(leaf).all()


def test_incompatible_config_is_refused_with_the_fields(straight_run, cache_dir):
  workdir, _ = straight_run
  proc = run_main(
    workdir,
    "--config.train.steps=10",
    "--config.model.d_model=64",
    "--config.fim.rate=0.3",
    cache_dir=cache_dir,
    check=False,
  )
  assert proc.returncode != 0
  assert "model.d_model: saved 32, now 64" in proc.stderr
  assert "fim.rate: saved 0.9, now 0.3" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_bad_config_key_and_missing_corpus_are_one_line_errors(tmp_path, cache_dir):
  proc = run_main(tmp_path, "--config.train.stepz=3", cache_dir=cache_dir, check=False)
  assert proc.returncode == 2 and "config.train.stepz" in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1
  proc = run_main(
    tmp_path / "w",
    "--config.data.corpus=/no/such/folder",
    cache_dir=tmp_path / "other_cache",
    check=False,
  )
  assert proc.returncode != 0 and "/no/such/folder" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_log_lines_profile_and_wandb_without_a_terminal(tmp_path, cache_dir):
  """Not a TTY (as under SLURM or nohup): a plain line per log step, not a progress bar; a
  2-step profile; W&B offline (no network) gets the same metrics."""
  proc = run_main(
    tmp_path,
    "--config.train.steps=3",
    "--config.train.progress=True",
    "--config.train.profile_steps=1,2",
    "--config.train.wandb_project=fimjax-test",
    cache_dir=cache_dir,
    env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"},
  )
  lines = [l for l in proc.stdout.splitlines() if l.startswith("step ") and "loss=" in l]
  assert [l.split()[1] for l in lines] == ["1/3", "2/3", "3/3"], proc.stdout
  assert "eta" in lines[0] and "\r" not in proc.stdout + proc.stderr
  assert "profile of steps 2-3 written to" in proc.stdout
  traces = list((tmp_path / "profile").rglob("*.xplane.pb"))
  perfetto = list((tmp_path / "profile").rglob("perfetto_trace.json.gz"))
  assert traces and traces[0].stat().st_size > 0 and perfetto
  run_id = (tmp_path / "wandb_id").read_text().strip()
  runs = list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
  assert runs and list(runs[0].glob("*.wandb")), list((tmp_path / "wandb").iterdir())


def test_bad_profile_steps_is_one_line(tmp_path, cache_dir):
  proc = run_main(
    tmp_path,
    "--config.train.steps=3",
    "--config.train.profile_steps=5",
    cache_dir=cache_dir,
    check=False,
  )
  assert proc.returncode != 0
  assert "--config.train.profile_steps='5': must be \"START,COUNT\"" in proc.stderr
  assert "Traceback" not in proc.stderr
