"""`python -m fimjax.data.pipeline show`: the command is fimjax/cli/pipeline.py."""

import sys

from fimjax.cli.pipeline import main

sys.exit(main())
