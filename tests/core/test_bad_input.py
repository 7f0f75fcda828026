"""Bad input: one clear line on stderr, a non-zero exit code, no traceback, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gitmail.core.model import Message
from tests.conftest import Org, git, run
from tests.core.forge import key_of, push_commit, tip, write_signed


def snapshot(clone: Path) -> str:
    refs = git("for-each-ref", cwd=clone).stdout
    objs = git("count-objects", "-v", cwd=clone).stdout
    return refs + objs


def assert_clean_error(r: object, code: int, *words: str) -> None:
    assert r.code == code, (r.code, r.err)  # type: ignore[attr-defined]
    err = r.err  # type: ignore[attr-defined]
    assert err.startswith("gitmail: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["send", "nobody", "hi"], 4, ["unknown member 'nobody'"]),
        (["send", "team:ghosts", "hi"], 4, ["unknown group"]),
        (["send", "alex", "   "], 2, ["empty message"]),
        (["send", "alex", "x", "--type", "shutdown_request", "--payload", "{bad"], 2, ["not valid JSON"]),
        (["send", "alex", "", "--type", "task_assign", "--payload", "{}"], 2, ["task_id"]),
        (["send", "*", "", "--type", "shutdown_request", "--payload", "{}"], 2, ["cannot be broadcast"]),
        (["send", "alex", "", "--type", "shutdown_response", "--payload", '{"approve": true}',
          "--request-id", "nope"], 2, ["unknown request_id"]),
        (["send", "alex", "x", "--type", "bo gus"], 2, ["neither a built-in type nor an open type"]),
        (["send", "bad\x01name", "x"], 2, ["control character"]),
        (["send", "../../etc", "x"], 2, ["path separator"]),
        (["read", "zzzz"], 2, ["malformed message id"]),
        (["read", "12"], 2, ["malformed message id"]),
        (["read", "abcdef12"], 4, ["no message"]),
        (["mark", "abcdef12", "--read"], 4, ["no message"]),
        (["archive", "0000"], 4, ["no message"]),
        (["reply", "abcd", "x"], 4, ["no message"]),
        (["list", "--limit", "0"], 2, ["--limit"]),
        # each was an internal error (exit 70) or did something else than asked
        (["list", "--limit", "99999999999999999999"], 2, ["--limit must be between 1 and"]),
        (["search", "hi", "--limit", "99999999999999999999"], 2, ["--limit must be between 1 and"]),
        (["log", "--limit", "-1"], 2, ["--limit must be between 1 and"]),  # dropped the oldest message
        (["log", "--limit", "0"], 2, ["--limit must be between 1 and"]),  # printed nothing, exit 0
        (["send", "alex", "x", "--type", "x-big", "--payload", '{"a":' + "9" * 5000 + "}"], 2,
         ["--payload is not valid JSON", "digits"]),
        (["send", "alex", "x", "--type", "x-nan", "--payload", '{"a":NaN}'], 2, ["NaN is not a JSON number"]),
        (["send", "alex", "x", "--type", "x-inf", "--payload", '{"a":-1e400}'], 2, ["-inf is not a JSON number"]),
        (["outbox", "drop", "dead"], 4, ["no queued message"]),  # asked first, then said "not dropped" (2)
        (["send", "alex", "x", "--subject", "s" * 201], 2, ["the subject is 201 characters; the limit is 200"]),
        (["send", "alex", "x", "--summary", "s" * 121], 2, ["the summary is 121 characters; the limit is 120"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(org: Org, args: list[str], code: int, words: list[str]) -> None:
    before = snapshot(org.clones["max"])
    r = org.as_("max", *args)
    assert_clean_error(r, code, *words)
    assert snapshot(org.clones["max"]) == before


def test_body_over_the_limit(org: Org) -> None:
    before = snapshot(org.clones["max"])
    big = "x" * (1024 * 1024 + 1)
    r = org.as_("max", "send", "alex", "-", stdin=big)
    assert_clean_error(r, 2, "1048577 bytes", "limit is 1048576")
    assert snapshot(org.clones["max"]) == before
    ok = org.as_("max", "send", "alex", "-", stdin="y" * (1024 * 1024))
    assert ok.code == 0, ok.err


def test_not_a_git_repo(tmp_path: Path) -> None:
    d = tmp_path / "plain"
    d.mkdir()
    assert_clean_error(run("list", "--repo", str(d)), 3, "not a git repository")
    assert_clean_error(run("list", "--repo", str(tmp_path / "missing")), 3, "no such directory")


def test_not_initialised(tmp_path: Path) -> None:
    git("init", "-q", str(tmp_path / "r"))
    assert_clean_error(run("list", "--repo", str(tmp_path / "r")), 3, "gitmail init")


def test_bad_member_names_at_init(tmp_path: Path) -> None:
    for name, word in [("", "empty"), ("a\tb", "control"), (" lead", "white space"), ("*", "reserved"),
                       ("team:x", "reserved"), ("..", "reserved"), ("a/b", "separator"), ('a"b', "cannot contain"),
                       ("x" * 101, "too long")]:
        r = run("init", "--name", name, "--org", str(tmp_path / "org.git"), "--repo", str(tmp_path / "c"))
        assert_clean_error(r, 2, word)
    assert not (tmp_path / "org.git").exists() or not git("for-each-ref", cwd=tmp_path / "org.git").stdout


def test_missing_and_unreadable_key(org: Org, tmp_path: Path) -> None:
    clone = org.clones["max"]
    keyfile = Path(git("config", "gitmail.max.key", cwd=clone).stdout.strip())
    before = snapshot(clone)
    moved = keyfile.with_name("moved")
    keyfile.rename(moved)
    try:
        assert_clean_error(org.as_("max", "send", "alex", "hi"), 5, "key file not found")
    finally:
        moved.rename(keyfile)
    keyfile.write_text("garbage\n")
    assert_clean_error(org.as_("max", "send", "alex", "hi"), 5, "not an OpenSSH private key")
    assert snapshot(clone) == before
    r = run("init", "--name", "zed", "--key", str(tmp_path / "nope"), "--repo", str(clone))
    assert_clean_error(r, 5, "key file not found")


def test_passphrase_protected_key(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    kp = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(kp)], check=True)
    clone = org.clones["max"]
    r = run("init", "--name", "lock", "--key", str(kp), "--repo", str(clone))
    assert_clean_error(r, 5, "passphrase-protected")
    monkeypatch.setenv("GITMAIL_PASSPHRASE", "wrong")
    assert_clean_error(run("init", "--name", "lock", "--key", str(kp), "--repo", str(clone)), 5, "wrong passphrase")
    monkeypatch.setenv("GITMAIL_PASSPHRASE", "s3cret")
    r = run("init", "--name", "lock", "--key", str(kp), "--repo", str(clone))
    assert r.code == 0, r.err
    r = run("send", "alex", "from a locked key", "--as", "lock", "--repo", str(clone))
    assert r.code == 0, r.err


def test_name_taken_by_another_key(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    monkeypatch.setenv("GITMAIL_HOME", str(tmp_path / "someone-else"))  # a different person: a new key
    r = run("init", "--name", "alex", "--org", org.url, "--repo", str(other))
    assert_clean_error(r, 6, "already registered with another key")


def test_rsa_key_refused(org: Org, tmp_path: Path) -> None:
    import subprocess

    kp = tmp_path / "rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(kp)], check=True)
    r = run("init", "--name", "rsa", "--key", str(kp), "--repo", str(org.clones["max"]))
    assert_clean_error(r, 5, "not ed25519")


def test_ambiguous_prefix(org: Org) -> None:
    """Two real, signed messages whose Message-IDs share 4 hex digits."""
    seen: dict[str, Message] = {}
    pair = None
    base = Message(**{"from": "max"}, to=["alex"], date="2026-01-01T00:00:00.000000Z", subject="s", body="b")
    for i in range(100000):
        m = base.model_copy(update={"body": f"body {i}"})
        m.id = m.compute_id()
        if m.id[:4] in seen:
            pair = (seen[m.id[:4]], m)
            break
        seen[m.id[:4]] = m
    assert pair is not None
    clone = org.clones["max"]
    parent = tip(clone, "alex", "max")
    for m in pair:
        parent = write_signed(clone, m, "max", key_of(org, "max"), parent)
    assert parent
    push_commit(clone, "alex", "max", parent)
    org.ok("alex", "sync")
    prefix = pair[0].id[:4]
    assert_clean_error(org.as_("alex", "read", prefix), 4, "ambiguous")
    longer = pair[0].id[:12]
    got = json.loads(org.ok("alex", "read", longer, "--json").out)["messages"]
    assert got[0]["id"] == pair[0].id


def test_cli_usage_errors_are_clean(org: Org) -> None:
    r = org.as_("max", "send")
    assert r.code == 2 and "Traceback" not in r.err
    r = org.as_("max", "mark", "abcd")
    assert r.code == 2 and "--read" in r.err
    r = run("frobnicate")
    assert r.code == 2 and "No such command" in r.err


def test_env_defaults(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITMAIL_REPO", str(org.clones["alex"]))
    monkeypatch.setenv("GITMAIL_USER", "alex")
    org.ok("max", "send", "alex", "env test")
    assert run("sync").code == 0
    got = json.loads(run("list", "--json").out)
    assert got["unread"] == 1
    assert os.environ["GITMAIL_USER"] == "alex"


def test_a_message_named_twice_is_one_message(org: Org) -> None:
    """``mark X X`` and ``archive X X`` said "2 messages" for one."""
    m = json.loads(org.ok("max", "send", "alex", "twice", "--json").out)
    org.ok("alex", "sync")
    for args in (["mark", "--read"], ["archive"]):
        r = json.loads(org.ok("alex", *args, m["short_id"], m["id"], "--json").out)
        ids = r.get("ids") or [x.get("id") for x in r.get("messages", [])]
        assert ids == [m["id"]], r


@pytest.mark.parametrize("args, words", [
    (["send", "alex", "a\udcffb"], ["MESSAGE is not valid UTF-8"]),
    (["send", "a\udcffb", "hi"], ["TO is not valid UTF-8"]),
    (["send", "alex", "hi", "--subject", "a\udcffb"], ["--subject is not valid UTF-8"]),
    (["list", "--from", "a\udcffb"], ["--from is not valid UTF-8"]),
    (["search", "hi", "--from", "a\udcffb"], ["--from is not valid UTF-8"]),
    (["list", "--as", "a\udcffb"], ["--as (or $GITMAIL_USER) is not valid UTF-8"]),
])
def test_an_argument_that_is_not_utf8_is_a_usage_error(org: Org, args: list[str], words: list[str]) -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates (``$(printf 'a\\xffb')``); each
    of these was an internal error (exit 70), a send after composing the message. A file path
    may hold such bytes, and is left alone (``--attach`` of such a name is found or not)."""
    before = snapshot(org.clones["max"])
    assert_clean_error(org.as_("max", *args), 2, *words)
    assert snapshot(org.clones["max"]) == before
    r = org.as_("max", "send", "alex", "x", "--attach", "/nonexistent/caf\udce9.csv")
    assert r.code == 11 and "no such file" in r.err, r


