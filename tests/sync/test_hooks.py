"""Client hooks: a new-mail notice after git pull / checkout, chaining, core.hooksPath, never failing git."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pygit2
import pytest

from gitmail import hooks as hooks_mod
from gitmail.core.objects import signed_commit
from gitmail.core.repo import open_repo
from tests.sync import forge

from tests.conftest import Org, git, run
from tests.sync.conftest import NetOrg

ID = re.compile(r"Run: gitmail read ([0-9a-f]{8})$")


def code_commit(o: NetOrg, who: str, text: str) -> None:
    """A commit on ``main`` pushed with plain git (the code the org repo also carries)."""
    clone = o.clones[who]
    (clone / "README").write_text(text)
    git("add", "README", cwd=clone)
    git("-c", "user.name=x", "-c", "user.email=x@y", "commit", "-qm", text, cwd=clone)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=clone)


def tracking_main(o: NetOrg, who: str) -> Path:
    clone = o.clones[who]
    # A clone gitmail made fetches only the member's mail refs (docs/protocol.md §3); the
    # developer adds the code branch they work on, as they would in any narrow clone.
    git("config", "--add", "remote.origin.fetch", "+refs/heads/main:refs/remotes/origin/main", cwd=clone)
    git("fetch", "-q", "origin", cwd=clone)
    git("checkout", "-q", "-B", "main", "--track", "origin/main", cwd=clone)
    return clone


def pull(clone: Path) -> "tuple[int, str]":
    p = git("pull", "--ff-only", cwd=clone, check=False)
    return p.returncode, p.stdout + p.stderr


def test_git_pull_prints_a_notice_of_new_mail(net: NetOrg) -> None:
    net.ok("max", "org", "encryption=off")  # subjects in clear (encrypted mail: see below)
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    r = run("hooks", "install", "--repo", str(clone))
    assert r.code == 0 and "post-merge: installed" in r.out and "post-checkout: installed" in r.out, r.err
    sent = net.ok("max", "send", "alex", "Domain research is done. Pick your top 3?", "--json").out
    code_commit(net, "max", "v2")
    code, out = pull(clone)
    assert code == 0, out
    line = next(ln for ln in out.splitlines() if ln.startswith("📬"))
    assert line.startswith('📬 1 new message from max (just now): "Domain research is done. Pick your top 3?"'), line
    m = ID.search(line)
    assert m and m.group(1) in sent
    # Shown once: the next pull with nothing new for alex says nothing.
    code_commit(net, "max", "v3")
    code, out = pull(clone)
    assert code == 0 and "📬" not in out
    # More mail: this time gitmail's Python has indexed alex's inbox before (the first
    # notice did), so git checks the signature in the shell notice (hooks/notice.sh).
    assert (clone / ".git" / "gitmail" / "inbox-refs").is_file()
    net.ok("max", "send", "alex", "second one")
    code_commit(net, "max", "v4")
    code, out = pull(clone)
    assert code == 0 and '📬 1 new message from max (just now): "second one"' in out, out
    # The message is still unread and verified for gitmail itself.
    assert json.loads(net.ok("alex", "list", "--json").out)["unread"] == 2


def test_checkout_notice_and_several_messages(net: NetOrg) -> None:
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    net.ok("alex", "hooks", "install")
    net.join("bob")
    net.ok("max", "send", "alex", "one")
    net.ok("bob", "send", "alex", "two")
    git("fetch", "-q", "origin", cwd=clone)  # plain fetch brings the mail (refspec set by init)
    p = git("checkout", "-b", "topic", cwd=clone, check=False)
    assert p.returncode == 0
    out = p.stdout + p.stderr
    assert "📬 2 new messages from " in out and "max" in out and "bob" in out and "Run: gitmail read" in out
    # A file checkout (flag 0) stays quiet.
    p = git("checkout", "--", "README", cwd=clone, check=False)
    assert p.returncode == 0 and "📬" not in p.stdout + p.stderr


def test_install_respects_hookspath_chains_and_uninstall_restores(net: NetOrg, tmp_path: Path) -> None:
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    hooks = tmp_path / "my-hooks"
    hooks.mkdir()
    git("config", "core.hooksPath", str(hooks), cwd=clone)
    mine = hooks / "post-merge"
    mine.write_text("#!/bin/sh\necho my own post-merge ran\nexit 3\n")
    mine.chmod(0o755)
    r = run("hooks", "install", "--repo", str(clone))
    assert r.code == 0 and "your previous hook runs first" in r.out, r.out
    assert (hooks / "post-merge.gitmail-chained").exists() and (hooks / "post-checkout").exists()
    assert not (clone / ".git" / "hooks" / "post-merge").exists()
    assert run("hooks", "install", "--repo", str(clone)).code == 0  # idempotent
    net.ok("max", "send", "alex", "hi")
    code_commit(net, "max", "v2")
    code, out = pull(clone)
    assert code == 0  # post-merge cannot change git pull's status
    assert "my own post-merge ran" in out and "📬 1 new encrypted message from max" in out
    r = run("hooks", "uninstall", "--repo", str(clone))
    assert r.code == 0 and "post-merge: removed (your previous hook is back)" in r.out
    assert "post-checkout: removed" in r.out
    assert mine.read_text().startswith("#!/bin/sh\necho my own") and not (hooks / "post-checkout").exists()
    assert not (hooks / "post-merge.gitmail-chained").exists()
    r = run("hooks", "uninstall", "--repo", str(clone))
    assert "post-merge: left alone (not gitmail's)" in r.out and "post-checkout: not installed" in r.out


def test_a_users_hook_that_mentions_gitmail_is_still_theirs(tmp_path: Path) -> None:
    """A user's post-merge saying "runs after our gitmail-hook setup" in a comment was taken for
    gitmail's: install overwrote it without a backup and uninstall deleted it. Now only a line
    beginning "# gitmail-hook: " (what gitmail writes) makes a hook gitmail's."""
    repo = tmp_path / "r"
    git("init", "-q", str(repo))
    mine = repo / ".git" / "hooks" / "post-merge"
    text = "#!/bin/sh\n# runs after our gitmail-hook setup\necho MYDEPLOY\n"
    mine.write_text(text)
    mine.chmod(0o755)
    assert run("hooks", "install", "--repo", str(repo)).code == 0
    assert (repo / ".git" / "hooks" / "post-merge.gitmail-chained").read_text() == text
    assert run("hooks", "uninstall", "--repo", str(repo)).code == 0
    assert mine.read_text() == text


