"""``python -m gitmail``: the command in this process, exactly as the console script runs it
when the warm server is not used (:func:`gitmail.cli.launch.in_process`, which also ends with
``os._exit`` when a dead worker left a pool thread waiting for ever)."""

import sys

from gitmail.cli.launch import in_process

sys.exit(in_process(sys.argv[1:]))
