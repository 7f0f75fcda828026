"""gitmail's LFS pointer rule against the stock git-lfs client (``git lfs pointer --check``).

A message tree carries a ``.gitattributes`` line, so an auditor who checks a mailbox out with
git-lfs gets the object each pointer names. gitmail must never read as a pointer a blob that
git-lfs would not (it would show the object where the auditor sees the pointer text), nor read
one differently. Its rule is the form it writes, byte for byte; these tests draw pointers with
the deviations the spec and git-lfs's parser know (extension lines, unknown keys, CRLF, leading
zeros, upper-case hex, missing or repeated keys, whitespace, huge sizes) and ask git-lfs.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.core import lfs

pytestmark = pytest.mark.skipif(shutil.which("git-lfs") is None, reason="needs the git-lfs client")

OID = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393"


def git_lfs_reads(data: bytes) -> bool:
    """Whether ``git lfs pointer --check`` takes ``data`` for a pointer (exit 0; 1: not one)."""
    p = subprocess.run(["git", "lfs", "pointer", "--check", "--stdin"], input=data, capture_output=True)
    assert p.returncode in (0, 1), p.stderr
    return p.returncode == 0


# One deviation each: (what it changes, a function of the pointer's lines -> lines or text).
DEVIATIONS: list[tuple[str, object]] = [
    ("old version", lambda ls: ["version https://hawser.github.com/spec/v1", *ls[1:]]),
    ("other version", lambda ls: [f"version {lfs.POINTER_VERSION}/", *ls[1:]]),
    ("upper-case oid", lambda ls: [ls[0], ls[1].upper().replace("OID SHA256", "oid sha256"), *ls[2:]]),
    ("short oid", lambda ls: [ls[0], ls[1][:-1], *ls[2:]]),
    ("sha1 oid", lambda ls: [ls[0], f"oid sha1:{OID[:40]}", *ls[2:]]),
    ("leading zero", lambda ls: [*ls[:2], ls[2].replace("size ", "size 0")]),
    ("signed size", lambda ls: [*ls[:2], ls[2].replace("size ", "size +")]),
    ("negative size", lambda ls: [*ls[:2], "size -1"]),
    ("size past int64", lambda ls: [*ls[:2], "size 9223372036854775808"]),
    ("two spaces", lambda ls: [ls[0], ls[1].replace(" ", "  ", 1), *ls[2:]]),
    ("trailing space", lambda ls: [*ls[:2], ls[2] + " "]),
    ("extension line", lambda ls: [ls[0], f"ext-0-foo sha256:{'b' * 64}", *ls[1:]]),
    ("odd extension name", lambda ls: [ls[0], f"ext-1-a_B! sha256:{'c' * 64}", *ls[1:]]),
    ("unknown key, sorted", lambda ls: [ls[0], "foo bar", *ls[1:]]),
    ("unknown key, last", lambda ls: [*ls, "zz top"]),
    ("empty value", lambda ls: [*ls, "zz "]),
    ("keys swapped", lambda ls: [ls[0], ls[2], ls[1]]),
    ("key twice", lambda ls: [*ls[:2], ls[1], ls[2]]),
    ("no size", lambda ls: ls[:2]),
    ("no oid", lambda ls: [ls[0], ls[2]]),
    ("CRLF", lambda ls: "\r\n".join(ls) + "\r\n"),
    ("no final LF", lambda ls: "\n".join(ls)),
    ("blank line after", lambda ls: "\n".join(ls) + "\n\n"),
    ("blank line before", lambda ls: "\n" + "\n".join(ls) + "\n"),
    ("space before", lambda ls: " " + "\n".join(ls) + "\n"),
]


@st.composite
def pointers(draw: st.DrawFn) -> bytes:
    """A canonical pointer with up to two deviations drawn (about a third are canonical)."""
    size = draw(st.one_of(st.integers(0, 10**6), st.integers(0, lfs.MAX_SIZE)))
    doc: object = lfs.format_pointer(OID, size).decode().splitlines()
    for _, change in draw(st.lists(st.sampled_from(DEVIATIONS), max_size=2)):
        if isinstance(doc, list):
            try:
                doc = change(doc)  # type: ignore[operator]
            except IndexError:  # a line an earlier deviation took away: this one does not apply
                pass
    return ("\n".join(doc) + "\n" if isinstance(doc, list) else str(doc)).encode()


canonical = st.builds(lambda size: lfs.format_pointer(OID, size), st.integers(0, lfs.MAX_SIZE))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(pointers(), canonical))
def test_what_gitmail_reads_as_a_pointer_git_lfs_reads_as_one(data: bytes) -> None:
    got = lfs.parse_pointer(data)
    if got is not None:
        assert data == lfs.format_pointer(*got)  # the one form gitmail writes
        assert git_lfs_reads(data), data


@pytest.mark.parametrize("name, change", DEVIATIONS, ids=[n for n, _ in DEVIATIONS])
def test_each_deviation_alone_is_no_pointer_to_gitmail(name: str, change: object) -> None:
    """Each deviation from the written form, alone, is refused (whatever git-lfs makes of it)."""
    doc = change(lfs.format_pointer(OID, 12345).decode().splitlines())  # type: ignore[operator]
    data = ("\n".join(doc) + "\n" if isinstance(doc, list) else str(doc)).encode()
    assert lfs.parse_pointer(data) is None, name


def test_every_form_gitmail_writes_is_read_back_and_by_git_lfs() -> None:
    for size in (0, 1, 12345, 2**31, lfs.MAX_SIZE):
        data = lfs.format_pointer(OID, size)
        assert lfs.parse_pointer(data) == (OID, size)
        assert git_lfs_reads(data)
    with pytest.raises(Exception, match="cannot be named by a pointer"):
        lfs.format_pointer(OID, lfs.MAX_SIZE + 1)


def test_forms_gitmail_read_before_and_reads_no_more() -> None:
    """The earlier parser took any sorted lower-case key and extension lines. The first two are
    no pointer to git-lfs (so gitmail fetched an object where an auditor's checkout shows the
    pointer text); an extension line makes the stored object a transformed file, which git-lfs
    smudges through the extension and gitmail would show as stored."""
    unknown = f"version {lfs.POINTER_VERSION}\nfoo bar\noid sha256:{OID}\nsize 1\n".encode()
    empty = f"version {lfs.POINTER_VERSION}\noid sha256:{OID}\nsize 1\nzz \n".encode()
    ext = f"version {lfs.POINTER_VERSION}\next-0-foo sha256:{'b' * 64}\noid sha256:{OID}\nsize 1\n".encode()
    assert not git_lfs_reads(unknown) and not git_lfs_reads(empty) and git_lfs_reads(ext)
    assert lfs.parse_pointer(unknown) is lfs.parse_pointer(empty) is lfs.parse_pointer(ext) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1100))
def test_any_bytes_are_a_pointer_or_none_and_never_an_error(data: bytes) -> None:
    got = lfs.parse_pointer(data)
    assert got is None or data == lfs.format_pointer(*got)
