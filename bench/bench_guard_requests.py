#!/usr/bin/env python3
"""The guard's §5 check of a response against a long asking mailbox (issue 16, item 6).

Run:  .venv/bin/python bench/bench_guard_requests.py [--n 100000] [--rounds 3]

One org served by ``git daemon`` with the guard installed; ``--n`` signed messages
from ``sender`` on ``mail/reader/sender`` (the bulk writer, as bench_scale.py).
``reader`` then pushes, with plain git, genuinely signed answers to request ids
``sender`` never sent: the guard must read the whole asking mailbox to refuse each.
Alternating, in the same run:

* ``no index``: the guard's request index (``<git dir>/gitmail/requests.sqlite``)
  removed before the push, so the guard reads the whole line, as every such push
  did before the index;
* ``index``: the index kept from the push before (what a server does);
* ``plain``: an ordinary guarded push of a text message on another ref, the baseline.

Prints the median wall time of each push (client ``git push`` to exit) and the
ratios to ``plain``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_scale import fill  # noqa: E402
from bench_sync import served_org  # noqa: E402


def commit(clone: Path, to: str, typ: str, rid: str | None, n: int) -> str:
    """A signed message from the clone's member to ``to`` on top of the server's tip."""
    from gitmail import api
    from gitmail.core import refs, sync
    from gitmail.core.model import Message, format_date, utcnow
    from gitmail.core.store import write_message_commit

    s = api.session(clone)
    sync.fetch(s.repo)
    payload = {"answer": "yes"} if typ == "answer" else None
    msg = Message(**{"from": s.member.name}, to=[to], date=format_date(utcnow()), subject=f"{typ} {n}",
                  body=f"{typ} {n}", type=typ, request_id=rid, payload=payload)
    msg.id = msg.compute_id()
    path = refs.mail_path(to, s.member.name)
    return write_message_commit(s.repo.pg, msg, s.member, s.signer, s.repo.ref_target(refs.tracking(path, s.repo.remote)))


def push(clone: Path, url: str, oid: str, ref: str) -> tuple[float, int, str]:
    t = time.perf_counter()
    p = subprocess.run(["git", "push", "-q", url, f"{oid}:{ref}"], cwd=clone, capture_output=True, text=True)
    return time.perf_counter() - t, p.returncode, p.stderr


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    from gitmail.core import refs

    with served_org(["sender", "reader"], guard=True) as (url, bare, clones):
        sender, reader = clones["sender"], clones["reader"]
        fill(bare, sender, "reader", "sender", a.n)
        index = bare / "gitmail" / "requests.sqlite"
        answer_ref = refs.head(refs.mail_path("sender", "reader"))
        note_ref = refs.head(refs.mail_path("reader", "sender"))
        t, code, err = push(sender, url, commit(sender, "reader", "text", None, -1), note_ref)  # warms the guard
        assert code == 0, err
        times: dict[str, list[float]] = {"no index": [], "index": [], "plain": []}
        for r in range(a.rounds):
            for kind in ("no index", "index", "plain"):
                if kind == "no index":
                    for f in index.parent.glob(index.name + "*"):
                        f.unlink()
                if kind == "plain":
                    t, code, err = push(sender, url, commit(sender, "reader", "text", None, r), note_ref)
                    assert code == 0, err
                else:
                    t, code, err = push(reader, url, commit(reader, "sender", "answer", f"never-{kind}-{r}", r),
                                        answer_ref)
                    assert code != 0 and "none with request_id" in err, err
                times[kind].append(t)
                print(f"  round {r + 1} {kind:<9} {t:.3f} s", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"asking mailbox: {a.n:,} messages; medians of {a.rounds}")
    for k, v in med.items():
        print(f"  {k:<9} {v:.3f} s   {v / med['plain']:.2f}x plain")
    print(f"  index / no index: {med['index'] / med['no index']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
