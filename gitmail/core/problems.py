"""History problems found while verifying (``.git/gitmail/problems.json``; local, never pushed).

A JSON object: key (``"directory"``, or a mailbox or packed path) -> list of one-line
problems (a rewritten ref, a rejected directory commit). ``gitmail sync`` and
``gitmail verify`` report them every time, for as long as they stand: a mailbox's
until its next ingest accepts what the org repo holds (a rewrite reported once and
then never again left a member reading an old copy without knowing it). Kept out of
:mod:`gitmail.core.directory` so that reading it needs no pydantic or pygit2.
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
    record_all(repo, {key: probs})


def record_all(repo: "Repo", changes: dict[str, list[str]]) -> None:
    """Replace the problems of each key of ``changes`` (an empty list clears them), in one
    write, and none when nothing changes."""
    path = repo.data_dir / FILE
    data = load(repo)
    for key, probs in changes.items():
        if probs:
            data[key] = probs
        else:
            data.pop(key, None)
    from gitmail.core.files import write_atomic

    if data or path.exists():
        write_atomic(path, json.dumps(data, indent=1, ensure_ascii=False), only_if_changed=True)
