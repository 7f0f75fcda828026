"""``python -m gitmail``."""

import sys

from gitmail.cli.main import main

sys.exit(main())
