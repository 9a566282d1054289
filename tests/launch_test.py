"""Launch scripts: syntax, tpu_pod.sh's gcloud commands (dry run and a fake gcloud that runs the
worker scripts locally), the SLURM batch script's dry run, and the Colab notebook's structure."""

import json
import os
import pathlib
import re
import runpy
import shutil
import signal
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
LAUNCH = REPO / "launch"
TPU = LAUNCH / "tpu_pod.sh"
SBATCH = LAUNCH / "slurm_gpu.sbatch"
NOTEBOOK = LAUNCH / "colab.ipynb"

# Records every call; in dry-run tests it must never run. For `ssh --command=X` it runs X locally
# (so the worker scripts can be exercised with HOME pointing at a temporary "worker").
FAKE_GCLOUD = r"""#!/usr/bin/env bash
printf '%s\n' "$1 $2 $3 $4 $5" >> "$FAKE_GCLOUD_LOG"
if [ "${FAKE_GCLOUD_FORBID:-0}" = 1 ]; then
  echo "fake gcloud: called during a dry run" >&2
  exit 97
fi
if [ "$4" = ssh ]; then
  for a in "$@"; do
    case "$a" in --command=*) exec bash -c "${a#--command=}" ;; esac
  done
fi
if [ "$4" = describe ]; then
  if [ "${FAKE_GCLOUD_EXISTS:-0}" != 1 ]; then
    echo "ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: Resource not found" >&2
    exit 1
  fi
  echo READY
fi
exit 0
"""