def test_hooks_never_fail_git(net: NetOrg, tmp_path: Path) -> None:
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    net.ok("alex", "hooks", "install")
    net.ok("max", "send", "alex", "hi")
    # A broken cache and no identity: the hook keeps quiet, git succeeds.
    for f in (clone / ".git" / "gitmail" / "cache").glob("*.sqlite3*"):
        f.write_bytes(b"garbage")
    git("config", "--unset", "gitmail.user", cwd=clone)
    code_commit(net, "max", "v2")
    code, out = pull(clone)
    assert code == 0 and "📬" not in out and "Traceback" not in out, out
    # A plain repo with the hooks but no gitmail at all.
    plain = tmp_path / "plain"
    git("clone", "-q", net.url, str(plain))
    assert run("hooks", "install", "--repo", str(plain)).code == 0
    p = git("checkout", "-b", "x", cwd=plain, check=False)
    assert p.returncode == 0 and p.stderr.strip() == "Switched to a new branch 'x'"


def test_hooks_install_outside_a_repo(tmp_path: Path) -> None:
    r = run("hooks", "install", "--repo", str(tmp_path))
    assert r.code == 3 and r.err.startswith("gitmail: not a git repository") and r.err.count("\n") == 1


def without_python(clone: Path) -> None:
    """Point the installed hooks at a Python that does not exist: only the shell notice can speak."""
    for name in ("post-merge", "post-checkout"):
        hook = clone / ".git" / "hooks" / name
        hook.write_text(hook.read_text().replace(sys.executable, "/nonexistent/python3"))


