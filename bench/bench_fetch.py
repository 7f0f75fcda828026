#!/usr/bin/env python3
"""Bytes on the wire for one member of a big org (issue #16 item 1).

Run:  .venv/bin/python bench/bench_fetch.py [--members 1000] [--refs-per-member 5] [--per-ref 3]

Builds an org of N self-registered members (each registers with their own signed
directory commit), N x K mailbox refs and N x K x M signed messages (plain, written
with the library's bulk writer), serves it with ``git daemon`` on 127.0.0.1 behind a
byte-counting TCP proxy, and measures for one member, same run:

* bytes and wall time of ``gitmail init`` (an existing member's new clone, with their
  key) + the first ``gitmail sync``, and of a no-op ``gitmail sync``;
* the baseline: a plain ``git fetch`` of only what that member must hold (the
  directory and their inbox ``mail/<me>/*``) into an empty repository, and a no-op
  repeat of it; target: gitmail at most 2x its bytes;
* for scale, a plain ``git fetch`` of every gitmail ref (what a member fetched before),
  and ``gitmail send`` (a push: receive-pack advertises every ref to the pusher; the
  median of ``--repeat`` sends).

``--packed`` (docs/protocol.md §3, "Packed mailboxes"): the org has ``packing`` on;
after the measurements above every member's inbox is packed on the server (one signed
packed commit per member, written with the library as ``gitmail pack`` writes it, and
the pair refs deleted), and the same run measures again: the refs on the server,
``gitmail send`` to a pair this clone delivered to and its recipient packed (once before
the member's next sync: the lease on the stale tip refused, then the packed commit read
alone; once after it: the packed commit read alone),
``gitmail send`` to mailboxes their recipients packed (each push re-creates a pair ref,
negotiating first), the member's sync (their clone now reads the packed ref), a new
clone's init + first sync, and one real ``gitmail pack``.

Bytes are counted in both directions at the proxy (server to client, client to server).
Everything runs in a private temporary HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sync.daemon import GitDaemon, free_port  # noqa: E402

PY = sys.executable


class CountingProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``target`` and counts bytes each way."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.down = 0  # server -> client
        self.up = 0  # client -> server
        self._lock = threading.Lock()
        self._srv = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> tuple[int, int]:
        with self._lock:
            out = (self.down, self.up)
            self.down = self.up = 0
        return out

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upward: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if upward:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def build_org(bare: Path, keys: Path, members: int, per_member: int, per_ref: int, layout: int = 2,
              packing: bool = False, numbered: bool = False, fanout: int = 0, me: str = "") -> list[str]:
    """Write the org into the bare repo ``bare``: directory (self-registrations, in directory
    layout ``layout``: docs/protocol.md §8 "Layouts"; org policy ``packing``) and mail."""
    import pygit2

    from gitmail.core import bulk, refs
    from gitmail.core.directory import Directory, write_commit
    from gitmail.core.model import Member, Message, format_date, utcnow
    from gitmail.core.signing import generate_key
    from gitmail.core.repo import open_repo

    repo = open_repo(bare)
    pg = repo.pg
    # Numbered like a fleet of agents (m1 .. m1000, so m1 begins m10 .. m19 and m100 .. m199),
    # or padded so that no name begins another (m00001).
    names = [f"m{i}" for i in range(members)] if numbered else [f"m{i:05d}" for i in range(members)]
    signers, entries = {}, {}
    d = Directory(None, {}, {}, Directory().policy.model_copy(update={"directory_layout": layout,
                                                                       "packing": packing}))
    tip = None
    for i, name in enumerate(names):
        s = signers[name] = generate_key(keys / name, comment=f"gitmail {name}")
        m = entries[name] = Member(name=name, display_name=name, email=f"{name}@gitmail.invalid",
                                   signing_key=s.public_key, encryption_key=s.public_key,
                                   role="admin" if i == 0 else "member", kind="agent")
        d = Directory(None, {**d.members, name: m}, {}, d.policy)
        tip = write_commit(pg, d, s, m, tip, f"Register {name}")
    assert tip
    pg.references.create(refs.head(refs.DIRECTORY), pygit2.Oid(hex=tip), force=True)
    pack = bulk.PackWriter()
    now = int(time.time())
    heads = []
    for i, sender in enumerate(names):
        for k in range(1, per_member + 1):
            rcpt = names[(i + k) % members]
            parent = None
            for j in range(per_ref):
                msg = Message(**{"from": sender}, to=[rcpt], date=format_date(utcnow()), subject=f"note {j}",
                              summary=f"note {j}", body=f"message {j} from {sender} to {rcpt}\n" + "lorem ipsum " * 20)
                msg.id = msg.compute_id()
                parent = bulk.message_commit(pack, msg, entries[sender], signers[sender], parent, now)
            assert parent is not None
            heads.append((refs.head(refs.mail_path(rcpt, sender)), parent.hex()))
    # ``me`` has also written one message to each of ``fanout`` more members (a coordinating agent).
    taken = {r for r, _ in heads}
    for rcpt in names:
        if fanout <= 0:
            break
        ref = refs.head(refs.mail_path(rcpt, me))
        if rcpt == me or ref in taken:
            continue
        msg = Message(**{"from": me}, to=[rcpt], date=format_date(utcnow()), subject="hello", summary="hello",
                      body=f"hello {rcpt}\n")
        msg.id = msg.compute_id()
        heads.append((ref, bulk.message_commit(pack, msg, entries[me], signers[me], None, now).hex()))
        fanout -= 1
    pack.finish(repo)
    subprocess.run(["git", "update-ref", "--stdin"], input="".join(f"create {r} {o}\n" for r, o in heads),
                   cwd=bare, check=True, text=True)
    subprocess.run(["git", "gc", "--quiet"], cwd=bare, check=True)
    return names


def pack_everyone(bare: Path, keys: Path) -> int:
    """Pack every member's inbox on the server, as each member's ``gitmail pack`` would: one
    signed packed commit recording the tips of their pair refs, then the pair refs deleted.
    Returns how many pair refs went."""
    from collections import defaultdict

    from gitmail.core import directory as dirmod
    from gitmail.core import packed, refs
    from gitmail.core.address import to_ref
    from gitmail.core.repo import open_repo
    from gitmail.core.signing import load_key

    repo = open_repo(bare)
    from gitmail.core.objects import commit

    tip = repo.ref_target(refs.head(refs.DIRECTORY))
    assert tip
    d = dirmod.from_tree(repo.pg, commit(repo.pg, tip))
    heads = subprocess.run(["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/gitmail/mail/"],
                           cwd=bare, capture_output=True, text=True, check=True).stdout.split("\n")
    by_rcpt: dict[str, dict[str, str]] = defaultdict(dict)
    for line in filter(None, heads):
        oid, ref = line.split(" ", 1)
        rcpt, sender = refs.split_mail_path(ref[len(refs.HEADS):])
        if rcpt in d.members:
            by_rcpt[rcpt][sender] = oid
    updates, gone = [], 0
    for rcpt, entries in sorted(by_rcpt.items()):
        oid = packed.write_commit(repo.pg, {}, entries, d.members[rcpt], load_key(keys / to_ref(rcpt)), None)
        updates.append(f"create {refs.head(refs.packed_path(rcpt))} {oid}\n")
        for sender, tip in entries.items():
            updates.append(f"delete {refs.head(refs.mail_path(rcpt, sender))} {tip}\n")
            gone += 1
    subprocess.run(["git", "update-ref", "--stdin"], input="".join(updates), cwd=bare, check=True, text=True)
    return gone


def ref_count(bare: Path) -> int:
    return len(subprocess.run(["git", "for-each-ref", "--format=x", "refs/heads/gitmail/"], cwd=bare,
                              capture_output=True, text=True, check=True).stdout.split())


def measure(proxy: CountingProxy, f: Callable[[], object]) -> dict:
    proxy.reset()
    t = time.perf_counter()
    f()
    wall = time.perf_counter() - t
    down, up = proxy.reset()
    return {"wall_s": round(wall, 3), "down_bytes": down, "up_bytes": up, "bytes": down + up}


def measure_median(proxy: CountingProxy, f: Callable[[int], object], n: int) -> dict:
    """:func:`measure` of ``f(0)`` .. ``f(n - 1)``: the median of each figure."""
    import statistics

    runs = [measure(proxy, lambda: f(i)) for i in range(n)]
    return {k: (round(statistics.median(r[k] for r in runs), 3) if k == "wall_s" else
                int(statistics.median(r[k] for r in runs))) for k in runs[0]}


def run(cmd: list[str], cwd: Path | None = None) -> None:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-800:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--refs-per-member", type=int, default=5, help="mailboxes each member writes to")
    ap.add_argument("--per-ref", type=int, default=3, help="messages per mailbox")
    ap.add_argument("--layout", type=int, default=2, choices=(1, 2),
                    help="directory layout (2: what gitmail init makes; 1: a flat org made before it)")
    ap.add_argument("--packed", action="store_true", help="packing on; measure again after every member packed")
    ap.add_argument("--repeat", type=int, default=3, help="sends measured each time (medians)")
    ap.add_argument("--fanout", type=int, default=0,
                    help="the measured member has also written to this many more members: no-op sync bytes with "
                         "the delivered mailboxes fetched in turn (128 a sync) and, as a baseline, all of them")
    ap.add_argument("--numbered", action="store_true",
                    help="names m0 .. mN unpadded, measured as m1 (a name a tenth of the fleet's names begin with)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitmail-bench-fetch-") as tmp:
        work = Path(tmp)
        os.environ["HOME"] = str(work / "home")
        (work / "home").mkdir()
        os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
        os.environ.pop("GIT_DIR", None)
        t = time.perf_counter()
        d = GitDaemon(work / "srv")
        (work / "srv").mkdir()
        bare = d.create("org.git", guard=False)
        me = "m1" if a.numbered else f"m{a.members // 2:05d}"
        names = build_org(bare, work / "keys", a.members, a.refs_per_member, a.per_ref, a.layout, a.packed,
                          a.numbered, a.fanout, me)
        built = time.perf_counter() - t
        assert me in names
        with d:
            proxy = CountingProxy(d.port)
            url = f"git://127.0.0.1:{proxy.port}/org.git"
            clone = work / "clone"
            gm = [PY, "-m", "gitmail"]
            res: dict[str, object] = {"members": a.members, "mailbox_refs": a.members * a.refs_per_member,
                                      "messages": a.members * a.refs_per_member * a.per_ref, "build_s": round(built, 1)}
            res["init"] = measure(proxy, lambda: run([*gm, "init", "--name", me, "--org", url, "--repo", str(clone),
                                                      "--key", str(work / "keys" / me)]))
            res["first_sync"] = measure(proxy, lambda: run([*gm, "sync", "--repo", str(clone)]))
            res["noop_sync"] = measure(proxy, lambda: run([*gm, "sync", "--repo", str(clone)]))
            if a.fanout:
                # This clone delivered me's mail to the fanout members (as if it had sent it): each
                # sync fetches 128 of those mailboxes in turn for the rewind check, against all of
                # them for the baseline (the same code with the limit lifted).
                mail = subprocess.run(["git", "for-each-ref", "--format=%(objectname) %(refname)",
                                       "refs/heads/gitmail/mail/"], cwd=bare, capture_output=True, text=True,
                                      check=True).stdout.split("\n")
                sent = [ln.split(" ") for ln in mail if ln.endswith(f"/{me}") and f"/mail/{me}/" not in ln]
                run(["git", "fetch", "-q", "origin", f"+refs/heads/gitmail/mail/*/{me}:refs/remotes/origin/gitmail/mail/*/{me}"],
                    cwd=clone)
                subprocess.run(["git", "update-ref", "--stdin"], cwd=clone, check=True, text=True, input="".join(
                    f"create refs/gitmail/sent/{r[len('refs/heads/gitmail/mail/'):]} {o}\n" for o, r in sent))
                for _ in range(len(sent) // 128 + 1):
                    run([*gm, "sync", "--repo", str(clone)])
                res["delivered_mailboxes"] = len(sent)
                res["fanout_noop_sync"] = measure(proxy, lambda: run([*gm, "sync", "--repo", str(clone)]))
                lifted = [PY, "-c", "import sys; from gitmail.core import sync; sync.SENT_CHECKS = 10 ** 9; "
                          "from gitmail.cli.launch import in_process; sys.exit(in_process(sys.argv[1:]))"]
                res["fanout_noop_sync_all"] = measure(proxy, lambda: run([*lifted, "sync", "--repo", str(clone)]))
            # A push is not filtered: receive-pack advertises every ref of the org to the pusher.
            # To two recipients in turn: after packing, each is a pair this clone delivered to.
            res["send"] = measure_median(proxy, lambda i: run([*gm, "send", names[i % 2], f"one more {i}", "--plain",
                                                               "--repo", str(clone)]), a.repeat)
            inbox = json.loads(subprocess.run([*gm, "list", "--json", "--repo", str(clone)], capture_output=True,
                                              text=True, check=True).stdout)
            res["inbox_messages"] = inbox["total"]
            plain = work / "plain"
            run(["git", "init", "--quiet", "--bare", str(plain)])
            own = ["+refs/heads/gitmail/directory:refs/remotes/o/gitmail/directory",
                   f"+refs/heads/gitmail/mail/{me}/*:refs/remotes/o/gitmail/mail/{me}/*"]
            res["plain_fetch_own"] = measure(proxy, lambda: run(["git", "fetch", "--quiet", "--no-tags", url, *own],
                                                                cwd=plain))
            res["plain_noop_fetch_own"] = measure(proxy, lambda: run(["git", "fetch", "--quiet", "--no-tags", url,
                                                                      *own], cwd=plain))
            everything = work / "everything"
            run(["git", "init", "--quiet", "--bare", str(everything)])
            res["plain_fetch_all"] = measure(proxy, lambda: run(
                ["git", "fetch", "--quiet", "--no-tags", url, "+refs/heads/gitmail/*:refs/remotes/o/gitmail/*"],
                cwd=everything))
            if a.packed:
                res["refs_before_packing"] = ref_count(bare)
                t = time.perf_counter()
                res["pairs_packed"] = pack_everyone(bare, work / "keys")
                res["pack_everyone_s"] = round(time.perf_counter() - t, 1)
                res["refs_after_packing"] = ref_count(bare)
                # To a pair this clone delivered to and its recipient packed since this clone's last
                # fetch: the push's lease on the stale tip is refused, the pair is fetched (gone), the
                # recipient's packed commit is read alone, then the push re-creates the pair.
                res["packed_send_stale"] = measure(proxy, lambda: run(
                    [*gm, "send", names[0], "after packing, stale", "--plain", "--repo", str(clone)]))
                res["packed_sync"] = measure(proxy, lambda: run([*gm, "sync", "--repo", str(clone)]))
                # The same after a sync (which took the gone pair's remote-tracking ref away): the
                # packed commit read alone, then the push.
                res["packed_send_peek"] = measure(proxy, lambda: run(
                    [*gm, "send", names[1], "after packing, synced", "--plain", "--repo", str(clone)]))
                # To mailboxes of me's that their recipients packed: each push re-creates a packed pair.
                res["packed_send"] = measure_median(proxy, lambda i: run(
                    [*gm, "send", names[(len(names) // 2 + 1 + i) % len(names)], "after packing", "--plain", "--repo",
                     str(clone)]), a.repeat)
                # The first of those recipients reads the message, verified, with no problem reported
                # (a send that started a second chain on a packed pair would be reported, not shown).
                rcpt = names[(len(names) // 2 + 1) % len(names)]
                reader = work / "reader"
                run([*gm, "init", "--name", rcpt, "--org", url, "--repo", str(reader), "--key",
                     str(work / "keys" / rcpt)])
                got = json.loads(subprocess.run([*gm, "sync", "--json", "--repo", str(reader)], capture_output=True,
                                                text=True, check=True).stdout)
                shown = json.loads(subprocess.run([*gm, "list", "--json", "--repo", str(reader)], capture_output=True,
                                                  text=True, check=True).stdout)["messages"]
                if got["problems"] or not any(m["subject"] == "after packing" and m["verified"] for m in shown):
                    raise SystemExit(f"{rcpt} does not show the message sent after packing: {got['problems']}")
                after = json.loads(subprocess.run([*gm, "list", "--json", "--repo", str(clone)], capture_output=True,
                                                  text=True, check=True).stdout)
                res["packed_inbox_messages"] = after["total"]
                fresh = work / "fresh"
                res["packed_init"] = measure(proxy, lambda: run([*gm, "init", "--name", me, "--org", url, "--repo",
                                                                 str(fresh), "--key", str(work / "keys" / me)]))
                res["packed_first_sync"] = measure(proxy, lambda: run([*gm, "sync", "--repo", str(fresh)]))
                fresh_inbox = json.loads(subprocess.run([*gm, "list", "--json", "--repo", str(fresh)],
                                                        capture_output=True, text=True, check=True).stdout)
                res["packed_fresh_inbox_messages"] = fresh_inbox["total"]
                # What those two need, fetched by plain git with exact refspecs: the directory, the
                # member's inbox and their packed ref (no other member's, whatever the names).
                plain_p = work / "plain-packed"
                run(["git", "init", "--quiet", "--bare", str(plain_p)])
                own_p = [*own, f"+refs/heads/gitmail/packed/{me}:refs/remotes/o/gitmail/packed/{me}"]
                res["packed_plain_fetch_own"] = measure(proxy, lambda: run(
                    ["git", "fetch", "--quiet", "--no-tags", url, *own_p], cwd=plain_p))
                # One real pack: names[1] writes to me again (a new pair ref), then me packs it.
                other = work / "other"
                run([*gm, "init", "--name", names[1], "--org", url, "--repo", str(other), "--key",
                     str(work / "keys" / names[1])])
                run([*gm, "send", me, "a new pair", "--plain", "--repo", str(other)])
                run([*gm, "sync", "--repo", str(clone)])
                res["packed_pack"] = measure(proxy, lambda: run([*gm, "pack", "--repo", str(clone)]))
                res["refs_after_real_pack"] = ref_count(bare)
            own_b = res["plain_fetch_own"]["bytes"]  # type: ignore[index]
            first = res["init"]["bytes"] + res["first_sync"]["bytes"]  # type: ignore[index]
            res["ratios"] = {
                "init_plus_first_sync_bytes_vs_plain_own": round(first / own_b, 2),
                "noop_sync_bytes_vs_plain_noop_own": round(res["noop_sync"]["bytes"]  # type: ignore[index]
                                                           / max(1, res["plain_noop_fetch_own"]["bytes"]), 2),  # type: ignore[index]
                "init_plus_first_sync_wall_vs_plain_own": round(
                    (res["init"]["wall_s"] + res["first_sync"]["wall_s"]) / res["plain_fetch_own"]["wall_s"], 2),  # type: ignore[index]
                "init_plus_first_sync_wall_vs_plain_all": round(
                    (res["init"]["wall_s"] + res["first_sync"]["wall_s"]) / res["plain_fetch_all"]["wall_s"], 2),  # type: ignore[index]
                "plain_all_bytes_vs_plain_own": round(res["plain_fetch_all"]["bytes"] / own_b, 1),  # type: ignore[index]
            }
            if a.packed:
                res["ratios"]["packed_send_bytes_vs_send"] = round(  # type: ignore[index]
                    res["packed_send"]["bytes"] / res["send"]["bytes"], 3)  # type: ignore[index]
                res["ratios"]["packed_send_wall_vs_send"] = round(  # type: ignore[index]
                    res["packed_send"]["wall_s"] / res["send"]["wall_s"], 2)  # type: ignore[index]
                res["ratios"]["packed_init_plus_first_sync_bytes_vs_plain_own"] = round(  # type: ignore[index]
                    (res["packed_init"]["bytes"] + res["packed_first_sync"]["bytes"])  # type: ignore[index]
                    / res["packed_plain_fetch_own"]["bytes"], 2)  # type: ignore[index]
                for k in ("packed_send_stale", "packed_send_peek"):
                    res["ratios"][f"{k}_bytes_vs_send"] = round(  # type: ignore[index]
                        res[k]["bytes"] / res["send"]["bytes"], 3)  # type: ignore[index]
                    res["ratios"][f"{k}_wall_vs_send"] = round(  # type: ignore[index]
                        res[k]["wall_s"] / res["send"]["wall_s"], 2)  # type: ignore[index]
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"org: {res['members']} members, {res['mailbox_refs']} mailbox refs, {res['messages']} messages "
              f"(built in {res['build_s']} s); member {me}: {res['inbox_messages']} messages in the inbox")
        if a.packed:
            print(f"  packing: {res['pairs_packed']:,} pair refs packed by {a.members:,} members in "
                  f"{res['pack_everyone_s']} s; refs on the server {res['refs_before_packing']:,} -> "
                  f"{res['refs_after_packing']:,}; after one real gitmail pack {res['refs_after_real_pack']:,}; "
                  f"inbox {res['packed_inbox_messages']} messages (new clone: {res['packed_fresh_inbox_messages']})")
        keys_shown = ["init", "first_sync", "noop_sync", "send", "plain_fetch_own", "plain_noop_fetch_own",
                      "plain_fetch_all"]
        if a.fanout:
            print(f"  {me} delivered to {res['delivered_mailboxes']:,} mailboxes; no-op sync with them fetched "
                  f"128 a sync (fanout_noop_sync) and all at once (fanout_noop_sync_all)")
            keys_shown += ["fanout_noop_sync", "fanout_noop_sync_all"]
        if a.packed:
            keys_shown += ["packed_send_stale", "packed_sync", "packed_send_peek", "packed_send", "packed_init",
                           "packed_first_sync", "packed_plain_fetch_own", "packed_pack"]
        for k in keys_shown:
            v = res[k]
            print(f"  {k:22} {v['bytes']:>12,} bytes ({v['down_bytes']:,} down, {v['up_bytes']:,} up)  "  # type: ignore[index]
                  f"{v['wall_s']:.2f} s")  # type: ignore[index]
        for k, v in res["ratios"].items():  # type: ignore[attr-defined]
            print(f"  {k}: {v}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
