"""Writing local files atomically: the one helper every module uses for its own files.

A reader (another gitmail process, a hook, git itself) sees the old content or
the new, never half of it: the data goes to a temporary file in the same
folder, is flushed to disk, and replaces the target with ``os.replace``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union


def write_atomic(path: Union[str, Path], data: Union[str, bytes], *, mode: Optional[int] = None,
                 only_if_changed: bool = False) -> bool:
    """Replace ``path`` with ``data`` (str: UTF-8) in one step; returns whether it wrote.

    ``mode``: the file's permission bits (default: 0666 less the umask, as ``open`` would).
    ``only_if_changed``: leave an identical file alone (no write, no new mtime).
    Raises :class:`OSError` (nothing is left behind but the old file).
    """
    import tempfile  # not at module level: it pulls in random, shutil and compression modules

    p = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if only_if_changed:
        try:
            if p.read_bytes() == raw:
                return False
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return True
