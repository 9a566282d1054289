"""Writes launch/colab.ipynb (nbformat 4, outputs empty) from the cells below.

Run after editing the cells: python launch/make_colab.py
Plain json, so that no nbformat/jupyter package is needed to build or check the notebook.
"""

import json
import pathlib

OUT = pathlib.Path(__file__).resolve().parent / "colab.ipynb"

INTRO = """\
# fimjax in Colab: train a tiny fill-in-the-middle model on GitHub Actions workflows

This notebook installs [fimjax](https://github.com/fimjax/fimjax), trains the `tiny` config
(`configs/tiny.py`, about 3M parameters) on the embedded corpus of workflows, shows the loss
curve, and asks the model to fill a hole in a workflow.

It runs on whatever the runtime has: CPU, a GPU or a TPU (*Runtime > Change runtime type*).
On a CPU runtime training takes a few minutes; on a GPU or TPU, less.

The run lives in `runs/tiny` inside the checkout. Running the training cell again with the same
workdir resumes from the last checkpoint (raise `STEPS` to train longer). Colab deletes the
files when the runtime is recycled: to keep them, mount Google Drive and set `WORKDIR` to a
folder in it (see the commented lines in the training cell).
"""

INSTALL = """\
import os
import pathlib
import subprocess
import sys

FIMJAX_REPO = "https://github.com/fimjax/fimjax"  # or your fork
FIMJAX_REF = "main"  # branch, tag or commit


def sh(args, cwd=None):
  \"\"\"Runs a command, streaming its output into the cell; raises if it fails.\"\"\"
  print("$", " ".join(str(a) for a in args), flush=True)
  proc = subprocess.Popen([str(a) for a in args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
  while chunk := proc.stdout.read1(4096):
    sys.stdout.write(chunk.decode(errors="replace"))
    sys.stdout.flush()
  if proc.wait() != 0:
    raise RuntimeError(f"command failed with exit status {proc.returncode}")


def is_checkout(path):
  pyproject = pathlib.Path(path) / "pyproject.toml"
  return pyproject.is_file() and 'name = "fimjax"' in pyproject.read_text()


assert sys.version_info >= (3, 12), f"fimjax needs Python 3.12+, this runtime has {sys.version}"

# A local checkout (this notebook opened from a clone, or one uploaded next to it) is used as
# it is; otherwise the repository is cloned. The checkout holds configs/tiny.py.
here = pathlib.Path.cwd()
candidates = [here, here.parent, pathlib.Path("/content/fimjax")]
SRC = next((p for p in candidates if is_checkout(p)), None)
if SRC is None:
  SRC = pathlib.Path("/content/fimjax")
  sh(["git", "clone", "--quiet", FIMJAX_REPO, SRC])
  sh(["git", "-C", SRC, "checkout", "--quiet", FIMJAX_REF])
print("fimjax source:", SRC)

# The extra that matches the attached accelerator: `tpu` (libtpu), `cuda` (CUDA 12 jaxlib
# plugins) or none for CPU.
if pathlib.Path("/dev/accel0").exists() or pathlib.Path("/dev/vfio").exists():
  EXTRA = "[tpu]"
elif pathlib.Path("/dev/nvidia0").exists():
  EXTRA = "[cuda]"
else:
  EXTRA = ""
sh([sys.executable, "-m", "pip", "install", "--quiet", "-e", f"{SRC}{EXTRA}"])
os.chdir(SRC)

# In a fresh interpreter, so that this kernel never imports a jax that pip replaced.
sh([sys.executable, "-c",
    "import jax; print('jax', jax.__version__); print('devices:', jax.devices())"])
"""

TRAIN_MD = """\
## Train the tiny config

`python -m fimjax.main --config configs/tiny.py --workdir runs/tiny`, with any config field
overridable as `--config.<field>=<value>`.
"""

