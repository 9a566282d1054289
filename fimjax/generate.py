"""`python -m fimjax.generate`: sample workflows from scratch (fimjax/cli/generate.py)."""

import sys

from fimjax.cli.generate import main

if __name__ == "__main__":
  sys.exit(main())
