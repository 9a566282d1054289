"""Plot the train and validation loss curves of a run.

  python -m fimjax.plot WORKDIR [--out PNG]

Writes `<workdir>/loss.png` (or `--out`) and prints its path.
"""

from absl import flags

from fimjax import plot
from fimjax.cli import common

PROG = "python -m fimjax.plot"


def define(fv: flags.FlagValues) -> None:
  flags.DEFINE_string(
    "out", None, "write the PNG here (default: <workdir>/loss.png)", flag_values=fv
  )


def body(fv: flags.FlagValues, args: list[str]) -> int:
  [workdir] = args
  try:
    print(plot.plot_losses(workdir, fv.out))
  except (OSError, ValueError) as e:  # no metrics, a damaged line (named), an unwritable PNG
    common.error(e)
    return 1
  return 0


def main(argv=None) -> int:
  return common.run(PROG, __doc__, define, body, argv, positional=("WORKDIR",))