# Stands in for the workers' venv python: prints its arguments, saves on SIGTERM.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "fake python args: $*"
echo "FOO=$FOO"
trap 'echo "saved checkpoint"; exit 0' TERM
while true; do sleep 0.1; done
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture
def fake_gcloud(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  gcloud = bin_dir / "gcloud"
  gcloud.write_text(FAKE_GCLOUD)
  gcloud.chmod(0o755)
  log = tmp_path / "gcloud_calls.log"
  env = dict(os.environ)
  env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
  env["FAKE_GCLOUD_LOG"] = str(log)
  env.pop("FIMJAX_REPO", None)
  env.pop("FIMJAX_REF", None)
  return env, log


def tpu(env, *args, timeout=20):
  return subprocess.run(
    ["bash", str(TPU), *args], env=env, capture_output=True, text=True, timeout=timeout
  )


BASE = ["--name", "fim-pod", "--zone", "us-central2-b"]
UP = BASE + [
  "--type",
  "v4-32",
  "--project",
  "my-proj",
  "--config",
  "configs/large.py",
  "--workdir",
  "gs://bucket/runs/large",
]


def test_scripts_parse():
  for script in (TPU, SBATCH):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_help(fake_gcloud):
  env, log = fake_gcloud
  r = tpu(env, "--help")
  assert r.returncode == 0
  for word in ("--zone", "--type", "--config", "--workdir", "--dry-run", "logs", "stop", "delete"):
    assert word in r.stdout
  assert not log.exists()


def test_dry_run_up_prints_commands_and_calls_nothing(fake_gcloud):
  env, log = fake_gcloud
  env["FAKE_GCLOUD_FORBID"] = "1"
  env["FIMJAX_REPO"] = "https://example.com/me/fimjax-fork"
  r = tpu(
    env,
    *UP,
    "--dry-run",
    "--config.train.steps=50",
    "--config.data.corpus=a b,c",
    "--",
    "--extra_flag",
  )
  assert r.returncode == 0, r.stderr
  assert not log.exists(), "gcloud was called in a dry run"
  out = r.stdout
  commands = [line for line in out.splitlines() if line.startswith("+ gcloud")]
  create = [c for c in commands if " tpu-vm create " in c]
  assert len(create) == 1
  for part in (
    "fim-pod",
    "--zone=us-central2-b",
    "--project=my-proj",
    "--accelerator-type=v4-32",
    "--version=tpu-ubuntu2204-base",
  ):
    assert part in create[0]
  # Each printed command runs from its "+ gcloud" line to the next "+ " or "# " line.
  blocks = re.split(r"(?m)^(?=\+ |# )", out)
  ssh = [b for b in blocks if b.startswith("+ gcloud compute tpus tpu-vm ssh fim-pod ")]
  assert len(ssh) == 2  # install, start
  install, start = ssh
  assert all("--worker=all" in b and "--zone=us-central2-b" in b for b in ssh)
  assert "https://example.com/me/fimjax-fork" in install
  assert "[tpu]" in install and "pip install" in install and "--python 3.12" in install
  assert "fimjax.main" not in install
  assert "nohup" in start
  assert (
    "-m fimjax.fit --config configs/large.py --topology v4:2x2x4 --check --config.train.steps=50"
  ) in out
  assert (
    "-m fimjax.main --config configs/large.py --workdir gs://bucket/runs/large "
    "--config.train.steps=50"
  ) in start
  assert "--config.data.corpus=a b,c" in start and "--extra_flag" in start
  assert out.index(create[0]) < out.index(install) < out.index(start)


def test_default_runtime_follows_type(fake_gcloud):
  env, _ = fake_gcloud
  env["FAKE_GCLOUD_FORBID"] = "1"
  for acc, version in [
    ("v5litepod-16", "v2-alpha-tpuv5-lite"),
    ("v5p-8", "v2-alpha-tpuv5"),
    ("v6e-8", "v2-alpha-tpuv6e"),
  ]:
    r = tpu(env, *BASE, "create", "--type", acc, "--dry-run", "--spot")
    assert r.returncode == 0, r.stderr
    assert f"--accelerator-type={acc} --version={version} --spot" in r.stdout
  r = tpu(env, *BASE, "create", "--type", "v5litepod-8", "--version", "custom-rt", "--dry-run")
  assert "--version=custom-rt" in r.stdout


@pytest.mark.parametrize(
  "drop, message",
  [
    ("--name", "--name is required"),
    ("--zone", "--zone is required"),
    ("--type", "--type is required"),
    ("--config", "--config is required"),
    ("--workdir", "--workdir is required"),
  ],
)
def test_missing_required_flag(fake_gcloud, drop, message):
  env, log = fake_gcloud
  args = list(UP)
  i = args.index(drop)
  del args[i : i + 2]
  r = tpu(env, *args, "--dry-run")
  assert r.returncode != 0
  assert message in r.stderr
  assert not log.exists()


def test_bad_arguments(fake_gcloud):
  env, log = fake_gcloud
  args = list(UP)
  args[args.index("gs://bucket/runs/large")] = "/tmp/local"
  r = tpu(env, *args, "--dry-run")
  assert r.returncode != 0 and "gs://" in r.stderr
  r = tpu(env, *UP, "--dry-run", "--no-such-flag")
  assert r.returncode != 0 and "unknown argument '--no-such-flag'" in r.stderr
  r = tpu(env, *BASE, "--stop", "--delete", "--dry-run")
  assert r.returncode != 0 and "two actions" in r.stderr
  assert not log.exists()


def test_dry_run_logs_stop_delete(fake_gcloud):
  env, log = fake_gcloud
  env["FAKE_GCLOUD_FORBID"] = "1"
  r = tpu(env, "--logs", *BASE, "--dry-run")
  assert r.returncode == 0, r.stderr
  assert "tpu-vm ssh fim-pod --zone=us-central2-b --worker=0" in r.stdout
  assert "tail -n 100 -F" in r.stdout and "fimjax-run.log" in r.stdout
  r = tpu(env, "stop", *BASE, "--dry-run")
  assert r.returncode == 0, r.stderr
  assert "--worker=all" in r.stdout and "kill -TERM" in r.stdout
  r = tpu(env, "--delete", *BASE, "--dry-run", "--yes")
  assert r.returncode == 0, r.stderr
  assert "+ gcloud compute tpus tpu-vm delete fim-pod --zone=us-central2-b --quiet" in r.stdout
  assert not log.exists()


def test_create_only_when_missing(fake_gcloud):
  env, log = fake_gcloud
  r = tpu(env, "create", *BASE, "--type", "v4-8")
  assert r.returncode == 0, r.stderr
  assert log.read_text().split("\n")[:2] == [
    "compute tpus tpu-vm describe fim-pod",
    "compute tpus tpu-vm create fim-pod",
  ]
  log.unlink()
  env["FAKE_GCLOUD_EXISTS"] = "1"
  r = tpu(env, "create", *BASE, "--type", "v4-8")
  assert r.returncode == 0, r.stderr
  assert "reusing TPU VM 'fim-pod' (state: READY)" in r.stderr
  assert log.read_text().splitlines() == ["compute tpus tpu-vm describe fim-pod"]


# Stands in for `python -m fimjax.fit`: records its arguments, exits with $FAKE_FIT_RC (3: the
# config does not fit, as `fimjax.fit --check` says).
FAKE_FIT = r"""#!/usr/bin/env bash
echo "$*" >> "$FAKE_FIT_LOG"
echo "per_device_bytes ... DOES NOT FIT"
exit "${FAKE_FIT_RC:-0}"
"""


@pytest.fixture
def fake_fit(fake_gcloud, tmp_path):
  env, log = fake_gcloud
  fit = tmp_path / "bin" / "fake_python"
  fit.write_text(FAKE_FIT)
  fit.chmod(0o755)
  env.update(FIMJAX_PYTHON=str(fit), FAKE_FIT_LOG=str(tmp_path / "fit_calls.log"))
  return env, log, tmp_path / "fit_calls.log"


def test_refuses_to_create_a_slice_the_config_does_not_fit(fake_fit):
  env, log, fit_log = fake_fit
  env["FAKE_FIT_RC"] = "3"
  r = tpu(
    env,
    "create",
    *BASE,
    "--type",
    "v5litepod-4",
    "--config",
    "configs/large.py",
    "--config.model.remat=False",
    "--",
    "--extra_flag",
  )
  assert r.returncode == 1
  assert "configs/large.py does not fit the memory of v5litepod-4's chips" in r.stderr
  assert "--skip-fit-check" in r.stderr
  assert fit_log.read_text().strip() == (
    "-m fimjax.fit --config configs/large.py --topology v5e:2x2 --check --config.model.remat=False"
  )
  assert log.read_text().splitlines() == ["compute tpus tpu-vm describe fim-pod"]  # no create


@pytest.mark.parametrize(
  "acc, topology",
  [
    ("v4-32", "v4:2x2x4"),
    ("v5p-8", "v5p:2x2x1"),
    ("v6e-8", "v6e:2x4"),
    ("v5litepod-16", "v5e:4x4"),
  ],
)
def test_fit_check_passes_then_creates(fake_fit, acc, topology):
  env, log, fit_log = fake_fit
  r = tpu(env, "create", *BASE, "--type", acc, "--config", "configs/small.py")
  assert r.returncode == 0, r.stderr
  assert f"--topology {topology} --check" in fit_log.read_text()
  assert log.read_text().splitlines()[:2] == [
    "compute tpus tpu-vm describe fim-pod",
    "compute tpus tpu-vm create fim-pod",
  ]


def test_fit_check_that_cannot_run_refuses_or_is_skipped(fake_fit):
  env, log, fit_log = fake_fit
  env["FAKE_FIT_RC"] = "1"  # e.g. no fimjax or libtpu on this machine
  args = ("create", *BASE, "--type", "v5p-8", "--config", "configs/small.py")
  r = tpu(env, *args)
  assert r.returncode == 1 and "the fit check could not run" in r.stderr
  r = tpu(env, *args, "--skip-fit-check")
  assert r.returncode == 0, r.stderr
  assert "tpu-vm create fim-pod" in log.read_text()
  assert len(fit_log.read_text().splitlines()) == 1  # skipped the second time


def test_local_config_is_copied_to_every_worker(fake_gcloud, tmp_path):
  env, log = fake_gcloud
  env["FAKE_GCLOUD_FORBID"] = "1"
  config = tmp_path / "my_config.py"
  config.write_text("def get_config(): ...\n")
  r = tpu(env, "start", *BASE, "--config", str(config), "--workdir", "gs://b/w", "--dry-run")
  assert r.returncode == 0, r.stderr
  assert f"tpu-vm scp {config} fim-pod:fimjax-configs/my_config.py" in r.stdout
  assert '--config "$HOME/fimjax-configs/"my_config.py --workdir gs://b/w' in r.stdout
  assert not log.exists()


def test_start_status_stop_on_a_fake_worker(fake_gcloud, tmp_path):
  """Runs the worker scripts for real (locally, HOME = a fake worker): start, status, stop."""
  env, log = fake_gcloud
  home = tmp_path / "home"
  (home / "fimjax").mkdir(parents=True)
  (home / "fimjax-venv" / "bin").mkdir(parents=True)
  python = home / "fimjax-venv" / "bin" / "python"
  python.write_text(FAKE_PYTHON)
  python.chmod(0o755)
  env["HOME"] = str(home)
  env["FAKE_GCLOUD_EXISTS"] = "1"
  pid_file, run_log = home / "fimjax-run.pid", home / "fimjax-run.log"
  try:
    r = tpu(
      env,
      "start",
      *BASE,
      "--config",
      "configs/tiny.py",
      "--workdir",
      "gs://b/w",
      "--config.train.steps=7",
      "--env",
      "FOO=bar baz",
    )
    assert r.returncode == 0, r.stderr
    assert "fimjax started on" in r.stdout
    for _ in range(50):
      if "fake python args" in run_log.read_text():
        break
      time.sleep(0.1)
    assert (
      "fake python args: -m fimjax.main --config configs/tiny.py --workdir gs://b/w "
      "--config.train.steps=7"
    ) in run_log.read_text()
    assert "FOO=bar baz" in run_log.read_text()
    # A second start refuses while one runs.
    r = tpu(env, "start", *BASE, "--config", "configs/tiny.py", "--workdir", "gs://b/w")
    assert r.returncode != 0 and "already runs" in r.stderr
    r = tpu(env, "status", *BASE)
    assert r.returncode == 0, r.stderr
    assert "running (pid" in r.stdout
    r = tpu(env, "stop", *BASE, "--timeout", "10")
    assert r.returncode == 0, r.stderr
    assert "stopped" in r.stdout
    assert "saved checkpoint" in run_log.read_text()
    assert not pid_file.exists()
    r = tpu(env, "logs", *BASE, "--no-follow", "--lines", "5")
    assert r.returncode == 0 and "saved checkpoint" in r.stdout
  finally:
    if pid_file.exists():
      try:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
      except (ProcessLookupError, ValueError):
        pass
  calls = log.read_text().splitlines()
  assert calls and all(c.startswith("compute tpus tpu-vm ") for c in calls)
  assert {c.split()[3] for c in calls} == {"ssh", "describe"}


def test_sbatch_directives_and_dry_run(tmp_path):
  text = SBATCH.read_text()
  directives = [line for line in text.splitlines() if line.startswith("#SBATCH ")]
  for option in (
    "--nodes=",
    "--ntasks-per-node=",
    "--gpus-per-node=",
    "--time=",
    "--signal=TERM@",
    "--output=",
  ):
    assert any(option in d for d in directives), option
  assert "[cuda]" in text and "srun" in text
  env = dict(
    os.environ,
    FIMJAX_DRY_RUN="1",
    SLURM_SUBMIT_DIR=str(REPO),
    FIMJAX_HOME=str(tmp_path / "fj"),
    SLURM_JOB_ID="123",
    SLURM_CPUS_PER_TASK="4",
  )
  r = subprocess.run(
    [
      "bash",
      str(SBATCH),
      "--config",
      "configs/large.py",
      "--workdir",
      "runs/x",
      "--config.train.steps=5",
    ],
    env=env,
    capture_output=True,
    text=True,
    timeout=20,
  )
  assert r.returncode == 0, r.stderr
  assert f"-m pip install --quiet -e {REPO}\\[cuda\\]" in r.stdout
  srun = [line for line in r.stdout.splitlines() if line.startswith("+ srun")]
  assert len(srun) == 1
  assert "--cpus-per-task=4" in srun[0] and "--kill-on-bad-exit=1" in srun[0]
  assert (
    f"-m fimjax.main --config {REPO}/configs/large.py --workdir {REPO}/runs/x "
    "--config.train.steps=5"
  ) in srun[0]
  assert not (tmp_path / "fj").exists()


def test_notebook_structure():
  nb = json.loads(NOTEBOOK.read_text())
  assert nb["nbformat"] == 4 and isinstance(nb["nbformat_minor"], int)
  assert nb["metadata"]["kernelspec"]["language"] == "python"
  code = []
  for cell in nb["cells"]:
    assert cell["cell_type"] in ("code", "markdown")
    assert isinstance(cell["source"], list) and isinstance(cell["metadata"], dict)
    if cell["cell_type"] == "code":
      assert cell["outputs"] == [] and cell["execution_count"] is None
      src = "".join(cell["source"])
      stripped = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("!", "%")))
      compile(stripped, f"colab cell {cell.get('id')}", "exec")
      code.append(src)
  assert len(code) >= 4
  text = NOTEBOOK.read_text()
  assert "configs/tiny.py" in text and "fimjax.infill" in text and "<FILL>" in text
  assert "jax.devices()" in text and "metrics.jsonl" in text


def test_notebook_matches_its_generator():
  made = runpy.run_path(str(LAUNCH / "make_colab.py"))["notebook"]()
  assert json.loads(NOTEBOOK.read_text()) == made, "run: python launch/make_colab.py"
