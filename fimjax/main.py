"""`python -m fimjax.main`: the train command (fimjax/cli/train.py)."""

import sys

from fimjax.cli.train import main

if __name__ == "__main__":
  sys.exit(main())
