"""Plot the train and validation loss curves of a run: `python -m fimjax.plot WORKDIR [--out PNG]`.

Writes `<workdir>/loss.png` (or `--out`) and prints its path.
"""

import os
import sys

import matplotlib

matplotlib.use("Agg")  # no screen needed
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from fimjax import cli  # pylint: disable=wrong-import-position
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
    raise FileNotFoundError(f"no metrics in {os.path.join(workdir, 'metrics.jsonl')}: "
                            "train first (python -m fimjax.main --workdir ...)")
  out = out or os.path.join(workdir, "loss.png")
  problem = paths.output_error(out)
  if problem:  # a read-only workdir, say: checked before drawing
    raise PermissionError(f"{problem}: pass --out PATH to write the plot elsewhere")
  fig, ax = plt.subplots(figsize=(8, 5))
  for key, label, style in [("loss", "train loss", "-"), ("ar_loss", "train AR", ":"),
                            ("fim_loss", "train FIM middle", ":"),
                            ("eval_loss", "validation loss", "o-"),
                            ("eval_fim_loss", "validation FIM middle", "s--")]:
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


def main(argv: list[str]) -> int:
  p = cli.ArgumentParser(prog="python -m fimjax.plot", description=__doc__.split("\n")[0])
  p.add_argument("workdir")
  p.add_argument("--out", help="write the PNG here (default: <workdir>/loss.png)")
  args = p.parse_args(argv[1:])
  try:
    print(plot_losses(args.workdir, args.out))
  except (OSError, ValueError) as e:  # no metrics, a damaged line (named), an unwritable PNG
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