def test_shell_notice_verifies_with_git_and_defers_the_rest(unguarded: NetOrg, tmp_path: Path) -> None:
    o = unguarded
    code_commit(o, "max", "v1")
    clone = tracking_main(o, "alex")
    o.ok("alex", "hooks", "install")
    o.ok("alex", "list")  # indexes the inbox: writes .git/gitmail/inbox-refs
    without_python(clone)
    # Encrypted by default: the notice names the verified sender, never the subject.
    sent = o.ok("max", "send", "alex", "the quarterly numbers", "--json").out
    code_commit(o, "max", "v2")
    code, out = pull(clone)
    line = next(ln for ln in out.splitlines() if ln.startswith("📬"))
    assert line.startswith("📬 1 new encrypted message from max (just now)  Run: gitmail read "), line
    m = ID.search(line)
    assert m and m.group(1) in sent and "quarterly" not in out
    # Two more, one in clear: counted from where the last notice stopped.
    o.ok("max", "send", "alex", "plain words", "--plain")
    o.ok("max", "send", "alex", "still secret")
    code_commit(o, "max", "v3")
    code, out = pull(clone)
    assert "📬 2 new messages from max; newest (just now) encrypted  Run: gitmail read" in out, out
    # A commit signed by a key the directory does not know: git says so, the shell
    # notice stays silent and leaves it to gitmail (which has no Python here).
    mclone = o.clones["max"]
    o.ok("max", "sync")
    bad = forge.signed(mclone, "alex", "max", forge.stranger_key(tmp_path), body="pay this invoice")
    assert forge.push(mclone, bad, "refs/heads/gitmail/mail/alex/max")[0] == 0
    code_commit(o, "max", "v4")
    code, out = pull(clone)
    assert code == 0 and "📬" not in out and "invoice" not in out, out
    # With Python back, an unsigned one: gitmail's full check flags both instead of announcing them.
    hooks_mod.install(clone)
    o.ok("max", "sync")
    worse = forge.unsigned(mclone, "alex", "max")
    assert forge.push(mclone, worse, "refs/heads/gitmail/mail/alex/max")[0] == 0
    code_commit(o, "max", "v5")
    code, out = pull(clone)
    assert code == 0 and "⚠️  2 new messages failed verification. Run: gitmail verify" in out, out
    assert "📬" not in out


def test_shell_notice_hands_big_batches_and_decryption_to_gitmail(net: NetOrg) -> None:
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    net.ok("alex", "hooks", "install")
    net.ok("alex", "list")
    for i in range(11):  # more than the shell notice checks one by one
        net.ok("max", "send", "alex", f"batch {i}", "--plain")
    code_commit(net, "max", "v2")
    without_python(clone)
    code, out = pull(clone)
    assert code == 0 and "📬" not in out, out
    hooks_mod.install(clone)
    net.ok("max", "send", "alex", "one more", "--plain")
    code_commit(net, "max", "v3")
    code, out = pull(clone)
    assert '📬 12 new messages from max; newest (just now): "one more"  Run: gitmail read' in out, out
    # gitmail.noticeSubjects=decrypt: encrypted subjects are decrypted (by gitmail's Python).
    git("config", "gitmail.noticeSubjects", "decrypt", cwd=clone)
    net.ok("alex", "list")
    net.ok("max", "send", "alex", "decrypted for the notice")
    code_commit(net, "max", "v4")
    code, out = pull(clone)
    assert '📬 1 new message from max (just now): "decrypted for the notice"' in out, out
    git("config", "gitmail.noticeSubjects", "loudly", cwd=clone)
    r = net.as_("alex", "hooks", "install")
    assert r.code == 2 and r.err == "gitmail: gitmail.noticeSubjects must be 'clear' or 'decrypt', not 'loudly'\n"


def test_shell_notice_speaks_only_for_the_identity_it_was_written_for(net: NetOrg) -> None:
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    net.ok("alex", "hooks", "install")
    net.ok("alex", "list")  # inbox-refs for alex
    without_python(clone)
    git("config", "gitmail.user", "max", cwd=clone)  # the clone now acts as max
    net.ok("max", "send", "alex", "for alex only", "--plain")
    code_commit(net, "max", "v2")
    code, out = pull(clone)
    assert code == 0 and "📬" not in out, out
    git("config", "gitmail.user", "alex", cwd=clone)
    net.ok("max", "send", "alex", "now alex again", "--plain")
    code_commit(net, "max", "v3")
    code, out = pull(clone)
    assert '📬 2 new messages from max; newest (just now): "now alex again"' in out, out


