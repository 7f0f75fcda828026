#!/usr/bin/env python3
"""Core benchmarks (issue 2). Run: .venv/bin/python bench/bench_core.py [--quick]

Prints figures and ratios against baselines measured in the same run:
1. bulk send through the library (signed, committed locally, no push) vs
   `git fast-import` of the same messages unsigned;
2. `gitmail list --unread` and `gitmail list` whole-process wall time with
   1k / 10k / 100k messages (10 unread) vs `python -c pass` from the same venv;
3. `gitmail verify` over 1,000 messages vs `git log --show-signature`;
   (and `gitmail search` on the same mailboxes as 2., against `gitmail list`, same run);
4. packed bytes per message after `git gc`.

gitmail runs with compiled bytecode, as an installed copy has it (a
``PYTHONDONTWRITEBYTECODE`` in the caller's environment would make every
start-up compile its modules again and hide the cost of the command itself).
``--sizes 1000,10000,100000`` and ``--list-only`` run part of it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
GITMAIL = [PY, "-m", "gitmail"]


def sh(*args: str, cwd: Path | None = None, env: dict | None = None, input: bytes | None = None) -> str:
    p = subprocess.run(args, cwd=cwd, env=env, input=input, capture_output=True, check=True)
    return p.stdout.decode()


def timed(cmd: list[str], cwd: Path | None = None, env: dict | None = None, runs: int = 15) -> float:
    """Median wall time of a whole process, in seconds (after one warm-up run)."""
    subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=True)
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=True)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def cli_env(base: Path) -> dict[str, str]:
    """The environment the CLI runs under in these benchmarks: keys below ``base``, no
    notices, no identity or repo from the caller. Also compiles gitmail's bytecode, as an
    installed copy has it, and prints the load average at the start."""
    env = dict(os.environ, GITMAIL_HOME=str(base / "keys"), GITMAIL_NOTICE="never")
    for k in ("GITMAIL_USER", "GITMAIL_REPO", "GITMAIL_REMOTE", "PYTHONDONTWRITEBYTECODE"):
        env.pop(k, None)
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "gitmail")], env=env, check=True, capture_output=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    return env


def make_org(base: Path, env: dict) -> tuple[Path, Path, Path]:
    """max and alex in their own clones of a local org repo: (org, max's clone, alex's clone)."""
    org = base / "org.git"
    for name in ("max", "alex"):
        sh(*GITMAIL, "init", "--name", name, "--org", str(org), "--repo", str(base / name), env=env)
    sh(*GITMAIL, "sync", "--repo", str(base / "max"), env=env)
    return org, base / "max", base / "alex"


def bench_bulk(base: Path, env: dict, n: int) -> None:
    from gitmail import api

    os.environ.update(env)
    _, maxc, _ = make_org(base / "bulk", env)
    bodies = [f"Message number {i}: the domain research is done, pick your top 3." for i in range(n)]
    t = time.perf_counter()
    api.send_batch(maxc, [api.Draft(to=["alex"], body=b) for b in bodies], deliver=False, encrypt=False)
    ours = time.perf_counter() - t
    fi = base / "fi.git"
    sh("git", "init", "-q", "--bare", str(fi))
    chunks = []
    for i, b in enumerate(bodies):
        blob = ('{"body":"%s","from":"max","to":["alex"]}' % b).encode()
        msg = f"{b[:40]}\n\n{b}\n\nMessage-Id: <{i}@gitmail>\nTo: alex\n".encode()
        chunks.append(b"blob\nmark :%d\ndata %d\n%s\n" % (2 * i + 1, len(blob), blob))
        chunks.append(b"commit refs/heads/gitmail/mail/alex/max\nmark :%d\nauthor max <max@x> %d +0000\n"
                      b"committer max <max@x> %d +0000\ndata %d\n%s\nM 100644 :%d message.json\n\n"
                      % (2 * i + 2, 1700000000 + i, 1700000000 + i, len(msg), msg, 2 * i + 1))
    data = b"".join(chunks)
    t = time.perf_counter()
    sh("git", "fast-import", "--quiet", cwd=fi, input=data)
    base_t = time.perf_counter() - t
    print(f"bulk send, {n} messages: gitmail {n / ours:,.0f} msg/s (signed) vs git fast-import "
          f"{n / base_t:,.0f} msg/s (unsigned): ratio {base_t / ours:.2f}x of fast-import's rate (target >= 1x)")


def build_mailbox(base: Path, env: dict, n: int, unread: int = 10) -> Path:
    """alex's clone with n verified messages from max, all but `unread` marked read."""
    from gitmail import api
    from gitmail.core import state
    from gitmail.core.model import MailboxState, State
    from gitmail.core.repo import open_repo

    os.environ.update(env)
    _, maxc, alexc = make_org(base / f"mb{n}", env)
    step = 5000
    for i in range(0, n, step):
        api.send_batch(maxc, [api.Draft(to=["alex"], body=f"message {j}") for j in range(i, min(n, i + step))], encrypt=False)
    sh(*GITMAIL, "sync", "--repo", str(alexc), env=env)
    repo = open_repo(alexc)
    st = State(mailboxes={"gitmail/mail/alex/max": MailboxState(read=[(1, n - unread)])})
    with repo.lock():
        state.save(repo, "alex", repo.ref_target("refs/gitmail/state/alex"), st)
    out = sh(*GITMAIL, "list", "--unread", "--json", "--repo", str(alexc), env=env)
    import json

    got = json.loads(out)
    assert got["unread"] == unread and got["total"] == n, (got["unread"], got["total"])
    return alexc


