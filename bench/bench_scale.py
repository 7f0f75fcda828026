#!/usr/bin/env python3
"""One big mailbox through a real ``git daemon`` (issue 16, items 2-4).

Run:  .venv/bin/python bench/bench_scale.py [--n 1000000] [--small 1000] [--json]

One org, one recipient (``reader``), one sender; ``--n`` signed messages on
``mail/reader/sender``, one a second ending now, written straight into the
server's object store with the bulk writer (``gitmail/core/bulk.py``, one pack
per 50,000 messages, then ``git update-ref`` there: a push of a million
commits would only measure pack-objects). Then, each figure in the same run:

* first ``gitmail sync`` of a fresh clone: wall time and peak memory, against
  the floor (a plain ``git fetch`` of the same refs in another clone of the
  same member, plus the ed25519 checks of every commit alone, on every core,
  with the verifier gitmail uses), and against a minimal verifying reader (the
  same ``git fetch``, then the walk, each signature checked, each
  ``message.json`` parsed and a row per message written to SQLite, on every
  core, and no other rule: :func:`minimal_reader`);
* ``gitmail verify --all`` (wall time, peak memory) and ``gitmail verify``;
* one new message (median of 3): ``gitmail sync`` and a plain ``git fetch``
  bringing it, then ``gitmail list --unread`` and ``gitmail read ID``; the same
  in a ``--small`` mailbox (default 1,000 messages) for the ratio.

Peak memory is printed four ways: the largest single process (``/usr/bin/time``'s
``%M``, covering the descendants it waited for, git included), gitmail's own
process alone (``self``) and its largest child (a verifying worker or git),
and the whole process tree's proportional set size (sampled every 50 ms from
``/proc/*/smaps_rollup``: pages a forked worker pool shares with its parent
count once); git's own peak is that of the plain ``git fetch`` of the same
refs. The measured commands run with ``GITMAIL_WARM=off`` (in the measured
process, not in a child of the warm CLI server, which is no descendant of
it). Figures are printed as they are measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_sync import GITMAIL, git, isolate, join, serve, sh, timed  # noqa: E402  (bench/ is on sys.path)

CHUNK = 50_000  # messages per pack written into the server


def tree_pss_kb(root: int) -> int:
    """Sum of the proportional set sizes (KiB) of ``root`` and all its descendants, from /proc:
    a page shared by a forked worker pool counts once in all, not once per process."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        kids.setdefault(int(st.rsplit(")", 1)[1].split()[1]), []).append(int(d))
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next((int(ln.split()[1]) for ln in f if ln.startswith("Pss:")), 0)
        except OSError:
            pass
        todo += kids.get(p, [])
    return total


# Runs ``gitmail`` in this interpreter and records the peak resident set of that process alone
# and of its largest child (a verifying worker or git), which ``/usr/bin/time`` cannot tell apart.
PEAKS = """
import resource, sys
from gitmail.cli.launch import main
out = sys.argv.pop(1)
try:
    code = main()
finally:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as f:
        f.write(f"{me.ru_maxrss} {kids.ru_maxrss}")
sys.exit(code)
"""


def measured(cmd: list[str], cwd: Optional[Path] = None) -> dict[str, float]:
    """Run ``cmd`` (a ``gitmail`` command line, or any other): wall seconds, peak RSS of its
    largest single process (GNU time's ``%M``: ``wait4`` of a child forked from the small ``time``
    process, so this benchmark's own memory never counts; it covers the descendants the command
    waited for, git included), peak PSS of the whole tree (MB) and, for gitmail, the peaks of
    gitmail's own process (``self_maxrss_mb``) and of its largest child. ``GITMAIL_WARM=off``:
    the command runs in the measured process, not in a child of the warm CLI server."""
    t = time.perf_counter()
    with tempfile.NamedTemporaryFile() as rss, tempfile.NamedTemporaryFile() as own, tempfile.TemporaryFile() as err:
        if cmd[0] == GITMAIL:
            cmd = [sys.executable, "-c", PEAKS, own.name, *cmd[1:]]
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], cwd=cwd,
                             stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "GITMAIL_WARM": "off"})
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree_pss_kb(p.pid))
                done.wait(0.05)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        p.wait()
        wall = time.perf_counter() - t
        done.set()
        th.join()
        if p.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd[:3])} failed ({p.returncode}): {err.read().decode()[-2000:]}")
        maxrss_kb = int(Path(rss.name).read_text().split()[-1])
        mine = [int(x) for x in Path(own.name).read_text().split()]
    out = {"wall_s": wall, "maxrss_mb": maxrss_kb / 1024, "tree_pss_mb": peak[0] / 1024}
    if mine:
        out["self_maxrss_mb"], out["child_maxrss_mb"] = mine[0] / 1024, mine[1] / 1024
    return out