def test_python_fallback_never_imports_code_from_the_work_tree(net: NetOrg, tmp_path: Path) -> None:
    """A member who pushes a gitmail/ package on a code branch gets nothing run on other clones."""
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    net.ok("alex", "hooks", "install")  # no inbox-refs yet: the notice goes to Python
    mine = net.clones["max"]
    marker = tmp_path / "pwned"
    (mine / "gitmail").mkdir()
    for mod in ("__init__.py", "hooks.py", "__main__.py"):
        (mine / "gitmail" / mod).write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    git("add", "gitmail", cwd=mine)
    net.ok("max", "send", "alex", "hello", "--plain")
    code_commit(net, "max", "v2")  # commits README and the gitmail/ folder
    code, out = pull(clone)
    assert code == 0 and (clone / "gitmail" / "hooks.py").is_file()
    assert not marker.exists(), "the hook ran code from the work tree"
    assert '📬 1 new message from max (just now): "hello"' in out, out


# -- found in review: what the shell notice must not announce, and how it counts ----------


def shell_only(o: NetOrg) -> Path:
    """alex's clone tracking main, hooks installed, inbox indexed, Python out of the hooks' reach."""
    code_commit(o, "max", "v1")
    clone = tracking_main(o, "alex")
    o.ok("alex", "hooks", "install")
    o.ok("alex", "list")  # writes .git/gitmail/inbox-refs
    without_python(clone)
    return clone


def test_shell_notice_refuses_a_signed_commit_replayed_onto_another_mailbox(unguarded: NetOrg) -> None:
    o = unguarded
    clone = shell_only(o)
    o.ok("max", "send", "max", "SECRET note: layoffs friday", "--plain")  # max's note to himself
    mclone = o.clones["max"]
    o.ok("max", "sync")
    note = forge.tip(mclone, "gitmail/mail/max/max")
    assert note and forge.push(mclone, note, "refs/heads/gitmail/mail/alex/max")[0] == 0  # replayed
    assert forge.push(mclone, note, "refs/heads/gitmail/mail/alex/x/max")[0] == 0  # and nested deeper
    code_commit(o, "max", "v2")
    code, out = pull(clone)
    assert code == 0 and "📬" not in out and "layoffs" not in out, out
    assert "MISFILED? claims max" in o.ok("alex", "list").out


def test_shell_notice_needs_a_real_message_id_and_strips_control_characters(unguarded: NetOrg) -> None:
    """A good message whose subject holds terminal controls: announced, the controls made visible.
    The same commit with its Message-Id trailer replaced is not announced (nor printed)."""
    from gitmail.core import directory as dirmod
    from gitmail.core.store import author_of, commit_message, write_message_commit

    o = unguarded
    clone = shell_only(o)
    mclone = o.clones["max"]
    r = open_repo(mclone)
    pg = r.pg
    d = dirmod.load(r)
    m = forge.message("max", ["alex"], "hello")
    m.subject = "hi \u009b2J\x1b[H there"
    m.id = m.compute_id()
    o.ok("max", "sync")
    p = forge.tip(mclone, "gitmail/mail/alex/max")
    c = write_message_commit(pg, m, d.members["max"], forge.key_of("max"), p)
    assert forge.push(mclone, c, "refs/heads/gitmail/mail/alex/max")[0] == 0
    code_commit(o, "max", "v2")
    code, out = pull(clone)
    line = next(ln for ln in out.splitlines() if ln.startswith("📬"))
    assert "\x1b" not in line and "\u009b" not in line and '"hi \\x9b2J\\x1b[H there"' in line, repr(line)
    # Signed by max, but the Message-Id trailer is no id: not announced (gitmail calls it malformed).
    m2 = forge.message("max", ["alex"], "hi")
    text = commit_message(m2).replace(f"<{m2.id}@gitmail>", "<\x1b[2J\x1b[H@gitmail>")
    name, email = author_of(d.members["max"])
    sig = pygit2.Signature(name, email)
    tb = pg.TreeBuilder()
    tb.insert("message.json", pg.create_blob(m2.to_blob()), pygit2.enums.FileMode.BLOB)
    o.ok("max", "sync")
    bad = signed_commit(pg, sig, sig, text, tb.write(), [c], forge.key_of("max").sign)
    assert forge.push(mclone, bad, "refs/heads/gitmail/mail/alex/max")[0] == 0
    code_commit(o, "max", "v3")
    code, out = pull(clone)
    assert code == 0 and "📬" not in out and "\x1b" not in out, repr(out)


