"""`python -m fimjax.data.cache build|info`: the command is fimjax/cli/cache.py."""

import sys

from fimjax.cli.cache import main

sys.exit(main())