class Live(dict[str, Any]):
    """Results printed as they are measured (a long run that is stopped still shows them)."""

    def __setitem__(self, k: str, v: Any) -> None:
        print(f"  {k:<30} {v:.3f}" if isinstance(v, float) else f"  {k:<30} {v}", flush=True)
        super().__setitem__(k, v)


def fill(bare: Path, clone: Path, rcpt: str, sender: str, n: int, start: int = 0) -> str:
    """Write ``n`` signed messages from ``sender`` (keys in ``clone``) onto ``mail/<rcpt>/<sender>``
    directly in the server ``bare``; return the new tip."""
    from types import SimpleNamespace

    from gitmail.core import bulk, refs
    from gitmail.core import directory as dirmod
    from gitmail.core.model import Message, format_date, utcnow
    from gitmail.core.repo import Repo, open_repo
    from gitmail.core.signing import load_key

    r = open_repo(clone)
    author = dirmod.load(r).members[sender]
    signer = load_key(r.key_path(sender))
    ref = refs.head(refs.mail_path(rcpt, sender))
    old = subprocess.run(["git", "rev-parse", "-q", "--verify", ref], cwd=bare, capture_output=True, text=True)
    tip = bytes.fromhex(old.stdout.strip()) if old.returncode == 0 else None
    # One message a second, ending now: a mailbox filled over time, as git's date-ordered walks
    # (fetch's cutoff, upload-pack's oldest have) meet it in real life; a million commits with
    # one timestamp would make every such walk visit the whole history.
    now = int(time.time()) - n
    date = format_date(utcnow())
    server = cast(Repo, SimpleNamespace(git_dir=bare))
    for lo in range(start, start + n, CHUNK):
        pack = bulk.PackWriter()
        for i in range(lo, min(lo + CHUNK, start + n)):
            m = Message(**{"from": sender}, to=[rcpt], date=date, subject=f"bulk {i}",
                        summary=f"bulk {i}", body=f"bulk message number {i}\n" + "lorem ipsum " * 20)
            m.id = m.compute_id()
            tip = bulk.message_commit(pack, m, author, signer, tip, now + i - start)
        pack.finish(server)
        print(f"  ... {min(lo + CHUNK, start + n) - start:,} of {n:,} messages written", file=sys.stderr, flush=True)
    assert tip is not None
    git("update-ref", ref, tip.hex(), cwd=bare)
    return tip.hex()


def signature_floor(clone: Path, tip: str) -> float:
    """Seconds for the ed25519 checks of every commit up to ``tip`` alone (commits already read,
    every core, the verifier gitmail uses), in batches so memory stays bounded."""
    import pygit2

    from gitmail.core.signing import signers

    pg = pygit2.Repository(str(clone))
    total = 0.0
    batch: list[Any] = []
    results: list[object] = []

    def flush() -> None:
        nonlocal total
        t = time.perf_counter()
        results[:] = signers(batch)
        total += time.perf_counter() - t
        assert all(isinstance(x, str) for x in results), "a generated message failed its signature check"
        batch.clear()

    for c in pg.walk(pg[tip].id):
        batch.append(c)
        if len(batch) == 10_000:
            flush()
    if batch:
        flush()
    return total


