#!/usr/bin/env python3
"""Sync benchmarks through a real ``git daemon`` on 127.0.0.1 (issue 3).

Run:  .venv/bin/python bench/bench_sync.py [--quick] [--only a,b,c] [--no-guard]

(a) N sender processes (N distinct members, one clone each) x M messages to
    one recipient: every message delivered exactly once; aggregate messages/s.
    Baseline: the same N x M pushes of plain unsigned commits with ``git
    commit-tree`` + ``git push`` (the floor of one push per message). Then
    the same N x M messages again, each sender handing ``--per-push`` of them
    to one push (``api.send_batch``), as a sender with queued mail does.
(b) Fetching K new messages for one member: ``gitmail sync`` wall time against
    a plain ``git fetch`` of the same refs (two identical clones, same run).
    Also the floor: the ed25519 signature checks of those K commits alone
    (in-process, on every core), and (fetch + checks) / fetch, the best ratio
    any client that verifies every message before accepting it can reach.
(c) ``git pull`` bringing one code commit and one message: with the
    post-merge hook installed against without it (same clone, same run,
    alternating, median of R rounds). Also a pull that brings no mail.

Everything runs in a private temporary HOME; nothing outside it is touched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sync.daemon import GitDaemon  # noqa: E402

PY = sys.executable
GITMAIL = str(Path(PY).parent / "gitmail")


def sh(*args: str, cwd: Optional[Path] = None) -> str:
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, text=True).stdout


def git(*args: str, cwd: Optional[Path] = None) -> str:
    return sh("git", *args, cwd=cwd)


def timed(f: Callable[[], object]) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def join(url: str, root: Path, name: str) -> Path:
    from gitmail import api

    clone = root / f"clone-{name}"
    api.init(clone, name, org=url)
    return clone


def server_ids(bare: Path, ref: str) -> list[str]:
    out = git("log", "--format=%(trailers:key=Message-Id,valueonly)", ref, cwd=bare)
    return [ln.strip() for ln in out.splitlines() if ln.strip()]


def stop_guard(bare: Path) -> None:
    """Stop the warm guard daemon the pushes started (it would idle out after 300 s anyway)."""
    from gitmail.guard import daemon as guard_daemon

    guard_daemon.stop(bare)


@contextlib.contextmanager
def served_org(names: "Sequence[str]", guard: bool) -> "Iterator[tuple[str, Path, dict[str, Path]]]":
    """A private HOME and an org served by ``git daemon`` with a clone for each of ``names``
    (the first its admin): ``(url, bare repo, clones)``, the daemon stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="gitmail-bench-") as tmp:
        work = Path(tmp)
        isolate(work)
        d, bare = serve(work / "srv", guard=guard)
        with d:
            url = d.url()
            yield url, bare, {n: join(url, work, n) for n in names}
        if guard:
            stop_guard(bare)


def serve(srv: Path, guard: bool) -> tuple[GitDaemon, Path]:
    """A (not yet started) ``git daemon`` for ``srv`` and its new bare ``org.git``."""
    srv.mkdir()
    d = GitDaemon(srv)
    return d, d.create("org.git", guard=guard)


# -- (a) ------------------------------------------------------------------------------------

SENDER = """
import sys, time
from gitmail import api
clone, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lat = []
for i in range(n):
    t = time.perf_counter()
    r = api.send(clone, ["boss"], f"{tag} message {i}")
    lat.append(time.perf_counter() - t)
    assert r.delivered and not r.queued, r
print(sum(lat) / len(lat))
"""

# The same messages, but each sender hands what it has queued to one push: send_batch of
# ``per_push`` drafts (issue 16 item 6: "senders batching what they have queued into one push").
BATCHED = """
import sys, time
from gitmail import api
clone, n, tag, per_push = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
lat = []
for k in range(0, n, per_push):
    t = time.perf_counter()
    drafts = [api.Draft(to=["boss"], body=f"{tag} batched {i}") for i in range(k, min(n, k + per_push))]
    rs = api.send_batch(clone, drafts)
    lat.append(time.perf_counter() - t)
    assert all(r.delivered and not r.queued for r in rs), rs
print(sum(lat) / len(lat))
"""

