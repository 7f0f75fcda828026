"""A real git server for the sync tests: ``git daemon`` on 127.0.0.1 serving bare org repos.

:class:`GitDaemon` starts ``git daemon --enable=receive-pack`` on a free port,
waits until it answers ``git ls-remote``, and can be stopped and started
again on the same port (for offline tests). Used by tests/sync/conftest.py and
bench/bench_sync.py.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Optional


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GitDaemon:
    """``git daemon`` serving every repo below ``base`` at ``git://127.0.0.1:PORT/<name>``."""

    def __init__(self, base: Path, port: Optional[int] = None) -> None:
        self.base = base
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def url(self, name: str = "org.git") -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def create(self, name: str = "org.git", guard: bool = True) -> Path:
        """A new bare repo ``base/name``, with the gitmail guard installed unless ``guard`` is false."""
        path = self.base / name
        subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
        if guard:
            from gitmail import guard as guard_mod

            guard_mod.install(path)
        return path

    def start(self, timeout: float = 10.0) -> None:
        """Start the daemon and wait until it answers (raises RuntimeError on timeout)."""
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen(
            ["git", "daemon", "--enable=receive-pack", "--export-all", f"--base-path={self.base}",
             "--reuseaddr", "--listen=127.0.0.1", f"--port={self.port}", "--max-connections=64",
             str(self.base)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"git daemon exited with {self.proc.returncode}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"git daemon did not answer on port {self.port}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        names = [p.name for p in self.base.iterdir() if p.name.endswith(".git")]
        if not names:
            return True
        r = subprocess.run(["git", "ls-remote", self.url(names[0])], capture_output=True, timeout=10)
        return r.returncode == 0

    def stop(self) -> None:
        """Stop the daemon (and the connections it forked) and wait until the port is closed."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                return
            time.sleep(0.05)

    def __enter__(self) -> "GitDaemon":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