# A worker of :func:`minimal_reader` (set before its pool forks; the repository opened lazily).
_READER: dict[str, Any] = {}


def _read_chunk(oids: list[str]) -> list[tuple[str, ...]]:
    """Check the signature of each commit and read its ``message.json``: a row each."""
    import orjson
    import pygit2

    from gitmail.core.objects import blob_data, commit
    from gitmail.core.signing import signers

    pg = _READER.get("pg")
    if pg is None:
        pg = _READER["pg"] = pygit2.Repository(_READER["path"])
    commits = [commit(pg, o) for o in oids]
    keys = signers(commits, threads=False)
    rows: list[tuple[str, ...]] = []
    for c, k in zip(commits, keys):
        assert isinstance(k, str), "a generated message failed its signature check"
        m = orjson.loads(blob_data(pg, c.tree["message.json"].id))
        rows.append((str(c.id), m["id"], m["from"], m["date"], m["subject"], k))
    return rows


def minimal_reader(clone: Path, tip: str, db: Path) -> float:
    """Seconds a *minimal* verifying reader takes over every commit up to ``tip`` (already
    fetched): the first-parent walk, then on every core (forked workers, 250 commits a task)
    each commit read, its signature checked (the verifier gitmail uses) and its
    ``message.json`` parsed, and one row per message written to SQLite (an index on the
    Message-ID, a transaction per 10,000) in order. None of the protocol's other rules, no
    de-duplication, no read state: what any reader that checks signatures and lists the
    messages pays at least, to set gitmail's first sync against (docs/scale.md)."""
    import gc
    import multiprocessing
    import sqlite3
    from concurrent.futures import ProcessPoolExecutor

    import pygit2

    from gitmail.core.objects import collect, configure_reads

    configure_reads()
    t = time.perf_counter()
    gc.disable()  # as gitmail's ingest: nothing here makes cycles
    try:
        pg = pygit2.Repository(str(clone))
        walked, merge = collect(pg, tip)
        assert not merge
        oids = [walked[i] for i in range(len(walked) - 1, -1, -1)]  # oldest first
        del walked
        con = sqlite3.connect(db)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE msg(oid TEXT, id TEXT, sender TEXT, date TEXT, subject TEXT, key TEXT)")
        con.execute("CREATE INDEX msg_id ON msg(id)")
        _READER.clear()
        _READER["path"] = str(clone)
        tasks = (oids[i:i + 250] for i in range(0, len(oids), 250))
        with ProcessPoolExecutor(os.cpu_count() or 1, mp_context=multiprocessing.get_context("fork")) as ex:
            done = 0
            for rows in ex.map(_read_chunk, tasks):
                con.executemany("INSERT INTO msg VALUES (?,?,?,?,?,?)", rows)
                done += len(rows)
                if done % 10_000 == 0:
                    con.commit()
        con.commit()
        assert con.execute("SELECT count(*) FROM msg").fetchone()[0] == len(oids)
        con.close()
    finally:
        gc.enable()
    return time.perf_counter() - t


def one_new(bare: Path, sender: Path, synced: Path, plain: Path, n: int) -> dict[str, float]:
    """A sync bringing one new message (and a plain fetch of it), then list --unread and read."""
    fill(bare, sender, "reader", "sender", 1, start=n)
    t_fetch = timed(lambda: git("fetch", "-q", "origin", cwd=plain))
    t_sync = timed(lambda: sh(GITMAIL, "sync", "-q", "--repo", str(synced)))
    t_unread = timed(lambda: sh(GITMAIL, "list", "--unread", "-q", "--repo", str(synced)))
    top = json.loads(sh(GITMAIL, "list", "--unread", "--json", "--limit", "1", "--repo", str(synced)))
    mid = top["messages"][0]["id"]
    t_read = timed(lambda: sh(GITMAIL, "read", mid[:12], "-q", "--repo", str(synced)))
    return {"one_new_git_fetch_s": t_fetch, "one_new_sync_s": t_sync, "list_unread_s": t_unread, "read_s": t_read}


