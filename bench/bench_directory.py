#!/usr/bin/env python3
"""Directory verification at scale (issue 16, item 5): a fresh ``gitmail init`` in orgs of
250, 1,000 and 10,000 self-registered members, and a no-op ``gitmail sync``.

Run:  .venv/bin/python bench/bench_directory.py [--sizes 250,1000,10000] [--repeat R]

Each org is a bare file-path repo whose directory holds one admin and N-1
members who each registered themselves (one signed directory commit per
member, signed by the newcomer's own key, exactly what ``gitmail init`` writes).
The commits are built in memory by :func:`build_org` and written as one pack
whose large, growing objects (the ``members`` tree and ``allowed_signers``)
are deltas against their previous version, the way ``git gc`` would store
them; ``git index-pack`` then checks and indexes it. The directory is
verified by the first ``gitmail init`` against it (the bench fails if the
newcomer does not see N+1 members).

For each size it prints: the wall time of a fresh ``gitmail init --org PATH``
(a whole process: clone, verify the directory from its root, register, push),
the same-run baseline ``git clone --bare --no-local`` of the org (what git
itself spends receiving and indexing the same history), the verification of
the whole directory alone (in-process, on that clone), a no-op ``gitmail
sync`` (nothing moved), a ``gitmail sync`` that brings one new directory
commit, and the steady state: a ``gitmail send`` to another member and that
member's ``gitmail sync`` bringing the one message, through the warm CLI server
(the default) and in-process (``GITMAIL_WARM=off``); then the ratios 1000/250
(target at most 4.4x) and 10000/1000 (target at most 11x), for gitmail, for
the baseline, for the verification alone and for init minus clone, and the
steady state's 10000/1000. Times are medians of ``--repeat`` runs (fresh clones each
time).

``--layout 2`` (the default; what ``gitmail init`` makes for a new org) builds the
fan-out directory of docs/protocol.md §8 "Layouts": each commit rewrites one
shard folder of ``members/`` and one shard file of ``allowed_signers`` (about
N/256 entries each) plus the two 256-entry folders of shards. ``--layout 1``
builds the flat directory of orgs made before it: each commit rewrites
``allowed_signers`` (about 110 bytes a member) and the ``members`` tree (about 40
bytes a member), so that history is quadratic in bytes and so is its baseline
clone (at 10,000 members git hashes about 7 GB of objects).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gitmail.core.address import principal, to_ref  # noqa: E402
from gitmail.core.directory import shard  # noqa: E402
from gitmail.core.model import Member, OrgPolicy, canonical_json  # noqa: E402
from gitmail.core.signing import Signer, public_key_line  # noqa: E402

PY = sys.executable
GITMAIL = str(Path(PY).parent / "gitmail")

_COMMIT, _TREE, _BLOB, _OFS_DELTA = 1, 2, 3, 6
_TYPE_NAME = {_BLOB: b"blob", _TREE: b"tree", _COMMIT: b"commit"}
CHAIN = 50  # delta chain length before a full copy (git's default pack.depth)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _header(type_num: int, size: int) -> bytes:
    """A pack entry header: type and size (gitformat-pack(5))."""
    out = bytearray([(type_num << 4) | (size & 0x0F)])
    size >>= 4
    while size:
        out[-1] |= 0x80
        out.append(size & 0x7F)
        size >>= 7
    return bytes(out)


def _ofs(n: int) -> bytes:
    """The negative offset of an OFS_DELTA base (gitformat-pack(5), "offset encoding")."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        n -= 1
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _copy(off: int, size: int) -> bytes:
    """A delta copy instruction (size below 2**24)."""
    op, args = 0x80, bytearray()
    for i in range(4):
        if off >> (8 * i) & 0xFF:
            op |= 1 << i
            args.append(off >> (8 * i) & 0xFF)
    for i in range(3):
        if size >> (8 * i) & 0xFF:
            op |= 0x10 << i
            args.append(size >> (8 * i) & 0xFF)
    return bytes([op]) + bytes(args)


def _insert_delta(src_len: int, at: int, new: bytes, old_len: int = 0) -> bytes:
    """The delta that turns a ``src_len``-byte object into the one with ``new`` inserted at ``at``
    (in place of the ``old_len`` bytes there)."""
    ops = bytearray(_varint(src_len) + _varint(src_len - old_len + len(new)))
    for off, end in ((0, at),):
        while off < end:
            n = min(end - off, 0xFFFFFF)
            ops += _copy(off, n)
            off += n
    for i in range(0, len(new), 127):
        chunk = new[i : i + 127]
        ops += bytes([len(chunk)]) + chunk
    off = at + old_len
    while off < src_len:
        n = min(src_len - off, 0xFFFFFF)
        ops += _copy(off, n)
        off += n
    return bytes(ops)


