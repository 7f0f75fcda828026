#!/usr/bin/env python3
"""Encryption benchmarks (issue 6). Run: .venv/bin/python bench/bench_private.py [--quick]

Same run, same machine, plaintext as the baseline:
1. sending and reading 1,000 encrypted 4 KB messages vs the same in clear (target <= 1.3x), twice:
   sent as one batch (the strictest: crypto is the largest share), and one send() each;
2. a 10 MB attachment sent and received (sync + read + save) encrypted vs in clear (target <= 1.3x);
3. decrypting one message sealed to 2, 400 and 1,600 readers: ``gitmail.core.crypto.open_`` (rage
   reading from a stream, ``pyrage.decrypt_io``) against ``pyrage.decrypt`` (rage reading from
   bytes, what it called before: time that grows with the square of the header's stanzas).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable


def sh(*args: str, env: dict) -> None:
    subprocess.run(args, env=env, capture_output=True, check=True)


def org(base: Path, env: dict) -> tuple[Path, Path]:
    for name in ("max", "alex"):
        sh(PY, "-m", "gitmail", "init", "--name", name, "--org", str(base / "org.git"), "--repo", str(base / name), env=env)
    sh(PY, "-m", "gitmail", "sync", "--repo", str(base / "max"), env=env)
    return base / "max", base / "alex"


def messages(base: Path, env: dict, n: int, encrypt: bool) -> tuple[float, float]:
    from gitmail import api

    maxc, alexc = org(base, env)
    body = ("All work and no play makes Jack a dull boy. " * 100)[:4096]
    t = time.perf_counter()
    api.send_batch(maxc, [api.Draft(to=["alex"], body=f"{i} {body}"[:4096]) for i in range(n)], encrypt=encrypt)
    send = time.perf_counter() - t
    t = time.perf_counter()
    api.sync(alexc, as_="alex")
    items = api.read(alexc, as_="alex", save=False)
    read = time.perf_counter() - t
    assert len(items) == n and all(it.message and len(it.message.body) == 4096 and not it.error for it in items)
    assert all(it.encrypted == encrypt for it in items)
    return send, read


def one_by_one(base: Path, env: dict, n: int, encrypt: bool) -> float:
    """Send n messages one send() each (each signed, committed and pushed, as an agent
    sends through the MCP server), then sync and read them all; wall time in seconds."""
    from gitmail import api

    maxc, alexc = org(base, env)
    body = ("All work and no play makes Jack a dull boy. " * 100)[:4096]
    t = time.perf_counter()
    for i in range(n):
        assert api.send(maxc, ["alex"], f"{i} {body}"[:4096], encrypt=encrypt).delivered
    api.sync(alexc, as_="alex")
    items = api.read(alexc, as_="alex", save=False)
    took = time.perf_counter() - t
    assert len(items) == n and all(it.encrypted == encrypt and not it.error for it in items)
    return took


def attachment(base: Path, env: dict, size: int, encrypt: bool) -> float:
    from gitmail import api

    maxc, alexc = org(base, env)
    f = base / "big.bin"
    f.write_bytes(os.urandom(size))
    t = time.perf_counter()
    res = api.send(maxc, ["alex"], "the file", attach=[f], encrypt=encrypt)
    api.sync(alexc, as_="alex")
    items = api.read(alexc, as_="alex", save=True, save_dir=base / "inbox")
    took = time.perf_counter() - t
    assert res.encrypted == encrypt
    assert items[0].saved[0].path and items[0].saved[0].path.read_bytes() == f.read_bytes()
    return took


def decrypt_times(readers: int, rounds: int) -> tuple[float, float]:
    """Seconds per decryption of a 4 KB message sealed to ``readers`` keys, by one of them:
    ``(pyrage.decrypt, crypto.open_)``, best of ``rounds``."""
    import pyrage
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gitmail.core import crypto

    keys = [Ed25519PrivateKey.generate() for _ in range(readers)]
    lines = [k.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
             for k in keys]
    me = pyrage.ssh.Identity.from_buffer(keys[0].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    cipher = crypto.seal(os.urandom(4096), lines)
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for i, fn in enumerate((lambda: pyrage.decrypt(cipher, [me]), lambda: crypto.open_(cipher, [me], lines))):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best[0], best[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 messages and a 2 MB file")
    a = ap.parse_args()
    n, size = (200, 2 * 1024 * 1024) if a.quick else (1000, 10 * 1024 * 1024)
    base = Path(tempfile.mkdtemp(prefix="gitmail-bench-private-"))
    env = dict(os.environ, GITMAIL_HOME=str(base / "keys"), GITMAIL_NOTICE="never", GITMAIL_INBOX=str(base / "in"))
    os.environ.update(env)
    try:
        for readers, rounds in ((2, 200), (400, 5), (1600, 2)):
            old, now = decrypt_times(readers, rounds)
            print(f"decrypt one message sealed to {readers} readers: pyrage.decrypt {old * 1e3:.2f} ms, "
                  f"crypto.open_ {now * 1e3:.2f} ms ({now / old:.2f}x)")
        ps, pr = messages(base / "plain", env, n, False)
        es, er = messages(base / "enc", env, n, True)
        print(f"{n} x 4 KB messages, send: clear {ps:.2f} s, encrypted {es:.2f} s ({es / ps:.2f}x); "
              f"read: clear {pr:.2f} s, encrypted {er:.2f} s ({er / pr:.2f}x); "
              f"send+read {(es + er) / (ps + pr):.2f}x (target <= 1.3x)")
        po = one_by_one(base / "po", env, n, False)
        eo = one_by_one(base / "eo", env, n, True)
        print(f"{n} x 4 KB messages, one send() each (signed, committed, pushed), then sync and read: "
              f"clear {po:.2f} s, encrypted {eo:.2f} s: {eo / po:.2f}x (target <= 1.3x)")
        pa = attachment(base / "pa", env, size, False)
        ea = attachment(base / "ea", env, size, True)
        print(f"{size / 2**20:.0f} MB attachment round trip (send, sync, read, save): clear {pa:.2f} s, "
              f"encrypted {ea:.2f} s: {ea / pa:.2f}x (target <= 1.3x)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
