#!/usr/bin/env python3
"""The simplest agent mailbox peer, as a baseline for bench/bench_send.py (issue 15).

``baseline_mailbox.py DIR send FROM TO BODY``: append one JSON message to
``DIR/<TO>.jsonl`` under an exclusive ``fcntl.flock``, fsync, and exit. Standard
library only: what file-backed mailboxes of agent frameworks do.
"""

import fcntl
import json
import os
import sys
import time
import uuid


def main() -> int:
    root, cmd, sender, to, body = sys.argv[1:6]
    assert cmd == "send"
    line = json.dumps({"id": uuid.uuid4().hex, "from": sender, "to": to, "date": time.time(), "body": body})
    fd = os.open(os.path.join(root, f"{to}.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    print(f"sent {line[8:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
