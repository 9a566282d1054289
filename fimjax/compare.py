"""`python -m fimjax.compare`: FIM vs AR on one config (fimjax/cli/compare.py)."""

import sys

from fimjax.cli.compare import main

if __name__ == "__main__":
  sys.exit(main())
