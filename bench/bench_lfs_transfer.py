#!/usr/bin/env python3
"""One LFS object's transfer: gitmail's own client against delegating it to the git-lfs binary.

Run:  .venv/bin/python bench/bench_lfs_transfer.py [--rounds N]

For each size (100 KB, 10 MB), fresh random content each round, to dulwich's LFS
server on 127.0.0.1: (a) gitmail's client in this process (``HTTPStore.put`` then
``HTTPStore.fetch_into`` into an empty store: batch, PUT, batch, GET, sha256 while
streaming); (b) the same object through the stock binary as gitmail would have to
call it: ``git lfs push --object-id origin <oid>`` from a clone's cache, then
``git lfs smudge`` of the pointer in another clone (which downloads and verifies).
Prints the median seconds of each and the ratio (git-lfs / gitmail). Everything lives
in a private temporary HOME. Needs git-lfs on PATH.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

KB, MB = 1024, 1024 * 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from dulwich.lfs_server import run_lfs_server

    from gitmail.core import lfs

    with tempfile.TemporaryDirectory(prefix="gitmail-bench-lfs-") as t:
        tmp = Path(t)
        os.environ["HOME"] = str(tmp / "home")
        os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
        (tmp / "home").mkdir()
        server, url = run_lfs_server(host="127.0.0.1", port=0, lfs_dir=str(tmp / "server"))
        th = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        th.start()
        repos = {}
        for name in ("up", "down"):
            r = tmp / name
            subprocess.run(["git", "init", "-q", str(r)], check=True)
            subprocess.run(["git", "remote", "add", "origin", str(tmp / "nowhere.git")], cwd=r, check=True)
            subprocess.run(["git", "config", "lfs.url", url], cwd=r, check=True)
            repos[name] = r
        ep = lfs.Endpoint(url, None, "bench")
        for size in (100 * KB, 10 * MB):
            ours, theirs = [], []
            for _ in range(args.rounds):
                for who in ("gitmail", "git-lfs"):
                    data = os.urandom(size)
                    oid = hashlib.sha256(data).hexdigest()
                    src = lfs.write_local(repos["up"] / ".git" / "lfs", oid, size, data, verified=True)
                    if who == "gitmail":
                        t0 = time.perf_counter()
                        st = lfs.HTTPStore(ep, repos["up"])
                        st.put(oid, size, src)
                        lfs.HTTPStore(ep, repos["down"]).fetch_into(tmp / f"store-{oid[:8]}", oid, size)
                        ours.append(time.perf_counter() - t0)
                    else:
                        ptr = lfs.format_pointer(oid, size)
                        t0 = time.perf_counter()
                        subprocess.run(["git", "lfs", "push", "--object-id", "origin", oid], cwd=repos["up"],
                                       check=True, capture_output=True)
                        out = subprocess.run(["git", "lfs", "smudge"], cwd=repos["down"], input=ptr, check=True,
                                             capture_output=True).stdout
                        theirs.append(time.perf_counter() - t0)
                        assert hashlib.sha256(out).hexdigest() == oid
            a, b = statistics.median(ours), statistics.median(theirs)
            print(f"{size // KB:>6} KB  gitmail client {a:.3f} s   git-lfs binary {b:.3f} s   ratio {b / a:.2f}x")
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
