"""History problems found while verifying (``.git/gitmail/problems.json``; local, never pushed).

A JSON object: key (``"directory"``, or a mailbox path) -> list of one-line
problems (a rewritten ref, a rejected directory commit). ``gitmail sync`` and
``gitmail verify`` report them. Kept out of :mod:`gitmail.core.directory` so
that reading it needs no pydantic or pygit2.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gitmail.core.repo import Repo

FILE = "problems.json"


def load(repo: "Repo") -> dict[str, list[str]]:
    """Every recorded problem, by key."""
    path = repo.data_dir / FILE
    return json.loads(path.read_text()) if path.exists() else {}


def record(repo: "Repo", key: str, probs: list[str]) -> None:
    """Replace the problems of ``key`` (an empty list clears them)."""
    path = repo.data_dir / FILE
    data = load(repo)
    if probs:
        data[key] = probs
    else:
        data.pop(key, None)
    from gitmail.core.files import write_atomic

    write_atomic(path, json.dumps(data, indent=1, ensure_ascii=False))