RAW = """
set -e
cd "$1"
for i in $(seq 1 "$2"); do
  c=$(echo "raw $3 $i" | git commit-tree "$(git hash-object -t tree /dev/null)" ${p:+-p $p})
  git push -q origin "$c:refs/heads/raw/$3"
  p=$c
done
"""


def bench_a(work: Path, senders: int, per: int, guard: bool, per_push: int = 0) -> dict:
    """(a): ``senders`` processes x ``per`` messages, one push each, against the raw floor; with
    ``per_push``, also the same messages handed ``per_push`` at a time to one push (send_batch)."""
    d, bare = serve(work / "srv-a", guard)
    with d:
        url = d.url()
        boss = join(url, work, "boss")
        names = [f"s{i:02d}" for i in range(senders)]
        clones = [join(url, work, n) for n in names]
        git("fetch", "-q", "origin", cwd=boss)

        def run_all(cmds: list[list[str]]) -> list[str]:
            procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
            outs = []
            for p in procs:
                out, err = p.communicate()
                if p.returncode != 0:
                    raise SystemExit(f"sender failed: {err.strip().splitlines()[-1:]}")
                outs.append(out)
            return outs

        t_raw = timed(lambda: run_all([["sh", "-c", RAW, "raw", str(c), str(per), n] for c, n in zip(clones, names)]))
        outs: list[str] = []
        t = timed(lambda: outs.extend(run_all([[PY, "-c", SENDER, str(c), str(per), n] for c, n in zip(clones, names)])))
        t_batched, batch_outs = 0.0, []
        if per_push:
            t_batched = timed(lambda: batch_outs.extend(run_all(
                [[PY, "-c", BATCHED, str(c), str(per), n, str(per_push)] for c, n in zip(clones, names)])))
        ids = [i for n in names for i in server_ids(bare, f"refs/heads/gitmail/mail/boss/{n}")]
        t_sync = timed(lambda: sh(GITMAIL, "sync", "-q", "--repo", str(boss)))
        listing = json.loads(sh(GITMAIL, "list", "--json", "--limit", "100000", "--repo", str(boss)))
    stop_guard(bare)
    total = senders * per * (2 if per_push else 1)
    exact = len(ids) == total and len(set(ids)) == total and listing["total"] == total
    good = all(m["verified"] for m in listing["messages"])
    out = {
        "guard": guard, "messages": total, "delivered_exactly_once": exact and good,
        "wall_s": t, "msgs_per_s": senders * per / t, "mean_send_latency_s": statistics.mean(float(o) for o in outs),
        "raw_push_wall_s": t_raw, "raw_msgs_per_s": senders * per / t_raw, "ratio_vs_raw": t / t_raw,
        "recipient_sync_s": t_sync,
    }
    if per_push:
        out.update({"batched_per_push": per_push, "batched_wall_s": t_batched,
                    "batched_msgs_per_s": senders * per / t_batched,
                    "batched_mean_push_latency_s": statistics.mean(float(o) for o in batch_outs)})
    return out


# -- (b) ------------------------------------------------------------------------------------


def make_messages(clone: Path, rcpt: str, sender: str, n: int) -> str:
    """Write ``n`` signed message commits on ``mail/<rcpt>/<sender>`` in ``clone``; return the tip."""
    from gitmail.core import directory as dirmod
    from gitmail.core import refs
    from gitmail.core.model import Message, format_date, utcnow
    from gitmail.core.repo import open_repo
    from gitmail.core.signing import load_key
    from gitmail.core.store import write_message_commit

    r = open_repo(clone)
    author = dirmod.load(r).members[sender]
    signer = load_key(r.key_path(sender))
    tip = r.ref_target(refs.tracking(refs.mail_path(rcpt, sender), r.remote))
    for i in range(n):
        m = Message(**{"from": sender}, to=[rcpt], date=format_date(utcnow()), subject=f"bulk {i}",
                    summary=f"bulk {i}", body=f"bulk message number {i}\n" + "lorem ipsum " * 20)
        m.id = m.compute_id()
        tip = write_message_commit(r.pg, m, author, signer, tip)
    assert tip
    return tip


