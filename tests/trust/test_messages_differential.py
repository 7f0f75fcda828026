"""One corpus of good, forged and malformed message commits; the client verifier and the guard agree.

The client's verdict is :func:`gitmail.core.store.check_message` as the cache calls
it, in a member's clone; the guard's is what the pre-receive hook on a real
``git daemon`` does with a push of that commit. Good is accepted and shown;
everything else is refused by the guard and never shown as genuine by the client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from gitmail.core import directory as dirmod
from gitmail.core import refs
from gitmail.core.repo import open_repo
from gitmail.core.store import check_message
from tests.sync import forge
from tests.sync.conftest import NetOrg, guard_runtime, net, unguarded  # noqa: F401 (fixtures)
from tests.trust.test_hostile_messages import CASES, build

if TYPE_CHECKING:
    import pygit2

MAILBOX = "refs/heads/gitmail/mail/alex/max"


def corpus(net: NetOrg, tmp: Path) -> dict[str, Callable[[str], str]]:
    """name -> build(parent) -> commit oid on alex/max, written in max's clone."""
    clone = net.clones["max"]
    out: dict[str, Callable[[str], str]] = {
        "good-rendered-by-gitmail": lambda p: forge.signed(clone, "alex", "max", forge.key_of("max"), parent=p,
                                                            body="genuine"),
        "good-open-type-with-trace": lambda p: _open_type(net, p),
        "unsigned": lambda p: forge.unsigned(clone, "alex", "max"),
        "stranger-key": lambda p: forge.signed(clone, "alex", "max", forge.stranger_key(tmp), parent=p),
        "alex-key-claims-max": lambda p: _as_alex(net, p),
        "misfiled": lambda p: _misfiled(net, p),
        # max's genuine message with a byte after its signature: git verify-commit calls it bad,
        # and an outsider can do this to any genuine commit (a copy with another commit id)
        "signature-trailing-data": lambda p: _resigned(net, p, lambda blob: blob + b"\0"),
        # the same signature, armored with CRLF line ends (also bad to git)
        "signature-crlf-armor": lambda p: _resigned(net, p, None),
    }
    for case in CASES:
        out[case.name] = (lambda c: lambda p: build(clone, c, p))(case)
    return out


def _as_alex(net: NetOrg, parent: str) -> str:
    """alex signs a message claiming to be max, on max's mailbox (written in alex's clone)."""
    forge.git("fetch", "-q", "origin", cwd=net.clones["alex"])
    return forge.signed(net.clones["alex"], "alex", "max", forge.key_of("alex"), claim="max", parent=parent)


def _open_type(net: NetOrg, parent: str) -> str:
    """A genuine message of an open type with a payload at the depth limit and a trace id (issue 14)."""
    from gitmail.core.store import write_message_commit

    r = open_repo(net.clones["max"])
    d = dirmod.load(r)
    deep: dict[str, object] = {}
    for _ in range(29):  # message.json, the payload and 30 levels of "deep": 32, the most a reader takes
        deep = {"a": deep}
    m = forge.message("max", ["alex"], "open type").model_copy(
        update={"type": "x-build-done", "payload": {"job": "ci-42", "deep": deep}, "trace_id": "tr_001"})
    m.id = m.compute_id()
    return write_message_commit(r.pg, m, d.members["max"], forge.key_of("max"), parent)


def _misfiled(net: NetOrg, parent: str) -> str:
    from gitmail.core.store import write_message_commit

    r = open_repo(net.clones["max"])
    d = dirmod.load(r)
    return write_message_commit(r.pg, forge.message("max", ["max"], "to myself"), d.members["max"],
                                forge.key_of("max"), parent)


def _resigned(net: NetOrg, parent: str, change: "Callable[[bytes], bytes] | None") -> str:
    """max's genuine message, its SSHSIG blob changed by ``change`` (None: armored with CRLF)."""
    import pygit2

    pg = pygit2.Repository(str(net.clones["max"]))
    good = forge.signed(net.clones["max"], "alex", "max", forge.key_of("max"), parent=parent, body="genuine, rewrapped")
    return rewrapped(pg, good, change)


