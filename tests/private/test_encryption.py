"""End-to-end encryption: only the sender and the recipients can read, and tampering is caught."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pygit2
import pytest

from gitmail.core.model import Message
from gitmail.core.objects import blob_data, commit, signed_commit
from gitmail.core.store import commit_message
from tests.conftest import Org, git
from tests.core.forge import key_of, push_commit, tip

MAIL = "origin/gitmail/mail/alex/max"


def _key_path(org: Org, name: str) -> Path:
    return Path(git("config", f"gitmail.{name}.key", cwd=org.clones[name]).stdout.strip())


def _resign(org: Org, clone: Path, ref: str, edit) -> str:  # type: ignore[no-untyped-def]
    """Rewrite the tip message commit of ``ref`` with ``edit(msg_dict, tree_files) -> None``, signed by max."""
    pg = pygit2.Repository(str(clone))
    c = commit(pg, pg.revparse_single(ref).id)
    files = {e.name or "": blob_data(pg, e.id) for e in c.tree if e.type_str == "blob"}
    d = json.loads(files["message.json"])
    edit(d, files)
    d.pop("id")
    m = Message.model_validate(d)
    files["message.json"] = m.seal()
    tb = pg.TreeBuilder()
    for name, data in files.items():
        tb.insert(name, pg.create_blob(data), pygit2.enums.FileMode.BLOB)
    for e in c.tree:
        if e.type_str == "tree" and e.name:
            tb.insert(e.name, e.id, pygit2.enums.FileMode.TREE)
    signer = key_of(org, "max")
    # The commit text is re-rendered from the edited message (as a careful forger would),
    # so only the encryption checks can catch the change.
    return signed_commit(pg, c.author, c.committer, commit_message(m), tb.write(), [str(p) for p in c.parent_ids],
                         signer.sign)


def test_direct_message_is_encrypted_by_default(org: Org) -> None:
    sent = json.loads(org.ok("max", "send", "alex", "the launch code is zebra quartz", "--subject", "secret plan",
                             "--json").out)
    assert sent["encrypted"] is True and sent["subject"] == "secret plan"
    org.ok("alex", "sync")
    alex = org.clones["alex"]
    log = git("log", "--show-signature", "-1", MAIL, cwd=alex)
    assert 'Good "git" signature for max' in log.stdout + log.stderr
    assert "(encrypted message)" in log.stdout and "zebra quartz" not in log.stdout and "secret plan" not in log.stdout
    clear = json.loads(git("show", f"{MAIL}:message.json", cwd=alex).stdout)
    assert clear["body"] == "" and clear["subject"] == "" and clear["from"] == "max" and clear["to"] == ["alex"]
    assert clear["encrypted"]["recipients"] == ["alex", "max"] and clear["encrypted"]["size"] == 1024
    listing = json.loads(org.ok("alex", "list", "--json").out)["messages"]
    assert listing[0]["subject"] == "secret plan" and listing[0]["verified"] and listing[0]["encrypted"] is True
    got = json.loads(org.ok("alex", "read", "--json").out)["messages"][0]
    assert got["body"] == "the launch code is zebra quartz" and got["encrypted"] is True and got["error"] is None
    # The sender reads their own sent message.
    own = org.ok("max", "show", MAIL.replace("origin", "origin"))
    assert "the launch code is zebra quartz" in own.out and "Encrypted: yes" in own.out


def test_third_member_cannot_read(org: Org) -> None:
    org.join("bob")
    org.ok("max", "send", "alex", "for alex only: zebra-quartz")
    org.ok("bob", "sync", "--all")  # a third member can fetch the mailbox on purpose (an auditor's copy)
    r = org.as_("bob", "show", MAIL)
    assert r.code == 12 and r.err == "gitmail: encrypted for alex, max; you are not a recipient\n"
    assert "zebra-quartz" not in r.out and "Verification: good" in r.out
    j = json.loads(org.as_("bob", "show", MAIL, "--json").out)
    assert j["encrypted"] and j["error"] and "body" not in j["message"]


def test_stock_age_decrypts_with_the_ssh_key(org: Org, tmp_path: Path) -> None:
    org.ok("max", "send", "alex", "readable with plain age", "--attach", str(_file(tmp_path, "notes.txt", b"hi\n")))
    org.ok("alex", "sync")
    alex = org.clones["alex"]
    cipher = tmp_path / "m.age"
    cipher.write_bytes(subprocess.run(["git", "show", f"{MAIL}:message.age"], cwd=alex, capture_output=True,
                                      check=True).stdout)
    out = subprocess.run(["age", "-d", "-i", str(_key_path(org, "alex")), str(cipher)], capture_output=True,
                         check=True).stdout
    sealed = json.loads(out)
    assert sealed["body"] == "readable with plain age" and sealed["attachments"][0]["name"] == "notes.txt"
    tree = git("ls-tree", "-r", "--name-only", MAIL, cwd=alex).stdout
    assert "notes" not in tree
    att = tmp_path / "a.age"
    att.write_bytes(subprocess.run(["git", "show", f"{MAIL}:attachments/1-1.age"], cwd=alex, capture_output=True,
                                   check=True).stdout)
    plain = subprocess.run(["age", "-d", "-i", str(_key_path(org, "alex")), str(att)], capture_output=True,
                           check=True).stdout
    # Padded with zeros to 1 KiB (docs/protocol.md §9); the sealed size says how much is the file.
    size = sealed["attachments"][0]["size"]
    assert size == 3 and len(plain) == 1024 and plain[:size] == b"hi\n" and plain[size:] == bytes(1024 - size)


def _file(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


def test_encrypted_attachment_saved_under_its_real_name(org: Org, tmp_path: Path) -> None:
    src = _file(tmp_path, "domain-research.csv", b"name,score\n" * 400)
    r = org.ok("max", "send", "alex", "CSV attached", "--attach", str(src))
    assert "(1 attachment, 4.3 KB) (encrypted)" in r.out
    org.ok("alex", "sync")
    inbox = tmp_path / "inbox"
    got = json.loads(org.ok("alex", "read", "--json", "--save-dir", str(inbox)).out)["messages"][0]
    assert got["attachments"][0]["name"] == "domain-research.csv"
    assert (inbox / "domain-research.csv").read_bytes() == src.read_bytes()


def test_altered_ciphertext_fails_the_signature_first(org: Org) -> None:
    org.ok("max", "send", "alex", "original")
    clone = org.clones["max"]
    pg = pygit2.Repository(str(clone))
    c = commit(pg, tip(clone, "alex", "max") or "")
    sig, payload = c.gpg_signature
    bad = bytearray(blob_data(pg, c.tree["message.age"].id))
    bad[-3] ^= 1
    tb = pg.TreeBuilder(c.tree)
    tb.insert("message.age", pg.create_blob(bytes(bad)), pygit2.enums.FileMode.BLOB)
    text = payload.decode().replace(str(c.tree_id), str(tb.write()))
    forged = pg.create_commit_with_signature(text, sig.decode(), "gpgsig")
    push_commit(clone, "alex", "max", str(forged), force=True)
    org.ok("alex", "sync")
    m = json.loads(org.ok("alex", "list", "--json").out)["messages"][0]
    assert m["status"] == "bad-signature" and m["verified"] is False
    r = org.as_("alex", "read", m["short_id"])
    assert r.code == 12 and "failed verification" in r.err and "original" not in r.out


def test_recipient_list_altered_in_clear_is_detected(org: Org) -> None:
    org.join("bob")
    org.ok("max", "send", "alex", "just us")
    clone = org.clones["max"]
    org.ok("max", "sync")

    def add_bob(d: dict, files: dict) -> None:
        d["to"] = ["alex", "bob"]

    oid = _resign(org, clone, f"refs/remotes/{MAIL}", add_bob)
    push_commit(clone, "alex", "max", oid, force=True)
    org.ok("alex", "sync")
    m = json.loads(org.ok("alex", "list", "--json").out)["messages"][0]
    # Signed by max, so the signature alone cannot tell; but bob, named in to, is not among the
    # envelope's readers: the clear message says so before anything is decrypted.
    assert (m["verified"], m["status"]) == (False, "malformed"), m
    r = org.as_("alex", "read", m["short_id"], "--json")
    item = json.loads(r.out)["messages"][0]
    assert "'bob', a recipient, is not among the readers" in item["verification"], item
    assert "just us" not in r.out


def test_a_recipient_taken_out_of_to_in_clear_is_detected(org: Org) -> None:
    """The other way (bob taken out of the clear to, still a reader): only the sealed copy can tell."""
    org.join("bob")
    org.ok("max", "send", "alex", "bob", "all of us")
    clone = org.clones["max"]
    org.ok("max", "sync")

    def drop_bob(d: dict, files: dict) -> None:
        d["to"] = ["alex"]

    oid = _resign(org, clone, f"refs/remotes/{MAIL}", drop_bob)
    push_commit(clone, "alex", "max", oid, force=True)
    org.ok("alex", "sync")
    m = json.loads(org.ok("alex", "list", "--json").out)["messages"][0]
    assert m["verified"] is True  # signed by max, every recipient among the readers
    r = org.as_("alex", "read", m["short_id"])
    assert r.code == 12 and "recipients or sender differ" in r.err and "all of us" not in r.out


def test_truncated_ciphertext(org: Org) -> None:
    org.ok("max", "send", "alex", "long enough " * 50)
    clone = org.clones["max"]
    org.ok("max", "sync")

    def truncate(d: dict, files: dict) -> None:
        import hashlib

        files["message.age"] = files["message.age"][:-40]
        d["encrypted"]["sha256"] = hashlib.sha256(files["message.age"]).hexdigest()

    push_commit(clone, "alex", "max", _resign(org, clone, f"refs/remotes/{MAIL}", truncate), force=True)
    org.ok("alex", "sync")
    r = org.as_("alex", "read")
    assert r.code == 12 and "damaged" in r.err and r.err.count("\n") == 1


def test_damaged_header_error_is_one_line_in_json(org: Org) -> None:
    """pyrage's message for a header it cannot parse has two lines ("Unknown age format.\nHave
    you tried upgrading..."): the ``error`` field of ``--json`` is still one line."""
    org.ok("max", "send", "alex", "header to be mangled")
    clone = org.clones["max"]
    org.ok("max", "sync")

    def mangle(d: dict, files: dict) -> None:
        import hashlib

        files["message.age"] = files["message.age"].replace(b"\n---", b"\n--- x", 1)
        d["encrypted"]["sha256"] = hashlib.sha256(files["message.age"]).hexdigest()

    push_commit(clone, "alex", "max", _resign(org, clone, f"refs/remotes/{MAIL}", mangle), force=True)
    org.ok("alex", "sync")
    r = org.as_("alex", "read", "--json")
    item = json.loads(r.out)["messages"][0]
    assert item["verified"] is True and item["error"].startswith("cannot decrypt"), item
    assert "\n" not in item["error"] and "Unknown age format. Have you tried" in item["error"], item
    assert "header to be mangled" not in r.out