def test_a_failed_init_or_rotation_leaves_nothing_behind(org: Org, tmp_path: Path) -> None:
    """``init --email bad`` (exit 6 after a key and a .git were made), ``init`` of an org out
    of reach (a .git and a key left) and ``key rotate`` with the org out of reach (a new
    private key left in the key folder) each fail and leave nothing they made; ``import`` of
    a missing archive recorded what it had seen before it looked for the archive."""
    home = Path(os.environ["GITMAIL_HOME"])
    keys_before = sorted(p.name for p in (home / "keys").iterdir())
    fresh = tmp_path / "fresh"
    r = run("init", "--name", "fresh", "--email", "bad", "--org", org.url, "--repo", str(fresh))
    assert_clean_error(r, 2, "email 'bad' is not local@domain")
    assert not fresh.exists()
    r = run("init", "--name", "fresh", "--org", "git://127.0.0.1:9/none.git", "--repo", str(fresh))
    assert r.code == 9 and not fresh.exists(), r
    assert "cannot reach the org remote" in r.err and "queued mail" not in r.err, r  # nothing was queued
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_clean_error(run("init", "--name", "fresh", "--org", org.url, "--repo", str(afile)), 3, "is a file")
    clone = org.clones["max"]
    url = git("remote", "get-url", "origin", cwd=clone).stdout.strip()
    git("remote", "set-url", "origin", "git://127.0.0.1:9/none.git", cwd=clone)
    try:
        r = org.as_("max", "key", "rotate")
        assert r.code == 9 and "queued mail" not in r.err, r
    finally:
        git("remote", "set-url", "origin", url, cwd=clone)
    assert sorted(p.name for p in (home / "keys").iterdir()) == keys_before
    r = org.as_("max", "import", "--mbox", str(tmp_path / "missing.mbox"))
    assert r.code == 2 and not (clone / ".git" / "gitmail" / "imported").exists(), r