TRAIN = """\
WORKDIR = "runs/tiny"
STEPS = 300  # configs/tiny.py's default

# To keep the run when the runtime is recycled, put the workdir on Google Drive:
# from google.colab import drive
# drive.mount("/content/drive")
# WORKDIR = "/content/drive/MyDrive/fimjax/runs/tiny"

sh([sys.executable, "-m", "fimjax.main", "--config", "configs/tiny.py", "--workdir", WORKDIR,
    f"--config.train.steps={STEPS}"])
"""

PLOT_MD = """\
## Loss curve

Every logged step is one JSON line in `metrics.jsonl` in the workdir (`step`, `loss`; evaluation
lines carry `eval_loss`). `python -m fimjax.plot runs/tiny` writes the same curves as a PNG.
"""

PLOT = """\
import matplotlib.pyplot as plt

from fimjax import metrics

rows = metrics.read_metrics(WORKDIR)  # the lines of metrics.jsonl (a torn last one skipped)
train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]

fig, ax = plt.subplots(figsize=(7, 4))
if train:
  ax.plot(*zip(*train), label="train loss")
if evals:
  ax.plot(*zip(*evals), "o-", label="eval loss")
ax.set_xlabel("step")
ax.set_ylabel("loss (nats/token)")
ax.set_title(f"fimjax tiny: {WORKDIR}")
ax.grid(alpha=0.3)
ax.legend()
plt.show()
print(f"last train loss {train[-1][1]:.3f} at step {train[-1][0]}" if train else "no train lines")
"""

PLOT_PNG = """\
# The same curves drawn by fimjax itself (a PNG written into the workdir).
from IPython.display import Image, display

sh([sys.executable, "-m", "fimjax.plot", WORKDIR])
for png in sorted(pathlib.Path(WORKDIR).glob("*.png")):
  print(png)
  display(Image(filename=str(png)))
"""

INFILL_MD = """\
## Fill a hole

Write a workflow with a `<FILL>` line where something is missing, and ask the model for it:
`python -m fimjax.infill --workdir runs/tiny hole.yml`. The tiny model has seen a small corpus
for a few minutes, so expect something plausible rather than right.
"""

INFILL = """\
HOLE = \"\"\"\\
name: CI
on:
  push:
    branches: [main]
  pull_request:
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      <FILL>
      - run: pip install -e .
      - run: pytest
\"\"\"
pathlib.Path("hole.yml").write_text(HOLE)
sh([sys.executable, "-m", "fimjax.infill", "--workdir", WORKDIR, "hole.yml"])
"""

NEXT_MD = """\
## Next

- Bigger models: `configs/small.py` ... `configs/large.py`. Check the memory first:
  `python -m fimjax.fit --config configs/large.py --devices 8`.
- Your own workflows: `--config.data.corpus=/path/to/folder` (files or folders, comma-separated).
- TPU pods and GPU clusters: see `launch/README.md` (`launch/tpu_pod.sh`,
  `launch/slurm_gpu.sbatch`).
"""


def cell(kind, text, index):
  lines = text.splitlines(keepends=True)
  if lines and lines[-1].endswith("\n"):
    lines[-1] = lines[-1][:-1]
  c = {"cell_type": kind, "id": f"cell-{index:02d}", "metadata": {}, "source": lines}
  if kind == "code":
    c["execution_count"] = None
    c["outputs"] = []
  return c


def notebook():
  cells = [("markdown", INTRO), ("code", INSTALL), ("markdown", TRAIN_MD), ("code", TRAIN),
           ("markdown", PLOT_MD), ("code", PLOT), ("code", PLOT_PNG), ("markdown", INFILL_MD),
           ("code", INFILL), ("markdown", NEXT_MD)]
  return {
      "cells": [cell(kind, text, i) for i, (kind, text) in enumerate(cells)],
      "metadata": {
          "colab": {"name": "fimjax.ipynb", "provenance": []},
          "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
          "language_info": {"name": "python"},
      },
      "nbformat": 4,
      "nbformat_minor": 5,
  }


if __name__ == "__main__":
  OUT.write_text(json.dumps(notebook(), indent=1, ensure_ascii=False) + "\n")
  print(f"wrote {OUT}")
