"""`python -m fimjax.plot`: the command is fimjax/cli/plot.py."""

import sys

from fimjax.cli.plot import main

sys.exit(main())