def test_shell_notice_defers_when_the_directory_changed_since_inbox_refs(net: NetOrg) -> None:
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    net.ok("alex", "hooks", "install")
    net.ok("alex", "list")  # inbox-refs: no group yet
    net.ok("max", "group", "create", "ops", "max", "alex")
    git("fetch", "-q", "origin", cwd=clone)
    net.ok("alex", "members")  # verifies the new directory without indexing mail
    net.ok("max", "send", "team:ops", "deploy at 5", "--plain")
    code_commit(net, "max", "v2")
    code, out = pull(clone)  # the shell defers: gitmail's Python knows alex is in ops now
    assert '📬 1 new message from max (just now): "deploy at 5"' in out, out


def test_shell_notice_counts_one_message_on_two_inbox_refs_once(net: NetOrg) -> None:
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    net.ok("max", "group", "create", "ops", "max", "alex")
    net.ok("max", "send", "alex", "first a", "--plain")
    net.ok("max", "send", "team:ops", "first b", "--plain")
    net.ok("alex", "sync")
    net.ok("alex", "hooks", "install")
    net.ok("alex", "list")
    without_python(clone)
    net.ok("max", "send", "alex", "team:ops", "one message", "--plain")
    code_commit(net, "max", "v2")
    code, out = pull(clone)
    assert '📬 1 new message from max (just now): "one message"' in out, out


def test_hooks_are_not_installed_into_a_folder_the_project_tracks(org: Org) -> None:
    """core.hooksPath=.husky (the project's own hooks, committed with it): install wrote there
    with no word, so `git status` showed gitmail's hooks (with this machine's Python path) as
    changes, `git commit -a` took them into the project and checkouts of branches that changed
    them stopped. Refused now, exit 2 and nothing written; --force installs anyway."""
    clone = org.clones["alex"]
    husky = clone / ".husky"
    husky.mkdir()
    (husky / "post-checkout").write_text("#!/bin/sh\necho project hook\n")
    (husky / "post-checkout").chmod(0o755)
    git("config", "core.hooksPath", ".husky", cwd=clone)
    before = sorted(p.name for p in husky.iterdir())
    r = run("hooks", "install", "--repo", str(clone))
    assert r.code == 2 and "inside the work tree" in r.err and r.err.count("\n") == 1, r
    assert sorted(p.name for p in husky.iterdir()) == before
    assert run("hooks", "install", "--force", "--repo", str(clone)).code == 0
    assert "post-merge" in {p.name for p in husky.iterdir()}


def test_a_flood_of_mail_is_counted_not_checked_during_a_pull(net: NetOrg, monkeypatch: pytest.MonkeyPatch) -> None:
    """5,000 messages from one member made the developer's next `git pull` check every one of
    them inline (2.9 s, 100 MB, growing with the flood). Past NOTICE_CHECK_MAX new commits the
    notice counts them with one git rev-list and says to run `gitmail sync`; nothing is
    checked or cached until then (here the bound is lowered to 5, with 7 messages)."""
    from gitmail.core import cache

    monkeypatch.setattr(hooks_mod, "NOTICE_CHECK_MAX", 5)
    clone = net.clones["alex"]
    net.ok("alex", "sync")
    for i in range(7):
        net.ok("max", "send", "alex", f"flood {i}", "--plain")
    git("fetch", "-q", "origin", cwd=clone)
    before = cache.max_rowid(cache.connect(open_repo(clone), "alex"))
    text = hooks_mod.notice(clone)
    assert text is not None and text.startswith("📬 7 new messages arrived: too many to check") \
        and "gitmail sync" in text, text
    assert cache.max_rowid(cache.connect(open_repo(clone), "alex")) == before
    net.ok("alex", "sync")
    assert json.loads(net.ok("alex", "list", "--json").out)["unread"] == 7
    assert hooks_mod.notice(clone) is None  # nothing new since
