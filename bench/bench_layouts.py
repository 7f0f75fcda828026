#!/usr/bin/env python3
"""Which shared-ref layout can replace one ref per (recipient, sender)? Plain git, no gitmail (issue 16 item 1).

Run:  .venv/bin/python bench/bench_layouts.py [--senders 16] [--per 50] [--guard] [--json]

A research bench for docs/scale.md "Pushes": it measures, with plain ``git
commit-tree`` + ``git push`` through a real ``git daemon`` on 127.0.0.1, the
two costs a layout trades against each other. Nothing here runs gitmail's own
send path; each figure is the floor of its layout (what git alone costs).

(1) **Advertisement.** ``receive-pack`` sends every ref of the repository to
    every pusher (protocol v0/v1; push has no v2). One push of one commit into
    a repository holding R other refs, R = 0, 1,000, 10,000, 100,000: wall
    time (median of 5) and the ref list's size (``git ls-remote`` bytes, what
    the pusher downloads first). Ratios against R = 0 in the same run.
(2) **Contention.** ``--senders`` processes, each with its own clone, push
    ``--per`` commits each (one commit a push), all to one recipient:

    * ``pairs``: one ref per sender (today's ``mail/<R>/<S>``): no push is
      ever refused;
    * ``inbox``: every sender appends to one ref (one branch per recipient). A
      push that lost the race is refused (not a fast-forward); the sender
      fetches that one ref, re-parents its commit on the new tip (in gitmail:
      a new signature) and pushes again;
    * ``lanes-K``: the recipient's mail is spread over K refs, the sender's
      lane fixed by its name (``sha256`` mod K); the same retry within a lane;
    * ``inbox-batched``: as ``inbox``, but each sender queues the commits
      written while its push was refused and pushes them together (what a
      sender that batches its queue, ``send_batch``, would do).

    For each: wall time, commits/s, pushes refused, and whether every commit
    is on the server exactly once. ``--guard`` installs gitmail's guard on the
    server (its hook runs for every push; it passes refs outside
    ``refs/heads/gitmail/``), so the race window includes the hook's latency as
    on a guarded server.

Everything runs in a private temporary HOME.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_sync import git, isolate, serve, timed  # noqa: E402  (bench/ is on sys.path)

# One sender: $1 clone, $2 commits, $3 tag, $4 the ref it writes, $5 batched (1) or not (0).
# Prints the number of refused pushes. A refused push is followed by a fetch of that one ref and
# a re-parent of everything not yet on the server.
SENDER = r"""
set -e
cd "$1"; n=$2; tag=$3; ref=$4; batched=$5
empty=$(git hash-object -t tree /dev/null)
tip() { git rev-parse -q --verify "refs/remotes/origin/$ref" || true; }
git fetch -q origin "+refs/heads/$ref*:refs/remotes/origin/$ref*"
refused=0; i=1
while [ "$i" -le "$n" ]; do
  p=$(tip)
  last=$i
  if [ "$batched" = 1 ] && [ "$refused" -gt 0 ]; then last=$(( i + 9 )); [ "$last" -gt "$n" ] && last=$n; fi
  c=$p; j=$i
  while [ "$j" -le "$last" ]; do
    c=$(echo "msg $tag $j" | git commit-tree "$empty" ${c:+-p $c}); j=$(( j + 1 ))
  done
  if git push -q origin "$c:refs/heads/$ref" 2>/dev/null; then
    git update-ref "refs/remotes/origin/$ref" "$c"; i=$(( last + 1 ))
  else
    refused=$(( refused + 1 ))
    git fetch -q origin "+refs/heads/$ref:refs/remotes/origin/$ref"
  fi