def bench_list(base: Path, env: dict, sizes: list[int]) -> None:
    py = timed([PY, "-c", "pass"])
    print(f"python -c pass: {py * 1000:.1f} ms")
    first: dict[str, float] = {}
    for n in sizes:
        t = time.perf_counter()
        clone = build_mailbox(base, env, n)
        build = time.perf_counter() - t
        for args in (["list", "--unread"], ["list"]):
            w = timed([*GITMAIL, *args, "--repo", str(clone)], env=env)
            key = " ".join(args)
            first.setdefault(key, w)
            print(f"gitmail {key:<14} {n:>7,} messages: {w * 1000:6.1f} ms = {w / py:4.1f}x python -c pass "
                  f"(target <= 8x), {w / first[key]:.2f}x of the smallest (target <= 1.2x)  [mailbox built in {build:.0f} s]")
        bench_search(clone, env, n, w)


def bench_search(clone: Path, env: dict, n: int, listed: float) -> None:
    """`gitmail search` (issue 14: at most 3x `gitmail list` on the same mailbox, same run): a rare
    term (one hit) and a term in every message (ranking all of them, 20 shown). The first query
    of a mailbox builds the full-text index; it is timed on its own."""
    t = time.perf_counter()
    sh(*GITMAIL, "search", "message", "--repo", str(clone), env=env)
    index = time.perf_counter() - t
    for q in (str(n // 2 + 7), "message"):
        w = timed([*GITMAIL, "search", q, "--repo", str(clone)], env=env, runs=7)
        print(f"gitmail search {q!r:<10} {n:>7,} messages: {w * 1000:6.1f} ms = {w / listed:4.2f}x gitmail list "
              f"(target <= 3x)  [first query indexed the mailbox in {index:.1f} s]")


def bench_verify(base: Path, env: dict, n: int) -> None:
    from gitmail import api

    os.environ.update(env)
    _, maxc, alexc = make_org(base / "verify", env)
    api.send_batch(maxc, [api.Draft(to=["alex"], body=f"verify me {i}") for i in range(n)], encrypt=False)
    sh(*GITMAIL, "sync", "--repo", str(alexc), env=env)
    t = time.perf_counter()
    sh(*GITMAIL, "verify", "--repo", str(alexc), env=env)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    out = sh("git", "log", "--show-signature", "origin/gitmail/mail/alex/max", cwd=alexc, env=env)
    theirs = time.perf_counter() - t
    good = out.count('Good "git" signature')
    assert good == n, good
    empty = base / "verify" / "empty"
    sh(*GITMAIL, "init", "--name", "carol", "--org", str(base / "verify" / "org.git"), "--repo", str(empty), env=env)
    startup = timed([*GITMAIL, "verify", "--repo", str(empty)], env=env, runs=5)
    print(f"verify {n} messages: gitmail verify {ours:.2f} s ({n / ours:,.0f}/s) vs git log --show-signature "
          f"{theirs:.2f} s ({n / theirs:,.0f}/s): {theirs / ours:.0f}x faster (target 50x); "
          f"without gitmail's start-up ({startup:.2f} s, measured on an empty mailbox): "
          f"{n / (ours - startup):,.0f}/s = {theirs / (ours - startup):.0f}x")
    org = base / "verify" / "org.git"
    sh("git", "gc", "-q", "--aggressive", cwd=org)
    size = sum(p.stat().st_size for p in (org / "objects" / "pack").glob("*.pack"))
    print(f"packed bytes per message (org repo after git gc --aggressive, {n} messages + directory): {size / n:,.0f} B")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (1k/10k lists, 2k bulk)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--sizes", help="mailbox sizes of the list and search figures, e.g. 1000,10000,100000")
    ap.add_argument("--list-only", action="store_true", help="only the list and search figures")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")] if a.sizes else [1000, 10000] if a.quick else [1000, 10000, 100000]
    base = Path(tempfile.mkdtemp(prefix="gitmail-bench-"))
    env = cli_env(base)
    try:
        if not a.list_only:
            bench_bulk(base, env, 2000 if a.quick else 10000)
            bench_verify(base, env, 1000)
        bench_list(base, env, sizes)
    finally:
        if a.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
