"""gitmail export: mbox and Maildir read back with the standard library, threaded, with attachments."""

from __future__ import annotations

import json
import re
import mailbox
import shutil
import subprocess
from email.message import Message
from pathlib import Path
from typing import Sequence

import pytest

from tests.conftest import Org


def _by_subject(msgs: Sequence[Message]) -> dict[str, Message]:
    return {str(m["Subject"]): m for m in msgs}


def _parts(m: Message) -> dict[str, bytes]:
    out = {}
    for part in m.walk():
        name = part.get_filename()
        if name:
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out[name] = payload
    return out


def test_mbox_threads_attachments_verdict_and_incremental(org: Org, tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    f = tmp_path / "report.bin"
    f.write_bytes(data)
    csv = tmp_path / "domain-research.csv"
    csv.write_text("domain,score\nexample.com,3\n")
    org.ok("max", "send", "alex", "pick your top 3", "--subject", "Domain research", "--attach", str(csv),
           "--attach", str(f))
    org.ok("alex", "sync")
    first = json.loads(org.ok("alex", "list", "--json").out)["messages"][0]
    org.ok("alex", "reply", first["short_id"], "done: a, b, c")
    org.ok("max", "sync")
    org.ok("max", "reply", first["short_id"], "thanks")  # max replies in the same thread
    org.ok("alex", "sync")
    box = tmp_path / "alex.mbox"
    r = json.loads(org.ok("alex", "export", "--mbox", str(box), "--all", "--json").out)
    assert r["format"] == "mbox" and len(r["added"]) == 3 and r["skipped"] == 0
    every = list(mailbox.mbox(str(box)))
    msgs = _by_subject(every)
    root = msgs["Domain research"]
    assert root["Message-ID"] == f"<{first['id']}@gitmail>"
    assert root["X-Gitmail-Verified"] == "good" and root["X-Gitmail-Encrypted"] == "yes"
    assert "max" in str(root["From"]) and "alex" in str(root["To"])
    texts = [p.get_payload(decode=True) for p in root.walk() if p.get_content_type() == "text/plain"
             and not p.get_filename()]
    assert any(b"pick your top 3" in t for t in texts if isinstance(t, bytes))  # decrypted for the member
    files = _parts(root)
    assert files == {"domain-research.csv": csv.read_bytes(), "report.bin": data}
    assert [p.get_content_type() for p in root.walk() if p.get_filename() == "domain-research.csv"] == ["text/csv"]
    replies = [m for m in every if m["Message-ID"] != root["Message-ID"]]
    assert [str(m["Subject"]) for m in replies] == ["Re: Domain research"] * 2
    for m in replies:  # both answer the first message, in its thread
        assert m["In-Reply-To"] == root["Message-ID"] and str(m["References"]) == root["Message-ID"]
    # Incremental: a second export adds nothing; a new message adds one.
    again = json.loads(org.ok("alex", "export", "--mbox", str(box), "--all", "--json").out)
    assert again["added"] == [] and again["skipped"] == 3
    org.ok("max", "send", "alex", "one more")
    org.ok("alex", "sync")
    third = json.loads(org.ok("alex", "export", "--mbox", str(box), "--all", "--json").out)
    assert len(third["added"]) == 1 and len(mailbox.mbox(str(box))) == 4


def test_maildir_flags_and_since(org: Org, tmp_path: Path) -> None:
    org.ok("max", "send", "alex", "read me", "--subject", "Seen")
    org.ok("max", "send", "alex", "not yet", "--subject", "Unseen")
    org.ok("alex", "sync")
    seen = [m for m in json.loads(org.ok("alex", "list", "--json").out)["messages"] if m["subject"] == "Seen"][0]
    org.ok("alex", "mark", seen["short_id"], "--read")
    md = tmp_path / "Maildir"
    org.ok("alex", "export", "--maildir", str(md))
    box = mailbox.Maildir(str(md))
    flags = {str(m["Subject"]): m.get_flags() for m in box}
    assert flags == {"Seen": "S", "Unseen": ""}
    empty = tmp_path / "later"
    r = json.loads(org.ok("alex", "export", "--maildir", str(empty), "--since", "2999-01-01", "--json").out)
    assert r["added"] == []


def test_bad_input(org: Org, tmp_path: Path) -> None:
    assert org.as_("alex", "export").code == 2
    r = org.as_("alex", "export", "--mbox", str(tmp_path / "a"), "--maildir", str(tmp_path / "b"))
    assert r.code == 2 and r.err.startswith("gitmail: give exactly one")
    assert org.as_("alex", "export", "--mbox", str(tmp_path / "x"), "--since", "yesterday").code == 2
    assert not (tmp_path / "x").exists()


def test_hostile_header_text(org: Org, tmp_path: Path) -> None:
    org.ok("max", "send", "alex", "body", "--subject", "evil\x1b]0;t\x07 subject")
    org.ok("alex", "sync")
    box = tmp_path / "m"
    org.ok("alex", "export", "--mbox", str(box))
    [m] = list(mailbox.mbox(str(box)))
    assert "\x1b" not in str(m["Subject"]) and "\x07" not in str(m["Subject"])


@pytest.mark.skipif(shutil.which("mutt") is None or shutil.which("script") is None,
                    reason="mutt (or util-linux script) is not installed; scripts/test installs it")
def test_mutt_reads_the_maildir(org: Org, tmp_path: Path) -> None:
    """Stock mutt opens the exported Maildir (under a pseudo-terminal, as it needs one) and lists it."""
    org.ok("max", "send", "alex", "hello mutt", "--subject", "For mutt")
    org.ok("max", "send", "alex", "again", "--subject", "Second one")
    org.ok("alex", "sync")
    md = tmp_path / "Maildir"
    org.ok("alex", "export", "--maildir", str(md))
    cmd = (f"mutt -n -F /dev/null -e 'set folder={md} spoolfile={md} quit=yes' -f {md} "
           "-e 'push <display-message><exit><quit>'")
    out = subprocess.run(["script", "-qc", cmd, "/dev/null"], capture_output=True, timeout=60,
                         env={"TERM": "xterm", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    screen = re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]", b"", out.stdout).decode("utf-8", "replace")
    assert out.returncode == 0 and "For mutt" in screen and "Second one" in screen and "Msgs:2" in screen


def test_an_export_target_is_checked_before_anything_is_read_or_written(org: Org, tmp_path: Path) -> None:
    """``--mbox /dev/full`` read the device as an endless mbox until the kernel killed gitmail
    (and left /dev/full.lock); a Python file got mail appended; a missing folder, a file as a
    Maildir, an empty name and an mbox in a folder that takes no new file (``/proc/self``)
    were internal errors (exit 70). Each is one line, exit 2, and
    nothing is written; a real mbox still takes new mail."""
    org.ok("max", "send", "alex", "for the archive")
    org.ok("alex", "sync")
    script = tmp_path / "tool.py"
    script.write_text("print('hi')\n")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args, words in ((["--mbox", "/dev/full"], "not a regular file"),
                        (["--mbox", str(script)], "not an mbox file"),
                        (["--mbox", str(tmp_path / "nope" / "x.mbox")], "no such folder"),
                        (["--maildir", str(afile)], "not a folder"),
                        (["--maildir", ""], "give a folder name"),
                        (["--mbox", " "], "give a file name"),
                        # a folder that takes no new file: was exit 70 (FileNotFoundError on create)
                        (["--mbox", "/proc/self/x.mbox"], "cannot be created here")):
        r = org.as_("alex", "export", *args)
        assert r.code == 2 and r.err.count("\n") == 1 and words in r.err, (args, r)
    assert script.read_text() == "print('hi')\n" and not Path("/dev/full.lock").exists()
    assert not (tmp_path / "nope").exists()
    box = tmp_path / "real.mbox"
    org.ok("alex", "export", "--mbox", str(box))
    assert box.read_bytes().startswith(b"From ")
    org.ok("alex", "export", "--mbox", str(box))  # a second export adds only what is new


def test_export_names_the_member_who_signed_not_the_name_they_chose(org: Org, tmp_path: Path) -> None:
    """mallory registers as display name "max" with max's email (neither is unique) and writes
    to alex: the export said From: max <max@gitmail.invalid> with X-Gitmail-Verified: good,
    byte for byte what max's own mail says. Now the member name the signature proves is in the
    shown name ("max (mallory)") and in X-Gitmail-From."""
    from tests.conftest import run

    mallory = tmp_path / "mallory"
    assert run("init", "--name", "mallory", "--display-name", "max", "--email", "max@gitmail.invalid",
               "--org", org.url, "--repo", str(mallory)).code == 0
    assert run("send", "alex", "wire the money", "--subject", "urgent", "--plain", "--repo", str(mallory)).code == 0
    org.ok("max", "send", "alex", "the real one", "--subject", "real", "--plain")
    org.ok("alex", "sync")
    box = tmp_path / "alex.mbox"
    org.ok("alex", "export", "--mbox", str(box), "--all")
    msgs = _by_subject(list(mailbox.mbox(str(box))))
    fake, real = msgs["urgent"], msgs["real"]
    assert str(fake["From"]) == '"max (mallory)" <max@gitmail.invalid>' and fake["X-Gitmail-From"] == "mallory"
    assert fake["X-Gitmail-Verified"] == "good"  # genuinely mallory's message
    assert str(real["From"]) == "max <max@gitmail.invalid>" and real["X-Gitmail-From"] == "max"
    assert str(fake["From"]) != str(real["From"])


def test_an_email_a_mail_reader_would_split_is_not_exported_as_given(org: Org, tmp_path: Path) -> None:
    """eve registers the email 'max@corp.example,Max' (within the directory's grammar): the
    export said From: eve <max@corp.example,Max>, which a mail reader takes for two
    addresses, the first another member's. Now each header holds exactly one address."""
    from email.utils import getaddresses

    from tests.conftest import run

    eve = tmp_path / "eve"
    assert run("init", "--name", "eve", "--email", "max@corp.example,Max", "--org", org.url,
               "--repo", str(eve)).code == 0
    assert run("send", "alex", "hello", "--subject", "hi", "--plain", "--repo", str(eve)).code == 0
    org.ok("alex", "sync")
    box = tmp_path / "alex.mbox"
    org.ok("alex", "export", "--mbox", str(box), "--all")
    [msg] = list(mailbox.mbox(str(box)))
    got = getaddresses([str(msg["From"])])
    assert len(got) == 1 and got[0][1] == "eve@gitmail.invalid", got


def test_an_empty_folder_becomes_a_maildir_and_another_folder_is_refused(org: Org, tmp_path: Path) -> None:
    """`mkdir out && gitmail export --maildir out` exited 70 (FileNotFoundError: out/cur): the
    stdlib makes cur, new and tmp only for a folder it creates. An empty folder is made a
    Maildir now; a folder holding anything else is refused (exit 2) and left as it was."""
    org.ok("max", "send", "alex", "hello", "--subject", "hi", "--plain")
    org.ok("alex", "sync")
    out = tmp_path / "out"
    out.mkdir()
    org.ok("alex", "export", "--maildir", str(out), "--all")
    assert [m["Subject"] for m in mailbox.Maildir(str(out))] == ["hi"]
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"x")
    r = org.as_("alex", "export", "--maildir", str(other), "--all")
    assert r.code == 2 and "not a Maildir" in r.err and r.err.count("\n") == 1, r
    assert sorted(p.name for p in other.iterdir()) == ["a.jpg"]
