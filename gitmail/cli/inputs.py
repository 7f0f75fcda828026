"""What a user hands gitmail as a file or on standard input (a message, a batch), read bounded.

``gitmail send alex - < /dev/zero`` or ``--batch /dev/zero`` read until memory ran out: the
input is read up to its bound plus one byte, and one byte over is a usage error (exit 2),
whatever the file is (a pipe, a device, a FIFO).
"""

from __future__ import annotations

import sys

from gitmail.core.model import MAX_BLOB
from gitmail.errors import UsageError

MAX_MESSAGE = MAX_BLOB  # bytes of a message read from stdin: nothing larger fits in a message.json (§4)
MAX_BATCH = 256 * 1024 * 1024  # bytes of a --batch file (docs/json.md): split a larger one


def read_bounded(path: str, limit: int, what: str) -> bytes:
    """The bytes of file ``path`` (``-``: standard input), at most ``limit``. Raises
    :class:`UsageError` naming ``what`` when there are more (nothing past ``limit + 1`` bytes
    is read), or naming ``path`` when it cannot be read."""
    from gitmail.api.views import clean

    if path == "-":
        stream = getattr(sys.stdin, "buffer", None)
        data = stream.read(limit + 1) if stream is not None else sys.stdin.read(limit + 1).encode("utf-8")
    else:
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except OSError as e:
            raise UsageError(f"{clean(path)}: cannot be read ({e.strerror or type(e).__name__})") from None
    if len(data) > limit:
        raise UsageError(f"{what} is over {limit} bytes")
    return data


def message_from_stdin() -> str:
    """The message text on standard input (``MESSAGE`` given as ``-``), at most :data:`MAX_MESSAGE`
    bytes of UTF-8. Raises :class:`UsageError`."""
    data = read_bounded("-", MAX_MESSAGE, "the message on standard input")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"the message on standard input is not UTF-8 (byte {e.start})") from None