def rewrapped(pg: "pygit2.Repository", oid: str, change: "Callable[[bytes], bytes] | None") -> str:
    """Commit ``oid`` written again with its SSHSIG blob changed by ``change`` (None: the same
    blob armored with CRLF): the same message, parent and signed payload, another commit id."""
    import base64

    import pygit2

    from gitmail.core.signing import ARMOR_BEGIN, ARMOR_END, commit_signature, dearmor

    raw = pg.read(oid)[1]
    sig, _ = commit_signature(raw)
    assert sig is not None
    blob = dearmor(sig)
    b64 = base64.b64encode(change(blob) if change else blob)
    lf = b"\n" if change else b"\r\n"
    armor = lf.join([ARMOR_BEGIN.encode(), *[b64[i:i + 70] for i in range(0, len(b64), 70)], ARMOR_END.encode()])
    start = raw.index(b"gpgsig ")
    end = raw.index(b"\n\n")
    hostile = raw[:start] + b"gpgsig " + armor.replace(b"\n", b"\n ") + raw[end:]
    return str(pg.write(pygit2.enums.ObjectType.COMMIT, hostile))


def test_client_and_guard_give_the_same_verdict_on_every_commit(net: NetOrg, tmp_path: Path) -> None:
    clone = net.clones["max"]
    net.ok("max", "send", "alex", "first")
    tip = forge.tip(clone, refs.mail_path("alex", "max"))
    assert tip is not None
    seen = {"good": 0, "bad": 0}
    for name, make in corpus(net, tmp_path).items():
        oid = make(tip)
        if name == "alex-key-claims-max":  # written in alex's clone: bring it over as an attacker would
            forge.push(net.clones["alex"], oid, "refs/heads/not-gitmail/tmp")
            forge.git("fetch", "-q", "origin", "refs/heads/not-gitmail/tmp", cwd=clone)
        r = open_repo(clone)
        _, client = check_message(r.pg, oid, "alex", "max", dirmod.load(r))
        code, out = forge.push(clone, oid, MAILBOX)
        guard_ok = code == 0
        assert guard_ok == client.good, (name, client, out)
        if not client.good:
            assert f"{client.status}: " in out, (name, client, out)
        seen["good" if client.good else "bad"] += 1
        if guard_ok:
            tip = oid
            net.ok("max", "sync")
    assert seen["good"] == 2 and seen["bad"] == len(CASES) + 6


def test_the_shell_notice_announces_only_what_the_client_calls_good(unguarded: NetOrg, tmp_path: Path) -> None:
    """The whole corpus (good, forged and malformed) through the shell notice of a real `git pull`.

    The shell notice (hooks/notice.sh) is a second copy of the rules, kept for
    speed: it may hand a message over to gitmail's Python, but what it announces
    must be what gitmail calls good, and good plain mail must be announced.
    """
    from tests.sync.test_hooks import code_commit, pull, shell_only

    net = unguarded
    alex = shell_only(net)
    clone = net.clones["max"]
    net.ok("max", "send", "alex", "first", "--plain")
    net.ok("alex", "sync")
    cases = corpus(net, tmp_path)
    assert len(cases) == len(CASES) + 8
    announced: dict[str, bool] = {}
    for i, (name, make) in enumerate(cases.items()):
        net.ok("max", "sync")
        tip = forge.tip(clone, refs.mail_path("alex", "max"))
        assert tip is not None
        oid = make(tip)
        if name == "alex-key-claims-max":
            forge.push(net.clones["alex"], oid, "refs/heads/not-gitmail/tmp")
            forge.git("fetch", "-q", "origin", "refs/heads/not-gitmail/tmp", cwd=clone)
        assert forge.push(clone, oid, MAILBOX)[0] == 0
        code_commit(net, "max", f"v{i + 2}")
        code, out = pull(alex)
        assert code == 0, out
        announced[name] = "📬" in out
        net.ok("alex", "sync")  # gitmail's full check indexes it: the next range starts after it
        listed = {m["commit"]: m["status"] for m in json.loads(
            net.ok("alex", "list", "--all", "-n", "100", "--json").out)["messages"]}
        bad = {b["oid"]: b["status"] for b in json.loads(net.as_("alex", "verify", "--json").out)["bad"]}
        client_good = listed.get(oid) == "good" and oid not in bad
        assert not announced[name] or client_good, (name, out, listed.get(oid), bad.get(oid))
    # Plain text mail is the shell's fast path; an open type is handed to gitmail's Python (not announced here).
    assert announced["good-rendered-by-gitmail"], announced
    assert not any(v for k, v in announced.items() if not k.startswith("good-")), announced
