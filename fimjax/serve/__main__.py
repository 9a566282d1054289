"""`python -m fimjax.serve`: the command is fimjax/cli/serve.py."""

import sys

from fimjax.cli.serve import main

sys.exit(main())
