"""`python -m fimjax.evaluate`: the command is fimjax/cli/evaluate.py."""

import sys

from fimjax.cli.evaluate import main

sys.exit(main())