def bench_b(work: Path, n: int, guard: bool) -> dict:
    d, bare = serve(work / "srv-b", guard)
    with d:
        url = d.url()
        sender = join(url, work / "b", "sender")
        plain = join(url, work / "b", "reader")
        synced = work / "b" / "clone-reader-2"
        from gitmail import api

        api.init(synced, "reader", org=url)  # the same member's second clone
        t_gen = timed(lambda: None)
        tip = ""

        def gen() -> None:
            nonlocal tip
            tip = make_messages(sender, "reader", "sender", n)

        t_gen = timed(gen)
        t_push = timed(lambda: git("push", "-q", "origin", f"{tip}:refs/heads/gitmail/mail/reader/sender", cwd=sender))
        t_fetch = timed(lambda: git("fetch", "-q", "origin", cwd=plain))
        t_sync = timed(lambda: sh(GITMAIL, "sync", "-q", "--repo", str(synced)))
        listing = json.loads(sh(GITMAIL, "list", "--json", "--limit", "1", "--repo", str(synced)))
        t_list = timed(lambda: sh(GITMAIL, "list", "-q", "--repo", str(synced)))
        t_fetch_noop = timed(lambda: git("fetch", "-q", "origin", cwd=plain))
        t_sync_noop = timed(lambda: sh(GITMAIL, "sync", "-q", "--repo", str(synced)))
        t_sigs = signature_floor(synced, tip)
    stop_guard(bare)
    return {
        "messages": n, "all_listed": listing["total"] == n, "generate_s": t_gen, "push_s": t_push,
        "git_fetch_s": t_fetch, "gitmail_sync_s": t_sync, "ratio": t_sync / t_fetch,
        "list_after_s": t_list, "git_fetch_noop_s": t_fetch_noop, "gitmail_sync_noop_s": t_sync_noop,
        "signature_checks_s": t_sigs, "floor_ratio": (t_fetch + t_sigs) / t_fetch,
        "guard_on_push": guard,
    }


def signature_floor(clone: Path, tip: str) -> float:
    """Seconds to check the signatures of the commits up to ``tip`` and nothing else (every core;
    commits already read): what any client that verifies before it accepts pays on top of the fetch."""
    import pygit2

    from gitmail.core.signing import signers

    pg = pygit2.Repository(str(clone))
    commits = list(pg.walk(pg[tip].id))
    results: list[object] = []
    t = timed(lambda: results.extend(signers(commits)))
    assert all(isinstance(r, str) for r in results), "a generated message failed its signature check"
    return t


# -- (c) ------------------------------------------------------------------------------------