def test_a_failed_init_in_the_users_own_repository_puts_it_back(org: Org, tmp_path: Path) -> None:
    """``init`` in a repository the user already has (a project with its own remote) of an org
    out of reach, and of an org that refuses the registration: it left a remote ``gitmail``,
    ``gitmail.remote`` and fetch refspecs in the user's config (and, once it had fetched,
    ``refs/remotes/gitmail/*``, ``refs/gitmail/*`` and ``.git/gitmail/``). Now the config file
    is byte for byte what it was, and nothing of gitmail's is left."""
    own = tmp_path / "project"
    git("init", "-q", str(own))
    git("remote", "add", "origin", "https://example.invalid/project.git", cwd=own)
    git("config", "user.name", "Someone", cwd=own)
    (own / ".git" / "config").chmod(0o640)
    config = (own / ".git" / "config").read_bytes()
    refs_before = git("for-each-ref", cwd=own).stdout

    def untouched() -> None:
        assert (own / ".git" / "config").read_bytes() == config
        assert (own / ".git" / "config").stat().st_mode & 0o777 == 0o640
        assert git("for-each-ref", cwd=own).stdout == refs_before
        assert not (own / ".git" / "gitmail").exists()

    r = run("init", "--name", "fresh", "--org", "git://127.0.0.1:9/none.git", "--repo", str(own))
    assert r.code == 9, r
    untouched()
    # An org that refuses the registration (a name held by another key), after init had
    # fetched its directory and mail into the repository.
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    r = run("init", "--name", "max", "--org", org.url, "--repo", str(own), "--key", str(other))
    assert r.code != 0 and "Traceback" not in r.err and "max" in r.err, r
    untouched()
    assert run("init", "--name", "fresh", "--org", org.url, "--repo", str(own)).code == 0  # and it can still join


