"""gitmail: a mailbox that lives in git.

The library API is :mod:`gitmail.api` (``send``, ``mailbox``, ``read``, ...);
the formats are defined in :mod:`gitmail.core.model` and specified in
docs/protocol.md.
"""

__version__ = "0.1.0"
