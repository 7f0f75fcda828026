"""One table of exit codes (gitmail/errors.py EXIT_CODES): every error uses it, every doc carries it verbatim."""

from __future__ import annotations

import re
from pathlib import Path

import gitmail.errors as errors
from gitmail.errors import EXIT_CODES, GitmailError, exit_code_table

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"<!-- exit codes: generated .*? -->\n(.*?)<!-- end of generated exit codes -->", re.S)


def _subclasses(cls: type[GitmailError]) -> list[type[GitmailError]]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def test_every_error_has_a_documented_exit_code() -> None:
    import gitmail.core.crypto  # noqa: F401 - every module that defines errors is loaded
    import gitmail.errors  # noqa: F401

    missing = {c.__name__: c.exit_code for c in _subclasses(GitmailError) if c.exit_code not in EXIT_CODES}
    assert missing == {}


def test_errors_are_defined_only_in_errors_py() -> None:
    import gitmail.core.crypto  # noqa: F401

    outside = [c.__qualname__ for c in _subclasses(GitmailError) if c.__module__ != errors.__name__]
    assert outside == []


def test_docs_carry_the_generated_table() -> None:
    table = exit_code_table()
    for doc in ("protocol.md", "json.md"):
        found = BLOCK.findall((DOCS / doc).read_text())
        assert found == [table], f"docs/{doc}: regenerate with python -m gitmail.errors"
