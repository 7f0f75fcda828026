#!/usr/bin/env python3
"""Import and batch-send benchmarks (issue 14 item 7). Run: .venv/bin/python bench/bench_import.py [--n N]

Prints messages per second (target >= 1,000) and the ratios to two baselines
measured in the same run: `git fast-import` of the same number of unsigned
commits, and the bulk writer alone (`api.send_batch` of N short text
messages in one process, signed, in clear, no push), which tells how much an
import adds to writing (the machine's load moves both alike):
1. `gitmail import --mbox` of N messages (a whole process: parse with the
   stdlib, compose, sign, one pack, one push to the org repo), encrypted (the
   org's default policy) and in clear (`--plain`);
2. the same import again (idempotent: nothing added);
3. `gitmail send --batch` of N JSON lines (a whole process, one push);
4. the peak memory of an import of N messages of about 4 KB each, against the archive's size.

Each command runs two ways: in-process (``GITMAIL_WARM=off``: a whole new
Python process, interpreter start included) and through the warm CLI server,
as the console script runs it by default (started once, before the timed
runs, in a runtime directory of the bench's own). Each line gives wall time
and CPU time (user + system of the gitmail process and every git it runs;
through the warm server, the client's plus the server child's that ran the
command, read from /proc): on a shared machine the load moves wall time, CPU
time much less, so the CPU rate says what the code costs. gitmail runs with
compiled bytecode, as an installed copy has it (a ``PYTHONDONTWRITEBYTECODE``
in the caller's environment would make each run compile every module again).
No guard runs on the org repo here (a file-path org): tests/sync run imports
through a guarded server.
"""

from __future__ import annotations

import argparse
import json
import mailbox
import os
import resource
import shutil
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_core import GITMAIL, PY, cli_env, make_org, sh  # noqa: E402  (bench/ is on sys.path)
from bench_send import GITMAIL as SCRIPT, WarmServer  # noqa: E402  (the console script: warm by default)


def write_mbox(path: Path, n: int, long: bool = False) -> int:
    """An mbox of n status reports (``long``: of about 4 KB each, else one line); its size in bytes."""
    box = mailbox.mbox(str(path))
    box.lock()
    for i in range(n):
        e = EmailMessage()
        e["From"] = f"Person {i % 50} <p{i % 50}@example.com>"
        e["To"] = "team@example.com"
        e["Subject"] = f"{'Long' if long else 'Status'} report {i}"
        e["Date"] = f"Mon, {1 + i % 28:02d} Jun 2025 {i % 24:02d}:{i % 60:02d}:00 +0000"
        e["Message-ID"] = f"<{'long' if long else 'report'}-{i}@example.com>"
        e.set_content((f"line {i} of the long report " * 5 + "\n") * 25 if long else
                      f"Report {i}: the domain research is done, pick your top 3.\n")
        box.add(e)
    box.flush()
    box.unlock()
    box.close()
    return path.stat().st_size


def fast_import_baseline(base: Path, n: int) -> float:
    """Seconds for `git fast-import` of n unsigned commits of one small blob each."""
    fi = base / "fi.git"
    sh("git", "init", "-q", "--bare", str(fi))
    chunks = []
    for i in range(n):
        body = f"Report {i}: the domain research is done, pick your top 3."
        blob = ('{"body":"%s","from":"max","to":["max"]}' % body).encode()
        msg = f"Status report {i}\n\n{body}\n".encode()
        chunks.append(b"blob\nmark :%d\ndata %d\n%s\n" % (2 * i + 1, len(blob), blob))
        chunks.append(b"commit refs/heads/gitmail/mail/max/max\nmark :%d\nauthor max <max@x> %d +0000\n"
                      b"committer max <max@x> %d +0000\ndata %d\n%s\nM 100644 :%d message.json\n\n"
                      % (2 * i + 2, 1700000000 + i, 1700000000 + i, len(msg), msg, 2 * i + 1))
    data = b"".join(chunks)
    t = time.perf_counter()
    sh("git", "fast-import", "--quiet", cwd=fi, input=data)
    return time.perf_counter() - t


def children_cpu() -> float:
    """User + system CPU seconds of every child process reaped so far (and theirs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_json(cmd: list[str], env: dict[str, str], input: Optional[bytes] = None,
               server: Optional[WarmServer] = None) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds (the process and what it ran; with ``server``, also what the
    warm server's child that ran the command used) and the JSON printed."""
    c, t = children_cpu(), time.perf_counter()
    s0 = server.cpu() if server else 0.0
    out = sh(*cmd, env=env, input=input)
    wall = time.perf_counter() - t
    return wall, children_cpu() - c + (server.cpu() - s0 if server else 0.0), json.loads(out)


def bulk_baseline(base: Path, env: dict[str, str], n: int) -> tuple[float, float]:
    """Wall and CPU seconds for the bulk writer alone: n signed text messages, one process, no push."""
    from gitmail import api

    os.environ.update(env)
    maxc = make_org(base / "bulk", env)[1]
    drafts = [api.Draft(to=["alex"], body=f"Report {i}: pick your top 3.") for i in range(n)]
    c, t = time.process_time(), time.perf_counter()
    api.send_batch(maxc, drafts, deliver=False, encrypt=False)
    return time.perf_counter() - t, time.process_time() - c


PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def import_peak(base: Path, env: dict[str, str], n: int) -> None:
    """Peak memory of one in-process `import --mbox --plain` (the largest process: gitmail or one
    of its workers, from getrusage in a process of its own) of n messages of about 4 KB each,
    less the same import of one message (the interpreter and its modules), against the archive's
    size: what the import holds grows with the bodies."""
    peaks = []
    for k in (1, n):
        size = write_mbox(base / f"long-{k}.mbox", k, long=True)
        maxc = make_org(base / f"peak-{k}", env)[1]
        kib = int(sh(PY, "-c", PEAK, *GITMAIL, "import", "--mbox", str(base / f"long-{k}.mbox"), "--plain",
                     "--repo", str(maxc), env=env))
        peaks.append(kib * 1024)
    grown = peaks[1] - peaks[0]
    print(f"import --mbox --plain peak memory: {peaks[1] / 1e6:.0f} MB for a {size / 1e6:.1f} MB archive of {n:,} "
          f"messages; {peaks[0] / 1e6:.0f} MB for one message; the growth, {grown / 1e6:.0f} MB, is "
          f"{grown / size:.1f}x the archive")


def report(label: str, n: int, secs: float, cpu: float, base_t: float, bulk_t: float) -> None:
    print(f"{label}: {n:,} messages in {secs:.2f} s = {n / secs:,.0f} msg/s (target >= 1,000); "
          f"CPU {cpu:.2f} s = {n / cpu:,.0f} msg per CPU-second; "
          f"{base_t / secs:.2f}x of git fast-import's rate, {bulk_t / secs:.2f}x of the bulk writer's")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="messages per run [5000]")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    n = a.n
    base = Path(tempfile.mkdtemp(prefix="gitmail-bench-import-"))
    env = cli_env(base)  # bytecode as an installed copy has it (see the module doc)
    (base / "run").mkdir(mode=0o700)
    env.update(XDG_RUNTIME_DIR=str(base / "run"), GITMAIL_WARM="off")
    env.pop("GITMAIL_WARM_IDLE", None)
    warm_env = {**env, "GITMAIL_WARM": "on", "GITMAIL_WARM_IDLE": "3600"}  # no idle exit mid-run
    server = WarmServer(warm_env)
    ways = (("in-process", env, None, GITMAIL), ("warm", warm_env, server, [SCRIPT]))
    try:
        box = base / "archive.mbox"
        write_mbox(box, n)
        base_t = fast_import_baseline(base, n)
        print(f"baseline: git fast-import of {n:,} unsigned commits: {base_t:.2f} s = {n / base_t:,.0f} commits/s")
        bulk_t, bulk_cpu = bulk_baseline(base, env, n)
        print(f"baseline: bulk writer alone (send_batch, no push): {bulk_t:.2f} s = {n / bulk_t:,.0f} msg/s; "
              f"CPU {bulk_cpu:.2f} s = {n / bulk_cpu:,.0f} msg per CPU-second")
        sh(SCRIPT, "members", "--repo", str(base / "bulk" / "max"), env=warm_env)  # starts the warm server
        server.wait_up()
        for label, extra in (("import --mbox (encrypted, org default)", []), ("import --mbox --plain", ["--plain"])):
            for way, e, srv, cli in ways:
                maxc = make_org(base / f"{label.split()[-1].strip('()')}-{way}", env)[1]
                secs, cpu, res = timed_json([*cli, "import", "--mbox", str(box), *extra, "--json",
                                             "--repo", str(maxc)], e, server=srv)
                assert len(res["added"]) == n and res["outcome"] == "delivered", (len(res["added"]), res["outcome"])
                report(f"{label}, {way}", n, secs, cpu, base_t, bulk_t)
                secs, cpu, res = timed_json([*cli, "import", "--mbox", str(box), *extra, "--json",
                                             "--repo", str(maxc)], e, server=srv)
                assert res["added"] == [] and res["already"] == n
                print(f"  again (idempotent, nothing added): {secs:.2f} s, CPU {cpu:.2f} s")
        import_peak(base, env, n)
        lines = "".join(json.dumps({"to": "alex", "body": f"batch message {i}", "subject": f"Batch {i}"}) + "\n"
                        for i in range(n)).encode()
        for way, e, srv, cli in ways:
            maxc = make_org(base / f"batch-{way}", env)[1]
            for label, extra in (("send --batch (encrypted, org default)", []), ("send --batch --plain", ["--plain"])):
                secs, cpu, res = timed_json([*cli, "send", "--batch", "-", *extra, "--json", "--repo", str(maxc)],
                                            e, input=lines, server=srv)
                assert [m["outcome"] for m in res["messages"]] == ["delivered"] * n
                report(f"{label}, {way}", n, secs, cpu, base_t, bulk_t)
    finally:
        server.stop()
        if a.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