def bench_c(work: Path, rounds: int) -> dict:
    from gitmail import api, hooks

    d, bare = serve(work / "srv-c", True)
    with d:
        url = d.url()
        writer = join(url, work / "c", "writer")
        reader = join(url, work / "c", "reader")
        n = [0]

        def code_commit(mail: bool) -> None:
            n[0] += 1
            (writer / "f").write_text(str(n[0]))
            git("add", "f", cwd=writer)
            git("-c", "user.name=w", "-c", "user.email=w@x", "commit", "-qm", f"c{n[0]}", cwd=writer)
            git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=writer)
            if mail:
                api.send(writer, ["reader"], f"mail {n[0]}: the build is green, please review")

        code_commit(False)
        git("fetch", "-q", "origin", cwd=reader)
        git("checkout", "-q", "-B", "main", "--track", "origin/main", cwd=reader)
        sh(GITMAIL, "list", "-q", "--repo", str(reader))  # warm the cache
        res: dict[str, list[float]] = {"with_mail_hook": [], "with_mail_plain": [], "no_mail_hook": [],
                                       "no_mail_plain": []}
        notices = 0
        for _ in range(rounds):
            for hooked in (True, False):
                (hooks.install if hooked else hooks.uninstall)(reader)
                for mail in (True, False):
                    code_commit(mail)
                    p: list[subprocess.CompletedProcess[str]] = []
                    t = timed(lambda: p.append(subprocess.run(["git", "pull", "-q", "--ff-only"], cwd=reader,
                                                               capture_output=True, text=True, check=True)))
                    notices += "📬" in p[0].stdout + p[0].stderr
                    res[f"{'with' if mail else 'no'}_mail_{'hook' if hooked else 'plain'}"].append(t)
                    if not hooked:
                        sh(GITMAIL, "list", "-q", "--repo", str(reader))  # a gitmail command ingests it later
        hooks.uninstall(reader)
    stop_guard(bare)
    med = {k: statistics.median(v) for k, v in res.items()}
    return {
        "rounds": rounds, "notices_printed": notices, **{f"{k}_s": v for k, v in med.items()},
        "ratio_with_mail": med["with_mail_hook"] / med["with_mail_plain"],
        "ratio_no_mail": med["no_mail_hook"] / med["no_mail_plain"],
    }


# -- main -------------------------------------------------------------------------------------


def isolate(work: Path) -> None:
    home = work / "home"
    home.mkdir()
    os.environ.update({"HOME": str(home), "GITMAIL_HOME": str(home / "gitmail"), "GIT_CONFIG_NOSYSTEM": "1",
                       "GITMAIL_NOTICE": "never", "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "bench",
                       "GIT_AUTHOR_EMAIL": "bench@example.invalid", "GIT_COMMITTER_NAME": "bench",
                       "GIT_COMMITTER_EMAIL": "bench@example.invalid"})
    for v in ("GITMAIL_USER", "GITMAIL_REPO", "GITMAIL_REMOTE", "XDG_DATA_HOME", "SSH_AUTH_SOCK"):
        os.environ.pop(v, None)
    # Measured as installed: pip compiles a package's modules when it installs them, so a
    # command does not compile its imports from source on every start (about 70 ms of a sync).
    import compileall

    import gitmail

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    compileall.compile_dir(str(Path(gitmail.__file__).parent), quiet=1)


def show(title: str, res: dict) -> None:
    print(f"\n== {title}")
    for k, v in res.items():
        print(f"  {k:<26} {v:.3f}" if isinstance(v, float) else f"  {k:<26} {v}")
    sys.stdout.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (4x10 senders, 1,000 messages, 3 rounds)")
    ap.add_argument("--only", default="a,b,c", help="which benchmarks (comma-separated: a,b,c)")
    ap.add_argument("--no-guard", action="store_true", help="serve the org repos without the pre-receive guard")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object at the end")
    ap.add_argument("--per-push", type=int, default=10,
                    help="(a) also send the same messages this many to a push (send_batch); 0: skip [10]")
    args = ap.parse_args()
    only = set(args.only.split(","))
    guard = not args.no_guard
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="gitmail-bench-") as tmp:
        work = Path(tmp)
        isolate(work)
        print(f"gitmail sync benchmarks ({'quick' if args.quick else 'full'}; guard {'on' if guard else 'off'};"
              f" {os.cpu_count()} CPUs)")
        if "a" in only:
            s, m = (4, 10) if args.quick else (16, 50)
            out["a"] = bench_a(work, s, m, guard, args.per_push)
            show(f"(a) {s} senders x {m} messages -> 1 recipient (target >= 50 msgs/s)", out["a"])
        if "b" in only:
            n = 1000 if args.quick else 10_000
            out["b"] = bench_b(work, n, guard)
            show(f"(b) fetch {n} new messages: gitmail sync vs git fetch (target ratio <= 1.5)", out["b"])
        if "c" in only:
            out["c"] = bench_c(work, 3 if args.quick else 7)
            show("(c) git pull with the post-merge hook vs without (target ratio <= 1.3)", out["c"])
    if args.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