class DeltaPack:
    """Objects written as one pack; a growing object may be stored as a delta on its last version."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "wb")
        self.f.write(b"PACK\0\0\0\x02\0\0\0\0")  # the count is patched in finish()
        self.offset = 12
        self.count = 0
        self.seen: set[bytes] = set()

    def _entry(self, data: bytes) -> int:
        at = self.offset
        self.f.write(data)
        self.offset += len(data)
        self.count += 1
        return at

    def add(self, type_num: int, raw: bytes) -> tuple[bytes, int]:
        """Add a whole object; its binary oid and pack offset (offset -1 when already present)."""
        oid = hashlib.sha1(b"%s %d\0" % (_TYPE_NAME[type_num], len(raw)) + raw).digest()
        if oid in self.seen:
            return oid, -1
        self.seen.add(oid)
        return oid, self._entry(_header(type_num, len(raw)) + zlib.compress(raw, 1))

    def add_delta(self, type_num: int, raw: bytes, base_offset: int, delta: bytes) -> tuple[bytes, int]:
        """Add ``raw`` stored as ``delta`` on the object at ``base_offset``."""
        oid = hashlib.sha1(b"%s %d\0" % (_TYPE_NAME[type_num], len(raw)) + raw).digest()
        self.seen.add(oid)
        head = _header(_OFS_DELTA, len(delta)) + _ofs(self.offset - base_offset)
        return oid, self._entry(head + zlib.compress(delta, 1))

    def finish(self) -> None:
        """Patch the object count in and append the pack's checksum."""
        self.f.seek(8)
        self.f.write(self.count.to_bytes(4, "big"))
        self.f.close()
        h = hashlib.sha1()
        with open(self.f.name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        with open(self.f.name, "ab") as f:
            f.write(h.digest())


class Growing:
    """An object that grows by insertions (the members tree, allowed_signers): its bytes and
    where its last version sits in the pack."""

    def __init__(self, type_num: int) -> None:
        self.type_num = type_num
        self.keys: list[bytes] = []  # sort keys of the parts, ascending
        self.parts: list[bytes] = []
        self.size = 0
        self.offset = -1
        self.depth = 0

    def insert(self, pack: DeltaPack, key: bytes, part: bytes) -> bytes:
        """Put ``part`` under ``key`` (in place of the part there, if any) and write the new version."""
        import bisect

        i = bisect.bisect_left(self.keys, key)
        at = sum(len(p) for p in self.parts[:i]) if i < len(self.parts) else self.size
        old = 0
        if i < len(self.keys) and self.keys[i] == key:
            old = len(self.parts[i])
            self.parts[i] = part
        else:
            self.keys.insert(i, key)
            self.parts.insert(i, part)
        raw = b"".join(self.parts)
        if self.offset < 0 or self.depth >= CHAIN:
            oid, self.offset = pack.add(self.type_num, raw)
            self.depth = 0
        else:
            oid, self.offset = pack.add_delta(self.type_num, raw, self.offset,
                                              _insert_delta(self.size, at, part, old))
            self.depth += 1
        self.size = len(raw)
        return oid


def _signer() -> Signer:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Signer(public_key_line(raw), key.sign, "memory")


def build_org(path: Path, n: int, seed: int = 16, layout: int = 2) -> tuple[str, list[str]]:
    """A bare org at ``path`` whose directory has an admin and ``n - 1`` self-registered members,
    one signed commit each (names in random order, so entries land all over the sorted
    files), in directory layout ``layout`` (docs/protocol.md §8, "Layouts"). Returns the
    directory tip and the member names."""
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
    rng = random.Random(seed)
    names = ["admin"] + [f"u{i:05d}" for i in rng.sample(range(1, n), n - 1)]
    packdir = path / "objects" / "pack"
    tmp = packdir / "tmp-build.pack"
    pack = DeltaPack(tmp)
    # layout 1: the members tree and the signers file; layout 2: the trees of the shards
    members_tree, signers_file = Growing(_TREE), Growing(_BLOB if layout == 1 else _TREE)
    shard_trees: dict[str, Growing] = {}
    shard_files: dict[str, Growing] = {}
    policy = OrgPolicy().model_copy(update={"directory_layout": layout})
    org_oid, _ = pack.add(_BLOB, canonical_json(policy.model_dump(mode="json")))
    tip: Optional[bytes] = None
    when = int(time.time()) - n
    for i, name in enumerate(names):
        s = _signer()
        m = Member(name=name, display_name=name, email=f"{to_ref(name)}@gitmail.invalid", signing_key=s.public_key,
                   encryption_key=s.public_key, role="admin" if i == 0 else "member")
        blob, _ = pack.add(_BLOB, canonical_json(m.stored()))
        fname = f"{to_ref(name)}.json".encode()
        line = f'{principal(name)} namespaces="git" {s.public_key}\n'.encode()
        if layout == 1:
            mt = members_tree.insert(pack, fname, b"100644 " + fname + b"\0" + blob)
            sg = signers_file.insert(pack, name.encode(), line)
            sg_mode = b"100644"
        else:
            sh = shard(name)
            st = shard_trees.setdefault(sh, Growing(_TREE)).insert(pack, fname, b"100644 " + fname + b"\0" + blob)
            mt = members_tree.insert(pack, sh.encode(), b"40000 " + sh.encode() + b"\0" + st)
            sf = shard_files.setdefault(sh, Growing(_BLOB)).insert(pack, name.encode(), line)
            sg = signers_file.insert(pack, sh.encode(), b"100644 " + sh.encode() + b"\0" + sf)
            sg_mode = b"40000"
        root = (sg_mode + b" allowed_signers\0" + sg + b"40000 members\0" + mt + b"100644 org.json\0" + org_oid)
        tree, _ = pack.add(_TREE, root)
        ident = b"%s <%s> %d +0000" % (name.encode(), m.email.encode(), when + i)
        head = b"tree %s\n" % tree.hex().encode()
        if tip is not None:
            head += b"parent %s\n" % tip.hex().encode()
        head += b"author " + ident + b"\ncommitter " + ident + b"\n"
        body = f"\nRegister {name}\n".encode()
        sig = s.sign(head + body).encode("ascii")
        tip, _ = pack.add(_COMMIT, head + b"gpgsig " + sig.replace(b"\n", b"\n ") + b"\n" + body)
    pack.finish()
    subprocess.run(["git", "index-pack", str(tmp)], check=True, cwd=path, capture_output=True)
    idx = tmp.with_suffix(".idx")
    checksum = tmp.read_bytes()[-20:].hex()
    tmp.rename(packdir / f"pack-{checksum}.pack")
    idx.rename(packdir / f"pack-{checksum}.idx")
    assert tip is not None
    subprocess.run(["git", "update-ref", "refs/heads/gitmail/directory", tip.hex()], check=True, cwd=path)
    return tip.hex(), names


def _directory_tip(org: Path) -> str:
    return subprocess.run(["git", "rev-parse", "refs/heads/gitmail/directory"], cwd=org, capture_output=True,
                          check=True).stdout.decode().strip()


def timed(cmd: list[str], env: dict[str, str], cwd: Optional[Path] = None) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({r.returncode}): {r.stderr.decode(errors='replace')[-2000:]}")
    return took


VERIFY = """
import sys, time, pygit2
from gitmail.core import directory
pg = pygit2.Repository(sys.argv[1])
tip = str(pg.references["refs/heads/gitmail/directory"].target)
t = time.perf_counter()
ledger, problems = directory.advance(pg, directory.Ledger(), tip)
took = time.perf_counter() - t
assert not problems and ledger.tip == tip, problems
print(took)
"""


def verify_only(clone: Path, env: dict[str, str]) -> float:
    """Seconds to verify the whole directory of a bare clone from its root, in-process (no fetch)."""
    out = subprocess.run([PY, "-c", VERIFY, str(clone)], env=env, capture_output=True, check=True).stdout
    return float(out)


def median_of(runs: int, fn: Callable[[int], float]) -> float:
    return statistics.median(fn(i) for i in range(runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="250,1000,10000", help="org sizes (members), comma-separated")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--keep", help="build the orgs under this folder and keep them")
    ap.add_argument("--layout", type=int, default=2, choices=(1, 2),
                    help="directory layout of the orgs built (1 flat, as before; 2 fan-out, what new orgs get)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-dir-"))
    base.mkdir(parents=True, exist_ok=True)
    home = base / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "GITMAIL_HOME": str(home / "gitmail"), "GIT_CONFIG_NOSYSTEM": "1",
           "GITMAIL_NOTICE": "never"}
    for k in ("GITMAIL_USER", "GITMAIL_REPO", "GITMAIL_REMOTE", "SSH_AUTH_SOCK", "PYTHONDONTWRITEBYTECODE"):
        env.pop(k, None)
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "gitmail")], env=env, check=True, capture_output=True)
    rows: dict[int, dict[str, float]] = {}
    try:
        for n in sizes:
            org = base / f"org-{n}-l{args.layout}.git"
            t = time.perf_counter()
            if not org.exists():
                build_org(org, n, layout=args.layout)
            print(f"# built org of {n} members in {time.perf_counter() - t:.1f} s", flush=True)
            row: dict[str, float] = {}
            work = base / f"run-{n}"

            def clone(i: int) -> float:
                dest = work / f"clone-{i}.git"
                took = timed(["git", "clone", "--quiet", "--bare", "--no-local", str(org), str(dest)], env)
                if i:
                    shutil.rmtree(dest)
                return took

            def init(i: int) -> float:
                dest = work / f"member-{i}"
                took = timed([GITMAIL, "init", "--name", f"new{i}", "--org", str(org), "--repo", str(dest)], env)
                return took

            work.mkdir(exist_ok=True)
            row["git clone"] = median_of(args.repeat, clone)
            row["verify only"] = median_of(args.repeat, lambda i: verify_only(work / "clone-0.git", env))
            row["gitmail init"] = median_of(args.repeat, init)
            members = subprocess.run([GITMAIL, "members", "--json", "--repo", str(work / "member-0")], env=env,
                                     capture_output=True, check=True).stdout
            got = members.count(b'"name"')
            if got < n + 1:
                raise SystemExit(f"the newcomer sees {got} members, expected at least {n + 1}")
            m0 = work / "member-0"
            timed([GITMAIL, "sync", "--repo", str(m0)], env)
            row["sync (nothing moved)"] = median_of(args.repeat, lambda i: timed([GITMAIL, "sync", "--repo", str(m0)],
                                                                                  env))

            def moved(i: int) -> float:
                # another newcomer registers (one directory commit), then member-0 syncs it; a name
                # no earlier run used (with --keep, registering a known name again writes nothing)
                before = _directory_tip(org)
                timed([GITMAIL, "init", "--name", f"late{i}-{os.getpid()}", "--org", str(org), "--repo",
                       str(work / f"late-{i}")], env)
                if _directory_tip(org) == before:
                    raise SystemExit("the newcomer's registration did not move the directory")
                return timed([GITMAIL, "sync", "--repo", str(m0)], env)

            row["sync (directory moved)"] = median_of(args.repeat, moved)
            # The steady state: member-0 sends to a peer, who syncs it (the directory does not move;
            # what still grows with the members is loading the verified directory), through the
            # warm CLI server (the default) and in-process.
            peer = work / "peer"
            timed([GITMAIL, "init", "--name", f"peer-{os.getpid()}", "--org", str(org), "--repo", str(peer)], env)
            to = subprocess.run(["git", "config", "gitmail.user"], cwd=peer, capture_output=True, text=True,
                                check=True).stdout.strip()
            timed([GITMAIL, "sync", "-q", "--repo", str(m0)], env)  # m0 learns the peer's registration
            for how, e in (("warm", env), ("in-process", {**env, "GITMAIL_WARM": "off"})):
                timed([GITMAIL, "sync", "-q", "--repo", str(peer)], e)
                row[f"send ({how})"] = median_of(
                    args.repeat, lambda i: timed([GITMAIL, "send", to, f"note {i}", "-q", "--repo", str(m0)], e))

                def one(i: int) -> float:
                    timed([GITMAIL, "send", to, f"mail {how} {i}", "-q", "--repo", str(m0)], e)
                    return timed([GITMAIL, "sync", "-q", "--repo", str(peer)], e)

                row[f"sync bringing one message ({how})"] = median_of(args.repeat, one)
            rows[n] = row
            print(f"{n:>6} members: " + ", ".join(f"{k} {v:.2f} s" for k, v in row.items()), flush=True)
            shutil.rmtree(work)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print()
    cols = ["gitmail init", "git clone", "verify only", "sync (nothing moved)", "sync (directory moved)",
            "send (warm)", "sync bringing one message (warm)", "send (in-process)",
            "sync bringing one message (in-process)"]
    print(f"{'members':>8} " + " ".join(f"{c:>24}" for c in cols))
    for n, row in rows.items():
        print(f"{n:>8} " + " ".join(f"{row[c]:>22.2f} s" for c in cols))
    targets = {(250, 1000): 4.4, (1000, 10000): 11.0}
    for (a, b), target in targets.items():
        if a in rows and b in rows:
            gi = rows[b]["gitmail init"] / rows[a]["gitmail init"]
            gc = rows[b]["git clone"] / rows[a]["git clone"]
            vo = rows[b]["verify only"] / rows[a]["verify only"]
            over = ((rows[b]["gitmail init"] - rows[b]["git clone"]) / (rows[a]["gitmail init"] - rows[a]["git clone"]))
            print(f"ratio {b}/{a}: gitmail init {gi:.2f}x (target at most {target}x), git clone {gc:.2f}x, "
                  f"directory verification alone {vo:.2f}x, init minus clone {over:.2f}x")
            steady = ", ".join(f"{c} {rows[b][c] / rows[a][c]:.2f}x" for c in cols[5:])
            print(f"ratio {b}/{a}, steady state: {steady}")


if __name__ == "__main__":
    main()