done
echo "$refused"
"""


def lane(name: str, k: int) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % k


def contention(work: Path, layout: str, senders: int, per: int, guard: bool) -> dict[str, Any]:
    d, bare = serve(work / layout, guard)
    names = [f"s{i:02d}" for i in range(senders)]
    with d:
        clones = []
        for n in names:
            c = work / layout / f"clone-{n}"
            git("clone", "-q", d.url(), str(c))
            clones.append(c)
        if layout == "pairs":
            refs = [f"raw/boss/{n}" for n in names]
        elif layout.startswith("lanes-"):
            k = int(layout.split("-")[1])
            refs = [f"raw/boss/{lane(n, k)}" for n in names]
        else:
            refs = ["raw/boss" for _ in names]
        batched = "1" if layout.endswith("batched") else "0"
        procs: list[subprocess.Popen[str]] = []
        t = time.perf_counter()
        for c, n, ref in zip(clones, names, refs):
            procs.append(subprocess.Popen(["sh", "-c", SENDER, "s", str(c), str(per), n, ref, batched],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        refused = 0
        for p in procs:
            out, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"sender failed: {err.strip()[-500:]}")
            refused += int(out.strip())
        wall = time.perf_counter() - t
        subjects = git("log", "--format=%s", *sorted({f"refs/heads/{r}" for r in refs}), cwd=bare).split("\n")
        subjects = [s for s in subjects if s]
    total = senders * per
    if guard:
        from gitmail.guard import daemon as guard_daemon

        guard_daemon.stop(bare)
    return {"layout": layout, "server_refs": len(set(refs)), "commits": total, "wall_s": wall,
            "commits_per_s": total / wall, "pushes_refused": refused,
            "exactly_once": len(subjects) == total and len(set(subjects)) == total}


def advertisement(work: Path, counts: list[int], rounds: int = 5) -> list[dict[str, Any]]:
    d, bare = serve(work / "adv", False)
    out = []
    with d:
        c = work / "adv" / "clone"
        git("clone", "-q", d.url(), str(c))
        empty = git("hash-object", "-t", "tree", "/dev/null", cwd=c).strip()
        base = git("commit-tree", empty, "-m", "base", cwd=c).strip()
        git("push", "-q", "origin", f"{base}:refs/heads/raw/base", cwd=c)
        have = 0
        tip = base
        for r in counts:
            if r > have:  # refs the server holds besides the one pushed (as other mailboxes)
                lines = "".join(f"create refs/heads/raw/other/{i:07d} {base}\n" for i in range(have, r))
                subprocess.run(["git", "update-ref", "--stdin"], input=lines, text=True, cwd=bare, check=True)
                git("pack-refs", "--all", cwd=bare)
                have = r
            walls = []
            for _ in range(rounds):
                tip = git("commit-tree", empty, "-p", tip, "-m", "one", cwd=c).strip()
                walls.append(timed(lambda: git("push", "-q", "origin", f"{tip}:refs/heads/raw/push", cwd=c)))
            size = len(git("ls-remote", "origin", cwd=c).encode())
            out.append({"other_refs": r, "push_s": statistics.median(walls), "ref_list_bytes": size})
    for row in out:
        row["push_vs_none"] = row["push_s"] / out[0]["push_s"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--senders", type=int, default=16)
    ap.add_argument("--per", type=int, default=50, help="commits per sender")
    ap.add_argument("--lanes", default="4", help="comma-separated lane counts to try [4]")
    ap.add_argument("--adv", default="0,1000,10000,100000", help="ref counts for the advertisement run ('' to skip)")
    ap.add_argument("--guard", action="store_true", help="install gitmail's guard on the servers")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res: dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="gitmail-layouts-") as tmp:
        work = Path(tmp)
        isolate(work)
        print(f"gitmail layout research: {args.senders} senders x {args.per} commits, one recipient"
              f"{' (guarded server)' if args.guard else ''}, {os.cpu_count()} CPUs")
        if args.adv:
            print("\n== (1) advertisement: one push into a repository holding R other refs")
            res["advertisement"] = advertisement(work, [int(x) for x in args.adv.split(",")])
            for row in res["advertisement"]:
                print(f"  R={row['other_refs']:>7,}  push {row['push_s']:.3f} s ({row['push_vs_none']:.1f}x)"
                      f"  ref list {row['ref_list_bytes']:,} bytes", flush=True)
        print("\n== (2) contention")
        layouts = ["pairs", "inbox", "inbox-batched", *[f"lanes-{k}" for k in args.lanes.split(",") if k]]
        res["contention"] = []
        for lay in layouts:
            row = contention(work, lay, args.senders, args.per, args.guard)
            res["contention"].append(row)
            print(f"  {lay:<14} refs {row['server_refs']:>3}  {row['wall_s']:6.2f} s  {row['commits_per_s']:6.1f}/s"
                  f"  refused {row['pushes_refused']:>5}  exactly once: {row['exactly_once']}", flush=True)
        base = res["contention"][0]["commits_per_s"]
        for row in res["contention"]:
            row["rate_vs_pairs"] = row["commits_per_s"] / base
        print("  rate vs pairs: " + ", ".join(f"{r['layout']} {r['rate_vs_pairs']:.2f}x" for r in res["contention"]))
    if args.json:
        print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