def test_attachment_swapped_for_another_messages(org: Org, tmp_path: Path) -> None:
    org.ok("max", "send", "alex", "A", "--attach", str(_file(tmp_path, "a.txt", b"AAAA")))
    org.ok("max", "send", "alex", "B", "--attach", str(_file(tmp_path, "b.txt", b"BBBB")))
    clone = org.clones["max"]
    org.ok("max", "sync")
    pg = pygit2.Repository(str(clone))
    b = commit(pg, pg.revparse_single(f"refs/remotes/{MAIL}").id)
    b_att = json.loads(blob_data(pg, b.tree["message.json"].id))["attachments"][0]
    b_blob = blob_data(pg, b.tree[b_att["path"]].id)

    def swap(d: dict, files: dict) -> None:
        d["attachments"][0]["oid"], d["attachments"][0]["size"] = b_att["oid"], b_att["size"]

    def edit(d: dict, files: dict) -> None:
        swap(d, files)

    oid = _resign(org, clone, f"refs/remotes/{MAIL}~1", edit)
    c = commit(pg, oid)
    tb = pg.TreeBuilder(c.tree)
    sub = pg.TreeBuilder(c.tree["attachments"])  # type: ignore[arg-type]
    sub.insert("1-1.age", pg.create_blob(b_blob), pygit2.enums.FileMode.BLOB)
    tb.insert("attachments", sub.write(), pygit2.enums.FileMode.TREE)
    swapped = signed_commit(pg, c.author, c.committer, c.message, tb.write(), [str(b.id)], key_of(org, "max").sign)
    push_commit(clone, "alex", "max", str(swapped))
    org.ok("alex", "sync")
    listed = json.loads(org.ok("alex", "list", "--json").out)["messages"]
    target = next(m for m in listed if m["commit"] == str(swapped))
    r = org.as_("alex", "read", target["short_id"], "--save-dir", str(tmp_path / "in"))
    assert r.code == 12 and "swapped" in r.err
    assert not (tmp_path / "in").exists() or not any((tmp_path / "in").iterdir())