def test_input_given_twice_or_empty_is_refused_not_guessed(org: Org, tmp_path: Path) -> None:
    """A batch line naming a key twice went by the last ({"to": "alex", "to": "max"} went to
    max alone); ``org k=1 k=2`` kept the last; ``--since ''`` was no bound at all."""
    before = snapshot(org.clones["max"])
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"to": "alex", "to": "max", "body": "which?"}\n')
    assert_clean_error(org.as_("max", "send", "--batch", str(batch)), 2, "line 1: key 'to' given twice")
    assert_clean_error(org.as_("max", "org", "packing=true", "packing=false"), 2, "'packing' is given twice")
    assert_clean_error(org.as_("max", "list", "--since", ""), 2, "--since ''")
    assert snapshot(org.clones["max"]) == before


def test_a_sealed_attachment_media_type_follows_the_clear_rule() -> None:
    """The media types inside an encrypted message (its sealed attachments) are held to the
    rule of clear ones (docs/protocol.md §9), by the one function open_message asks."""
    from gitmail.core.model import Message, SealedAttachment
    from gitmail.core.rules import sealed_problem

    opened = Message(**{"from": "max"}, to=["alex"], date="2026-01-01T00:00:00.000000Z")

    def sealed(media_type: str) -> SealedAttachment:
        return SealedAttachment(name="a", media_type=media_type, size=1, sha256="ab" * 32, cipher_oid="cd" * 32)

    assert sealed_problem(opened, [sealed("text/csv")], 100) is None
    for bad in ("text/x\nX-Injected: yes", "text/x; a=b", "text/\x1b[2J", "", "x"):
        assert sealed_problem(opened, [sealed("text/csv"), sealed(bad)], 100) == \
            "attachments.1.media_type is not a media type (type/subtype, RFC 6838)"


