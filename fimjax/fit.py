"""`python -m fimjax.fit`: will it fit? (fimjax/cli/fit.py; the compile is fimjax/aot.py)."""

import sys

from fimjax.aot import analyse  # noqa: F401  (the old import path)
from fimjax.cli.fit import main

if __name__ == "__main__":
  sys.exit(main())
