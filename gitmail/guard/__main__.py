"""``python -m gitmail.guard``: see :func:`gitmail.guard.cli`."""

import sys

from gitmail.guard import cli

sys.exit(cli())
