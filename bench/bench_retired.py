#!/usr/bin/env python3
"""A first sync of a mailbox whose sender has rotated their key (docs/protocol.md §7, "Key validity").

Run:  .venv/bin/python bench/bench_retired.py [--n 5000]

One org through ``git daemon``; ``--n`` signed messages from ``sender`` on
``mail/reader/sender`` (the bulk writer, as bench_scale.py), then ``sender`` runs
``gitmail key rotate``: every one of those messages is now signed by a retired key,
good only on the first-parent line below the tip the rotation recorded. Then, in the
same run: a fresh clone's first ``gitmail sync`` of ``reader``'s mail, and the same
first sync of a second mailbox of ``--n`` messages whose sender never rotated (the
baseline). Prints both times and their ratio. Each retired-key message asked whether it
lies below the recorded tip; asked of libgit2 (``descendant_of``), that walked the line
between the two every time: quadratic in the mailbox.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_scale import fill  # noqa: E402
from bench_sync import GITMAIL, served_org, sh  # noqa: E402


def first_sync(url: str, root: Path, name: str) -> float:
    from gitmail import api

    clone = root / f"fresh-{name}"
    api.init(clone, name, org=url)
    t = time.perf_counter()
    sh(GITMAIL, "sync", "-q", "--repo", str(clone))
    took = time.perf_counter() - t
    bad = subprocess.run([GITMAIL, "verify", "--all", "-q", "--repo", str(clone)], capture_output=True, text=True)
    assert bad.returncode == 0, bad.stdout[-500:]  # every message good: below the recorded tip
    return took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    a = ap.parse_args()
    with served_org(["rotating", "steady", "reader", "other"], guard=False) as (url, bare, clones):
        fill(bare, clones["rotating"], "reader", "rotating", a.n)
        fill(bare, clones["steady"], "other", "steady", a.n)
        sh(GITMAIL, "sync", "-q", "--repo", str(clones["rotating"]))
        sh(GITMAIL, "key", "rotate", "-q", "--repo", str(clones["rotating"]))
        work = clones["reader"].parent
        t_rot = first_sync(url, work / "r", "reader")
        t_base = first_sync(url, work / "b", "other")
    print(f"{a.n:,} messages: first sync {t_rot:.2f} s where the sender rotated, {t_base:.2f} s where not "
          f"({t_rot / t_base:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
