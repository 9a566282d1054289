"""`python -m fimjax.export`: the command is fimjax/cli/export.py."""

import sys

from fimjax.cli.export import main

sys.exit(main())
