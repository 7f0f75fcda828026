#!/usr/bin/env python3
"""Attachment benchmarks (issue 4), against baselines measured in the same run.

Run:  .venv/bin/python bench/bench_attach.py [--rounds N] [--size MB] [--recipients K]

(a) A 10 MB attachment sent and received through gitmail (``gitmail send
    --attach`` in the sender's clone, then ``gitmail sync`` + ``gitmail read``
    in the recipient's clone, which downloads, verifies and saves the file)
    against the stock client moving the same amount of data to the same LFS
    server: ``git lfs push`` of a commit holding a 10 MB LFS file, then
    ``git lfs pull`` in a clone that has the commit but not the content.
    Every round uses fresh random content, so nothing is ever already on the
    server. Target: gitmail / baseline <= 1.5. Measured three ways: the whole
    round trip through three CLI processes; what the attachment adds to the
    same message without one; and the whole round trip through the library
    API in one warm process (``api.send`` + ``api.sync`` + ``api.read``, as
    the MCP server runs them).
(b) One 10 MB attachment sent to K recipients (default 20) stores its
    content once: the growth in bytes of the LFS server's store and of the
    org repo, for LFS storage; and the org repo's growth with blob storage.

The LFS server is dulwich's (dulwich.lfs_server) on 127.0.0.1 in this
process; every client runs as a subprocess. Everything lives in a private
temporary HOME; nothing outside it is touched. Needs git-lfs on PATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

PY = sys.executable
GITMAIL = str(Path(PY).parent / "gitmail")
MB = 1024 * 1024


def sh(args: list[str], cwd: Path | str | None = None, env: dict[str, str] | None = None) -> str:
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args[:4])} failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    return p.stdout


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def tree_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0


class Bench:
    """A private HOME, an org repo, an LFS server and member clones."""

    def __init__(self, root: Path) -> None:
        self.root = root
        home = root / "home"
        home.mkdir()
        os.environ.update(HOME=str(home), GITMAIL_HOME=str(home / "gitmail"), GIT_CONFIG_NOSYSTEM="1",
                          GITMAIL_NOTICE="never")
        for var in ("GITMAIL_USER", "GITMAIL_REPO", "GITMAIL_REMOTE", "GITMAIL_INBOX"):
            os.environ.pop(var, None)
        from dulwich.lfs_server import run_lfs_server

        self.store = root / "lfs-server"
        self.server, self.url = run_lfs_server(host="127.0.0.1", port=0, lfs_dir=str(self.store))
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.org = root / "org.git"
        self.clones: dict[str, Path] = {}

    def join(self, name: str) -> Path:
        from gitmail import api

        clone = self.root / f"clone-{name}"
        api.init(str(clone), name, org=str(self.org))
        sh(["git", "config", "lfs.url", self.url], clone)
        self.clones[name] = clone
        return clone

    def policy(self, **changes: object) -> None:
        from gitmail import api
        from gitmail.core import admin
        from gitmail.core import directory as dirmod

        s = api.session(self.clones["max"])

        def mutate(d: dirmod.Directory) -> dirmod.Directory:
            d.policy = d.policy.model_copy(update=changes)
            return d

        admin.change(s.repo, s.signer, s.member, mutate, "bench policy")

    def gitmail(self, who: str, *args: str) -> str:
        return sh([GITMAIL, *args, "--repo", str(self.clones[who])])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def bench_transfer(b: Bench, rounds: int, size: int) -> None:
    print(f"(a) one {size // MB} MB attachment, sent and received; median of {rounds} rounds, fresh content each round")
    # Baseline set-up: a stock git-lfs repo whose commits reach a bare repo without their LFS content.
    stock_bare = b.root / "stock.git"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(stock_bare)])
    w = b.root / "stock-work"
    sh(["git", "init", "-q", "-b", "main", str(w)])
    for args in (["lfs", "install", "--local"], ["config", "user.name", "B"], ["config", "user.email", "b@x"],
                 ["remote", "add", "origin", str(stock_bare)], ["config", "lfs.url", b.url], ["lfs", "track", "*.bin"]):
        sh(["git", *args], w)
    pull = b.root / "stock-pull"
    g_send, g_recv, s_push, s_pull, p_send, p_recv = [], [], [], [], [], []
    l_send, l_recv = [], []
    from gitmail import api

    api.send(b.clones["max"], ["alex"], "warm-up: imports of the library path", attach=[random_file(b.root / "w", 1024)])
    api.sync(b.clones["alex"])
    api.read(b.clones["alex"], save=True, save_dir=b.root / "warm")
    for i in range(rounds):
        # The same mail without an attachment: what a message costs anyway.
        p_send.append(timed(lambda: b.gitmail("max", "send", "alex", f"plain {i}")))
        p_recv.append(timed(lambda: (b.gitmail("alex", "sync"), b.gitmail("alex", "read", "--save-dir", str(b.root)))))
        f = random_file(b.root / f"attach-{i}.bin", size)
        inbox = b.root / f"inbox-{i}"
        g_send.append(timed(lambda: b.gitmail("max", "send", "alex", f"round {i}", "--attach", str(f))))
        g_recv.append(timed(lambda: (b.gitmail("alex", "sync"), b.gitmail("alex", "read", "--save-dir", str(inbox)))))
        assert (inbox / f.name).read_bytes() == f.read_bytes()
        # The same through the library API in one process (how the MCP server and agents send).
        f2 = random_file(b.root / f"lib-{i}.bin", size)
        linbox = b.root / f"lib-inbox-{i}"
        l_send.append(timed(lambda: api.send(b.clones["max"], ["alex"], f"lib {i}", attach=[f2])))
        l_recv.append(timed(lambda: (api.sync(b.clones["alex"]),
                                     api.read(b.clones["alex"], save=True, save_dir=linbox))))
        assert (linbox / f2.name).read_bytes() == f2.read_bytes()
        g = random_file(w / f"stock-{i}.bin", size)
        sh(["git", "add", "-A"], w)
        sh(["git", "commit", "-q", "-m", f"round {i}"], w)
        s_push.append(timed(lambda: sh(["git", "lfs", "push", "origin", "main"], w)))  # the content
        sh(["git", "push", "-q", "--no-verify", "origin", "main"], w)  # then the commit, untimed
        if i == 0:
            env = dict(os.environ, GIT_LFS_SKIP_SMUDGE="1")
            sh(["git", "clone", "-q", str(stock_bare), str(pull)], env=env)
            sh(["git", "config", "lfs.url", b.url], pull)
            sh(["git", "lfs", "install", "--local"], pull)
        else:
            sh(["git", "pull", "-q", "origin", "main"], pull, env=dict(os.environ, GIT_LFS_SKIP_SMUDGE="1"))
        s_pull.append(timed(lambda: sh(["git", "lfs", "pull"], pull)))
        assert (pull / g.name).read_bytes() == g.read_bytes()
    med = statistics.median
    gm = med([a + c for a, c in zip(g_send, g_recv)])
    st = med([a + c for a, c in zip(s_push, s_pull)])
    plain = med([a + c for a, c in zip(p_send, p_recv)])
    extra = med([a + c - d - e for a, c, d, e in zip(g_send, g_recv, p_send, p_recv)])
    print(f"    gitmail send --attach          {med(g_send):7.3f} s   (same message, no attachment: {med(p_send):.3f} s)")
    print(f"    gitmail sync + read (save)     {med(g_recv):7.3f} s   (same message, no attachment: {med(p_recv):.3f} s)")
    print(f"    git lfs push                   {med(s_push):7.3f} s")
    print(f"    git lfs pull                   {med(s_pull):7.3f} s")
    print(f"    whole mail round trip with the file {gm:.3f} s vs git lfs push+pull {st:.3f} s: "
          f"ratio {gm / st:.2f}x (includes signing, git push, fetch, verify: {plain:.3f} s without a file)")
    print(f"    what the attachment adds {extra:.3f} s vs git lfs push+pull {st:.3f} s: "
          f"ratio {extra / st:.2f}x (target <= 1.5x)")
    lib = med([a + c for a, c in zip(l_send, l_recv)])
    print(f"    library API, one process: send {med(l_send):.3f} s + sync and read {med(l_recv):.3f} s = {lib:.3f} s "
          f"vs git lfs push+pull {st:.3f} s: ratio {lib / st:.2f}x (target <= 1.5x)")


def bench_fanout(b: Bench, size: int, k: int) -> None:
    print(f"(b) one {size // MB} MB attachment to {k} recipients: bytes stored")
    names = [f"r{i:02d}" for i in range(k)]
    for n in names:
        b.join(n)
    b.gitmail("max", "sync")
    for storage in ("lfs", "blob"):
        b.policy(attachment_storage=storage)
        b.gitmail("max", "sync")
        f = random_file(b.root / f"fanout-{storage}.bin", size)
        lfs0, org0 = tree_bytes(b.store), tree_bytes(b.org / "objects")
        t = timed(lambda: b.gitmail("max", "send", *names, f"fan-out {storage}", "--attach", str(f)))
        dl, do = tree_bytes(b.store) - lfs0, tree_bytes(b.org / "objects") - org0
        print(f"    {storage:4}: send {t:6.3f} s; LFS store +{dl / MB:6.2f} MB, org repo +{do / MB:6.2f} MB "
              f"({(dl + do) / size:.2f}x the content for {k} recipients; {k}x would be {k * size / MB:.0f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=10, help="attachment size in MB (default 10)")
    ap.add_argument("--recipients", type=int, default=20)
    a = ap.parse_args()
    if not shutil.which("git-lfs"):
        raise SystemExit("bench: git-lfs is not installed (apt-get install git-lfs)")
    with tempfile.TemporaryDirectory(prefix="gitmail-bench-attach-") as tmp:
        b = Bench(Path(tmp))
        try:
            b.join("max")
            b.join("alex")
            b.policy(attachment_storage="lfs", attachment_limit=max(a.size, 10) * MB)
            b.gitmail("alex", "sync")
            bench_transfer(b, a.rounds, a.size * MB)
            bench_fanout(b, a.size * MB, a.recipients)
        finally:
            b.close()


if __name__ == "__main__":
    main()
