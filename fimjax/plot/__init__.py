"""The train and validation loss curves of a run as a PNG (`python -m fimjax.plot WORKDIR`;
the command: fimjax/cli/plot.py). The training loop draws it at the end of a run."""

import os

import matplotlib

matplotlib.use("Agg")  # no screen needed
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from fimjax import metrics as metrics_lib  # pylint: disable=wrong-import-position
from fimjax.data import paths  # pylint: disable=wrong-import-position


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
  """Step -> value for `key`; a resumed run may repeat steps, the later record wins."""
  by_step = {}
  for r in records:
    if isinstance(r.get(key), (int, float)):
      by_step[r["step"]] = r[key]
  steps = sorted(by_step)
  return steps, [by_step[s] for s in steps]


def plot_losses(workdir: str, out: str | None = None) -> str:
  records = metrics_lib.read_metrics(workdir)
  if not records:
    raise FileNotFoundError(
      f"no metrics in {os.path.join(workdir, 'metrics.jsonl')}: "
      "train first (python -m fimjax.main --workdir ...)"
    )
  out = out or os.path.join(workdir, "loss.png")
  problem = paths.output_error(out)
  if problem:  # a read-only workdir, say: checked before drawing
    raise PermissionError(f"{problem}: pass --out PATH to write the plot elsewhere")
  fig, ax = plt.subplots(figsize=(8, 5))
  for key, label, style in [
    ("loss", "train loss", "-"),
    ("ar_loss", "train AR", ":"),
    ("fim_loss", "train FIM middle", ":"),
    ("eval_loss", "validation loss", "o-"),
    ("eval_fim_loss", "validation FIM middle", "s--"),
  ]:
    steps, values = _series(records, key)
    if steps:
      ax.plot(steps, values, style, label=label, markersize=4)
  ax.set_xlabel("step")
  ax.set_ylabel("cross-entropy (nats/token)")
  ax.set_yscale("log")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend()
  ax.set_title(os.path.basename(os.path.normpath(workdir)))
  fig.savefig(out, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return out
