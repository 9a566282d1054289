"""`python -m fimjax.generate`: sample workflows from scratch (fimjax/cli/generate.py)."""

import sys

from fimjax.cli.generate import main
from fimjax.inference import (
  Sample,
  check,
  counts,
  generate_tokens,  # noqa: F401  (old path)
  make_validator,
)

if __name__ == "__main__":
  sys.exit(main())