def run(work: Path, n: int, heavy: bool, rounds: int = 3) -> dict[str, Any]:
    """Build an org with ``n`` messages for ``reader``; measure (``heavy``: first sync, floor, verify)."""
    from gitmail import api

    work.mkdir(parents=True)
    d, bare = serve(work / "srv", guard=False)
    out: dict[str, Any] = Live()
    out["messages"] = n
    with d:
        url = d.url()
        sender = join(url, work, "sender")
        plain = join(url, work / "p", "reader")
        synced = work / "s" / "clone-reader"
        api.init(synced, "reader", org=url)  # the same member's second clone
        t = time.perf_counter()
        tip = fill(bare, sender, "reader", "sender", n)
        out["generate_s"] = time.perf_counter() - t
        fetch = measured(["git", "fetch", "-q", "origin"], cwd=plain)
        out["git_fetch_s"] = fetch["wall_s"]
        out["git_fetch_maxrss_mb"] = fetch["maxrss_mb"]
        first = measured([GITMAIL, "sync", "-q", "--repo", str(synced)])
        out["first_sync_s"] = first["wall_s"]
        out["first_sync_maxrss_mb"] = first["maxrss_mb"]
        out["first_sync_self_maxrss_mb"] = first["self_maxrss_mb"]
        out["first_sync_child_maxrss_mb"] = first["child_maxrss_mb"]
        out["first_sync_tree_pss_mb"] = first["tree_pss_mb"]
        listing = json.loads(sh(GITMAIL, "list", "--json", "--limit", "1", "--repo", str(synced)))
        out["all_listed"] = listing["total"] == n
        if heavy:
            out["signature_checks_s"] = signature_floor(plain, tip)
            floor = out["git_fetch_s"] + out["signature_checks_s"]
            out["floor_s"] = floor
            out["first_sync_vs_floor"] = out["first_sync_s"] / floor
            out["minimal_reader_s"] = minimal_reader(plain, tip, work / "minimal.db")
            out["minimal_reader_vs_floor"] = (out["git_fetch_s"] + out["minimal_reader_s"]) / floor
            out["first_sync_vs_minimal"] = out["first_sync_s"] / (out["git_fetch_s"] + out["minimal_reader_s"])
            v = measured([GITMAIL, "verify", "--all", "-q", "--repo", str(synced)])
            out["verify_all_s"] = v["wall_s"]
            out["verify_all_maxrss_mb"] = v["maxrss_mb"]
            out["verify_all_self_maxrss_mb"] = v["self_maxrss_mb"]
            out["verify_all_child_maxrss_mb"] = v["child_maxrss_mb"]
            out["verify_all_tree_pss_mb"] = v["tree_pss_mb"]
            t = time.perf_counter()
            sh(GITMAIL, "verify", "-q", "--repo", str(synced))
            out["verify_incremental_s"] = time.perf_counter() - t
        runs = [one_new(bare, sender, synced, plain, n + i) for i in range(rounds)]
        for k in runs[0]:
            out[k] = statistics.median(r[k] for r in runs)  # median: this machine is shared
    return dict(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="messages in the big mailbox")
    ap.add_argument("--small", type=int, default=1000, help="messages in the small mailbox (steady-state ratio)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object at the end")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitmail-scale-") as tmp:
        work = Path(tmp)
        isolate(work)
        print(f"gitmail scale benchmark: {args.n:,} messages vs {args.small:,} ({os.cpu_count()} CPUs)")
        print(f"\n== {args.small:,} messages", flush=True)
        small = run(work / "small", args.small, heavy=False)
        print(f"\n== {args.n:,} messages (targets: first sync <= 1.3x floor, peak <= 300 MB, steady state <= 1.5x)",
              flush=True)
        big = Live(run(work / "big", args.n, heavy=True))
        for k in ("one_new_sync_s", "one_new_git_fetch_s", "list_unread_s", "read_s"):
            big[f"{k[:-2]}_vs_small"] = big[k] / small[k]
    if args.json:
        print(json.dumps({"small": small, "big": dict(big)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