def test_init_without_org_does_not_make_a_project_remote_an_org(tmp_path: Path) -> None:
    """``gitmail init --name bob`` in a clone of the user's project: it took the project's
    origin for the org, registered bob as its admin and pushed a gitmail directory into the
    project's repository. Now one line, exit 2, the clone and the project as they were; with
    --org naming it, an org is made there on purpose."""
    project = tmp_path / "project.git"
    git("init", "-q", "--bare", str(project))
    clone = tmp_path / "work"
    git("clone", "-q", str(project), str(clone))
    config = (clone / ".git" / "config").read_bytes()
    r = run("init", "--name", "bob", "--repo", str(clone))
    assert_clean_error(r, 2, f"the remote 'origin' ({project}) holds no gitmail org; to make one there, run "
                             f"'gitmail init --name bob --org {project}'")
    assert git("for-each-ref", cwd=project).stdout == ""
    assert (clone / ".git" / "config").read_bytes() == config
    assert run("init", "--name", "bob", "--org", str(project), "--repo", str(clone)).code == 0
    assert "refs/heads/gitmail/directory" in git("for-each-ref", cwd=project).stdout


def test_init_keeps_the_projects_own_allowed_signers(org: Org, tmp_path: Path) -> None:
    """A project that signs its commits with SSH keys has gpg.ssh.allowedSignersFile in the
    clone's own config: init pointed it at gitmail's file, which copied only the global one, and
    the project's signed commits stopped verifying (git verify-commit exit 1). Now its lines are
    kept in gitmail's file, and stay there on every regeneration."""
    proj = tmp_path / "proj"
    git("init", "-q", str(proj))
    key = tmp_path / "dev_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    signers = tmp_path / "proj_signers"
    signers.write_text(f"dev@example.com {key.with_suffix('.pub').read_text().strip()}\n")
    git("config", "gpg.ssh.allowedSignersFile", str(signers), cwd=proj)
    git("-c", "user.name=dev", "-c", "user.email=dev@example.com", "-c", "gpg.format=ssh",
        "-c", f"user.signingkey={key}", "commit", "-q", "-S", "--allow-empty", "-m", "signed", cwd=proj)
    assert git("verify-commit", "HEAD", cwd=proj, check=False).returncode == 0
    assert run("init", "--name", "proj-dev", "--org", org.url, "--repo", str(proj)).code == 0
    assert git("verify-commit", "HEAD", cwd=proj, check=False).returncode == 0
    run("sync", "--repo", str(proj))  # the file is written again: the lines stay
    assert git("verify-commit", "HEAD", cwd=proj, check=False).returncode == 0


