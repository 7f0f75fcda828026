#!/usr/bin/env python3
"""Benchmarks for the agent features (issue 5). Run: .venv/bin/python bench/bench_agents.py [--quick]

1. ``gitmail hook claude session-start``: whole-process wall time on a mailbox of
   100,000 messages (5 unread), against ``python -c pass`` from the same venv,
   measured in the same run, interleaved. Target: at most 8x.
   The mailbox is generated fast: signed message commits written directly in
   a loop on one ref (gitmail.core.store.write_message_commit), one push at the
   end; the first hook run builds the cache and is not timed.
2. A broadcast to 100 members: bytes the org repo grows by, against one direct
   message with the same body. Target: under 3x. For contrast, also the same
   message addressed to the 99 members by name (one commit per mailbox; the
   message blob is still shared, the commits are not).

Everything happens in a temporary directory with a private HOME; nothing
outside it is touched.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HOOK_TARGET = 8.0
BROADCAST_TARGET = 3.0


def _isolate(root: Path) -> None:
    home = root / "home"
    home.mkdir()
    os.environ.update({"HOME": str(home), "GITMAIL_HOME": str(home / "gitmail"), "GIT_CONFIG_NOSYSTEM": "1",
                       "GITMAIL_NOTICE": "never"})
    for v in ("GITMAIL_USER", "GITMAIL_REPO", "GITMAIL_REMOTE", "XDG_DATA_HOME"):
        os.environ.pop(v, None)


def _say(msg: str) -> None:
    print(msg, flush=True)


# -- 1. the session-start hook on a big mailbox ----------------------------------------


def generate_mailbox(root: Path, n: int, unread: int) -> Path:
    """An org with max and alex; ``n`` signed messages max -> alex, all but the last ``unread`` read."""
    from gitmail import api, git
    from gitmail.core import refs, state
    from gitmail.core.model import Message, format_date, utcnow
    from gitmail.core.store import write_message_commit

    org = str(root / "org.git")
    api.init(root / "max", "max", org=org)
    api.init(root / "alex", "alex", org=org)
    s = api.session(root / "max", "max")
    member, signer, pg = s.member, s.signer, s.repo.pg
    path = refs.mail_path("alex", "max")
    parent = None
    t0 = time.perf_counter()
    for i in range(n):
        msg = Message(**{"from": "max"}, to=["alex"], date=format_date(utcnow()), subject=f"status report {i}",
                      summary=f"status report {i}: all green", body=f"status report {i}: all green\n",
                      priority="urgent" if i == n - 1 else "normal")
        msg.id = msg.compute_id()
        parent = write_message_commit(pg, msg, member, signer, parent)
    t1 = time.perf_counter()
    git.run(["push", "--quiet", "origin", f"{parent}:{refs.head(path)}"], root / "max")
    t2 = time.perf_counter()
    _say(f"  wrote {n:,} signed commits in {t1 - t0:.1f} s ({n / (t1 - t0):,.0f}/s), one push in {t2 - t1:.1f} s")
    a = api.session(root / "alex", "alex")
    from gitmail.core import sync

    sync.fetch(a.repo)
    a.refresh()  # builds the cache: verify and index every message
    t3 = time.perf_counter()
    _say(f"  alex fetched, verified and indexed them in {t3 - t2:.1f} s")
    with a.repo.lock():
        old, st = state.load(a.repo, "alex")
        state.update(st, {path: list(range(1, n - unread + 1))}, "read", True)
        state.save(a.repo, "alex", old, st)
    return root / "alex"


def _time(cmd: list[str], check: Callable[[bytes], bool] | None = None) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    dt = time.perf_counter() - t
    if p.returncode != 0 or (check is not None and not check(p.stdout)):
        raise SystemExit(f"benchmark command failed: {cmd}: {p.stdout[:300]!r} {p.stderr[:300]!r}")
    return dt


def bench_hook(root: Path, n: int, runs: int) -> float:
    _say(f"\n[1] gitmail hook claude session-start on a mailbox of {n:,} messages, 5 unread")
    clone = generate_mailbox(root, n, 5)
    gm = str(Path(sys.executable).parent / "gitmail")
    hook = [gm, "hook", "claude", "session-start", "--repo", str(clone), "--as", "alex"]
    base = [sys.executable, "-c", "pass"]

    def five(out: bytes) -> bool:
        return b"5 unread gitmail messages (1 urgent)" in out

    _time(hook, five)  # warm-up: applies the read state to the cache
    _time(base)
    hs, bs = [], []
    for _ in range(runs):
        bs.append(_time(base))
        hs.append(_time(hook, five))
    h, b = statistics.median(hs), statistics.median(bs)
    ratio = h / b
    _say(f"  python -c pass       median {b * 1000:6.1f} ms  (min {min(bs) * 1000:.1f}, {runs} runs)")
    _say(f"  hook session-start   median {h * 1000:6.1f} ms  (min {min(hs) * 1000:.1f}, {runs} runs)")
    _say(f"  ratio {ratio:.2f}x  (target <= {HOOK_TARGET:.0f}x): {'OK' if ratio <= HOOK_TARGET else 'OVER TARGET'}")
    return ratio


# -- 2. broadcast storage ---------------------------------------------------------------


def _objects_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / "objects").rglob("*") if p.is_file())


def make_org(root: Path, members: int) -> tuple[Path, list[str]]:
    """An org whose admin (max) registers ``members - 1`` more members in one directory commit."""
    from gitmail import api
    from gitmail.core import admin
    from gitmail.core import directory as dirmod
    from gitmail.core.model import Member
    from gitmail.core.signing import generate_key

    org = root / "org.git"
    api.init(root / "max", "max", org=str(org))
    s = api.session(root / "max", "max")
    names = [f"agent-{i:03d}" for i in range(1, members)]
    keys = {n: generate_key(root / "keys" / n).public_key for n in names}

    def add(d: "dirmod.Directory") -> "dirmod.Directory":
        for n in names:
            d.members[n] = Member(name=n, email=f"{n}@gitmail.invalid", signing_key=keys[n], kind="agent")
        return d

    admin.change(s.repo, s.signer, s.member, add, f"Register {len(names)} agents")
    return org, names


def bench_broadcast(root: Path, members: int) -> float:
    from gitmail import api

    _say(f"\n[2] broadcast to {members} members: bytes the org repo grows by")
    org, names = make_org(root, members)
    clone = root / "max"
    body = ("Critical blocking issue found: the staging database is down, stop all deploys until further "
            "notice. Details in the incident doc; reply here if you are mid-migration.\n")
    for n in names:  # give every mailbox its own history, as in real use
        api.send(clone, [n], f"welcome, {n}", as_="max")
    sizes: dict[str, int] = {}
    for label, to in (("direct (1 recipient)", [names[0]]), ("broadcast '*'", ["*"]),
                      (f"by name ({len(names)} mailboxes)", names)):
        before = _objects_bytes(org)
        res = api.send(clone, to, body, subject="stop deploys", as_="max")
        assert res.delivered, res
        sizes[label] = _objects_bytes(org) - before
    direct = sizes["direct (1 recipient)"]
    for label, grew in sizes.items():
        _say(f"  {label:<28} {grew:>9,} bytes  ({grew / direct:.2f}x direct)")
    ratio = sizes["broadcast '*'"] / direct
    _say(f"  broadcast ratio {ratio:.2f}x  (target < {BROADCAST_TARGET:.0f}x): "
         f"{'OK' if ratio < BROADCAST_TARGET else 'OVER TARGET'}")
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 messages, 20 members, fewer runs")
    ap.add_argument("--messages", type=int, help="mailbox size for [1] (default 100,000; 10,000 with --quick)")
    ap.add_argument("--runs", type=int, help="timed runs per command (default 15; 7 with --quick)")
    args = ap.parse_args()
    n = args.messages or (10_000 if args.quick else 100_000)
    runs = args.runs or (7 if args.quick else 15)
    members = 20 if args.quick else 100
    with tempfile.TemporaryDirectory(prefix="gitmail-bench-") as tmp:
        root = Path(tmp)
        _isolate(root)
        (root / "hook").mkdir()
        (root / "bc").mkdir()
        hook_ratio = bench_hook(root / "hook", n, runs)
        bc_ratio = bench_broadcast(root / "bc", members)
    _say(f"\nsummary: hook {hook_ratio:.2f}x python startup (<= {HOOK_TARGET:.0f}x), "
         f"broadcast {bc_ratio:.2f}x a direct message (< {BROADCAST_TARGET:.0f}x)")
    return 0 if hook_ratio <= HOOK_TARGET and bc_ratio < BROADCAST_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