def test_wrong_passphrase(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kp = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw0rd", "-f", str(kp)], check=True)
    monkeypatch.setenv("GITMAIL_PASSPHRASE", "pw0rd")
    org.join("lock", "--key", str(kp))
    org.ok("max", "send", "lock", "for the locked key", "--subject", "hello lock")
    org.ok("lock", "sync")
    monkeypatch.setenv("GITMAIL_PASSPHRASE", "nope")
    r = org.as_("lock", "read")
    assert r.code == 12 and "wrong passphrase" in r.err and "for the locked key" not in r.out
    assert r.err.count("\n") == 1 and "Traceback" not in r.err
    monkeypatch.setenv("GITMAIL_PASSPHRASE", "pw0rd")
    got = json.loads(org.ok("lock", "read", "--json").out)["messages"]
    assert got[0]["body"] == "for the locked key"


def test_key_rotation_keeps_old_mail_readable(org: Org, tmp_path: Path) -> None:
    org.ok("max", "send", "alex", "before rotation")
    old_key = _key_path(org, "alex")
    rot = json.loads(org.ok("alex", "key", "rotate", "--json").out)
    assert rot["old_key"] != rot["new_key"]
    org.ok("max", "sync")
    org.ok("max", "send", "alex", "after rotation")
    org.ok("alex", "sync")
    bodies = sorted(m["body"] for m in json.loads(org.ok("alex", "read", "--json").out)["messages"])
    assert bodies == ["after rotation", "before rotation"]
    cipher = tmp_path / "new.age"
    cipher.write_bytes(subprocess.run(["git", "show", f"{MAIL}:message.age"], cwd=org.clones["alex"],
                                      capture_output=True, check=True).stdout)
    assert subprocess.run(["age", "-d", "-i", str(old_key), str(cipher)], capture_output=True).returncode != 0
    assert subprocess.run(["age", "-d", "-i", rot["key_path"], str(cipher)], capture_output=True).returncode == 0
    # New mail from alex is signed with the new key; old and new signatures verify.
    org.ok("alex", "send", "max", "signed with the new key")
    org.ok("max", "sync")
    assert json.loads(org.ok("max", "verify", "--json").out)["ok"] is True
    assert json.loads(org.ok("alex", "verify", "--json").out)["ok"] is True


def test_policy_and_flags(org: Org) -> None:
    r = org.as_("alex", "org", "encryption=required")
    assert r.code == 6 and "admin" in r.err
    assert org.as_("max", "org", "encryption=sometimes").code == 2
    org.ok("max", "org", "encryption=required")
    org.ok("alex", "sync")
    r = org.as_("alex", "send", "max", "in clear please", "--plain")
    assert r.code == 2 and "requires encryption" in r.err
    org.ok("max", "org", "encryption=default")
    org.join("nokey", "--no-encryption-key")
    org.ok("max", "sync")
    plain = json.loads(org.ok("max", "send", "nokey", "hello", "--json").out)
    assert plain["encrypted"] is False
    org.ok("nokey", "sync")
    assert json.loads(org.ok("nokey", "list", "--json").out)["messages"][0]["encrypted"] is False
    r = org.as_("max", "send", "nokey", "hello", "--encrypt")
    assert r.code == 2 and "no encryption key published by nokey" in r.err
    bcast = json.loads(org.ok("max", "send", "*", "hello all", "--json").out)
    assert bcast["encrypted"] is False
    private_b = json.loads(org.ok("max", "send", "alex", "clear on request", "--plain", "--json").out)
    assert private_b["encrypted"] is False
    org.ok("max", "org", "encryption=off")
    org.ok("max", "sync")
    assert json.loads(org.ok("max", "send", "alex", "off", "--json").out)["encrypted"] is False
    assert json.loads(org.ok("max", "send", "alex", "on", "--encrypt", "--json").out)["encrypted"] is True


def test_group_message_encrypted_to_every_member(org: Org) -> None:
    org.join("bob")
    org.ok("max", "group", "create", "core", "alex", "bob")
    org.ok("max", "sync")
    sent = json.loads(org.ok("max", "send", "team:core", "group secret", "--json").out)
    assert sent["encrypted"] is True
    for who in ("alex", "bob"):
        org.ok(who, "sync")
        got = json.loads(org.ok(who, "read", "--json").out)["messages"]
        assert [m["body"] for m in got] == ["group secret"]



def test_cache_of_decrypted_subjects_is_private(org: Org) -> None:
    import stat

    org.ok("max", "send", "alex", "x", "--subject", "private subject")
    org.ok("alex", "sync")
    d = org.clones["alex"] / ".git" / "gitmail" / "cache"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


def _cached_plaintext(org: Org, who: str) -> list:
    import sqlite3

    from gitmail.core.address import to_ref

    db = sqlite3.connect(org.clones[who] / ".git" / "gitmail" / "cache" / f"{to_ref(who)}.sqlite3")
    return [r[0] for r in db.execute("SELECT plaintext FROM msg WHERE inbox=1")]


def test_plaintext_kept_only_for_keys_without_passphrase(org: Org, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    org.ok("max", "send", "alex", "decrypted once")
    org.ok("alex", "sync")
    (kept,) = _cached_plaintext(org, "alex")
    assert kept is not None and "decrypted once" in kept
    key = _key_path(org, "alex")
    moved = key.with_name("away")
    key.rename(moved)  # reading no longer needs the key: it was decrypted when indexed
    try:
        got = json.loads(org.ok("alex", "read", "--json").out)["messages"]
        assert got[0]["body"] == "decrypted once"
    finally:
        moved.rename(key)
    kp = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", str(kp)], check=True)
    monkeypatch.setenv("GITMAIL_PASSPHRASE", "pw")
    org.join("locked", "--key", str(kp))
    org.ok("max", "send", "locked", "never on disk in clear")
    org.ok("locked", "sync")
    assert _cached_plaintext(org, "locked") == [None]


def test_what_a_recipient_would_refuse_once_opened_is_never_sealed(org: Org, tmp_path: Path) -> None:
    """A NUL in the body of an encrypted message: the reader refuses the opened content
    (docs/protocol.md §9), so the writer refuses to seal it (exit 2, nothing written), as it
    refuses the same message in clear. Before, ``send`` said "Sent" and the recipient's
    ``read`` failed. One message and a batch."""
    before = git("for-each-ref", cwd=org.clones["max"]).stdout
    r = org.as_("max", "send", "alex", "-", stdin="x\x00y")
    assert r.code == 2 and "cannot send this message: subject contains a NUL" in r.err, r
    plain = org.as_("max", "send", "alex", "-", "--plain", stdin="x\x00y")
    assert plain.code == 2 and "NUL" in plain.err, plain
    batch = tmp_path / "b.jsonl"
    batch.write_text(json.dumps({"to": "alex", "body": "x\x00y"}) + "\n")
    b = org.as_("max", "send", "--batch", str(batch))
    assert b.code == 2 and "NUL" in b.err, b
    assert git("for-each-ref", cwd=org.clones["max"]).stdout == before
    org.ok("max", "send", "alex", "a clean one")  # and the next good message goes
    org.ok("alex", "sync")
    assert [m["subject"] for m in json.loads(org.ok("alex", "list", "--json").out)["messages"]] == ["a clean one"]


def _list_made_up_readers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, n: int) -> None:
    """max's next send lists ``n`` made-up readers (``r00000``...) beside the real ones, with a
    stanza for each (sealed to a few stranger keys, cycled): the header bound grows with the
    readers listed, and an age decryptor's time with the square of the stanzas."""
    import hashlib

    from gitmail.core import crypto, private
    from gitmail.core.model import Envelope, Sealed
    from gitmail.core.signing import generate_key

    strangers = [generate_key(tmp_path / f"k{i}").public_key for i in range(5)]

    def hostile_seal(msg: Message, d: object, sealed_atts: list) -> tuple[Message, bytes]:
        names = private.readers(d, msg.from_, msg.to)  # type: ignore[arg-type]
        keys = [d.members[x].encryption_key or "" for x in names]  # type: ignore[attr-defined]
        fake = [f"r{i:05d}" for i in range(n)]
        inner = Sealed(from_=msg.from_, to=msg.to, subject=msg.subject, summary=msg.summary, body=msg.body,
                       payload=msg.payload, attachments=sealed_atts)
        plain = private.canonical_json(inner.model_dump(by_alias=True, mode="json"))
        cipher = crypto.seal(private._pad(plain, b" "), keys + [strangers[i % 5] for i in range(n)])
        env = Envelope(sha256=hashlib.sha256(cipher).hexdigest(), recipients=sorted(names + fake),
                       size=crypto.bucket(len(plain)))
        clear = msg.model_copy(update={"subject": "", "summary": "", "body": "", "payload": None,
                                       "encrypted": env.model_dump(mode="json")})
        clear.id = clear.compute_id()
        return clear, cipher

    monkeypatch.setattr(private, "seal_message", hostile_seal)


def test_made_up_readers_buy_no_bigger_age_header(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The age header's bound grew with whatever readers the envelope listed: 12,000 made-up
    names (one stanza each) cost alex 35 s of sync for one message, through the guard too
    (reported by a hostile sweep). A listed reader must be a name a member holds or held,
    else the message is malformed, before its ciphertext is read; a removed member's name
    still counts (old mail to them stays good)."""
    _list_made_up_readers(monkeypatch, tmp_path, 40)
    org.ok("max", "send", "alex", "a header for forty strangers", "--encrypt")
    monkeypatch.undo()
    org.ok("alex", "sync")
    [m] = json.loads(org.ok("alex", "list", "--json").out)["messages"]
    assert m["status"] == "malformed", m
    shown = org.as_("alex", "read", m["id"][:12], "--no-mark")
    assert "'r00000' (and 39 more) is no member's name" in shown.out + shown.err, shown


def test_the_guard_refuses_made_up_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.sync.conftest import _net_org

    gen = _net_org(tmp_path, guard=True)
    o = next(gen)
    try:
        _list_made_up_readers(monkeypatch, tmp_path, 40)
        r = o.as_("max", "send", "alex", "a header for forty strangers", "--encrypt")
        monkeypatch.undo()
        assert r.code != 0 and "is no member's name" in r.err, r
    finally:
        next(gen, None)


def test_a_listed_reader_left_out_is_told_so(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender listed bob as a reader and sealed to everyone else: bob read "you are not a
    recipient", beside a list that names him (reported by a hostile sweep). Now he is told
    the sender did not seal it to his key."""
    from gitmail.core import crypto

    org.join("bob")
    real = crypto.seal

    def leave_bob_out(plain: bytes, lines: list) -> bytes:
        from gitmail.core import directory as dirmod
        from gitmail.core.repo import open_repo

        bob = dirmod.load(open_repo(org.clones["max"])).members["bob"].encryption_key
        return real(plain, [x for x in lines if x != bob])

    monkeypatch.setattr(crypto, "seal", leave_bob_out)
    org.ok("max", "send", "alex", "bob", "for both of you", "--encrypt")
    monkeypatch.undo()
    org.ok("bob", "sync")
    r = org.as_("bob", "read")
    assert r.code == 12 and "you are listed as a reader, but the sender did not seal it to your key" in r.err, r


def test_mail_sealed_to_a_member_later_removed_stays_good(tmp_path: Path) -> None:
    """The readers rule counts names members held: after an admin removes bob, max's earlier
    encrypted mail to alex and bob is still good for alex (sync and verify --all)."""
    from tests.sync.conftest import _net_org
    from tests.trust.dirforge import current_entries, push_dir, write_dir_commit

    gen = _net_org(tmp_path, guard=False)
    o = next(gen)
    try:
        o.join("bob")
        o.ok("max", "sync")
        o.ok("max", "send", "alex", "bob", "for both of you", "--encrypt")
        tip_, entries = current_entries(o.clones["max"])
        gone = write_dir_commit(o.clones["max"], [e for e in entries if e["name"] != "bob"], key_of(o, "max"), tip_)
        assert push_dir(o.clones["max"], gone).returncode == 0
        o.ok("alex", "sync")
        assert "bob" not in o.ok("alex", "members").out
        [m] = json.loads(o.ok("alex", "list", "--json").out)["messages"]
        assert m["status"] == "good", m
        full = json.loads(o.as_("alex", "verify", "--all", "--json").out)
        assert full["bad"] == [], full
    finally:
        next(gen, None)