def test_paths_that_look_like_options_are_paths(tmp_path: Path) -> None:
    """`init --org=--shared=all` ran `git init --quiet --bare --shared=all`: the current folder
    became a group-writable bare repository; `--repo=--bare` made it one too. Each value is a
    path now (a folder named so), and the current folder is left alone."""
    from tests.conftest import chdir, run

    here = tmp_path / "here"
    here.mkdir()
    with chdir(here):
        run("init", "--name", "bob", "--org=--shared=all", "--repo", str(tmp_path / "c1"))
        assert not (here / "config").exists() and not (here / "HEAD").exists()
        assert (here / "--shared=all" / "HEAD").is_file()  # the org repo, at that path
        run("init", "--name", "ann", "--org", str(here / "--shared=all"), "--repo=--bare")
        assert not (here / "config").exists() and (here / "--bare" / ".git").is_dir()


@pytest.mark.parametrize("damage", ["garbage", "half"])
def test_a_damaged_cache_is_rebuilt_or_named_never_a_bug(org: Org, damage: str) -> None:
    """A cache file overwritten or cut short (a crash, a backup tool) made list, sync and
    verify exit 70 (internal error: database disk image is malformed). A file that is no
    database is set aside and rebuilt from git, read flags included; damage found later is
    one line naming the cache and what to do (exit 13)."""
    import json as _json

    org.ok("max", "send", "alex", "one", "--plain")
    org.ok("max", "send", "alex", "two", "--plain")
    org.ok("alex", "sync")
    first = _json.loads(org.ok("alex", "list", "--json").out)["messages"][0]["id"]
    org.ok("alex", "read", first[:8])
    [db] = (org.clones["alex"] / ".git" / "gitmail" / "cache").glob("*.sqlite3")
    for extra in db.parent.glob("*.sqlite3-*"):
        extra.unlink()
    data = db.read_bytes()
    db.write_bytes(os.urandom(4096) if damage == "garbage" else data[: len(data) // 2])
    r = org.as_("alex", "list", "--json")
    if r.code == 0:
        got = _json.loads(r.out)
        assert (got["total"], got["unread"]) == (2, 1), got
    else:
        assert r.code == 13 and "is damaged" in r.err and "delete the folder .git/gitmail/cache" in r.err \
            and r.err.count("\n") == 1, r
    if damage == "garbage":
        assert r.code == 0, r


@pytest.mark.parametrize("args", [["list", "-n", "abc"], ["list", "--bogus"], ["send"], ["trace"]])
def test_bad_arguments_are_one_line(org: Org, args: list[str]) -> None:
    """click's own report is four lines (Usage, Try, a blank line, Error) without the
    `gitmail:` every other error starts with; now one line naming where --help is."""
    r = org.as_("alex", *args)
    assert r.code == 2 and r.err.startswith("gitmail: ") and r.err.count("\n") == 1 and "--help" in r.err, r


def test_no_git_on_the_path_is_one_line_not_a_bug(tmp_path: Path) -> None:
    """With no git on PATH every command exited 70 (internal error: FileNotFoundError: 'git')."""
    import subprocess
    import sys

    env = {**os.environ, "PATH": str(tmp_path / "empty")}
    p = subprocess.run([sys.executable, "-m", "gitmail", "list", "--repo", str(tmp_path)], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 8 and p.stderr.count("\n") == 1 and "git is not installed or not on PATH" in p.stderr, p


def test_a_remote_name_that_is_not_text_is_one_line(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """GITMAIL_REMOTE holding bytes that are not UTF-8 ended in exit 70 (UnicodeDecodeError in
    libgit2's ref lookup); one line now, exit 2."""
    monkeypatch.setenv("GITMAIL_REMOTE", "\udcff")
    r = org.as_("alex", "list")
    assert r.code == 2 and "is not a git remote name" in r.err and r.err.count("\n") == 1, r
