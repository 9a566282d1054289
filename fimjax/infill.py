"""`python -m fimjax.infill`: fill the holes of a workflow file (fimjax/cli/infill.py)."""

import sys

from fimjax.cli.infill import main
from fimjax.inference import MARKER, Hole, InfillError, fill, find_holes  # noqa: F401  (old path)

if __name__ == "__main__":
  sys.exit(main())
