"""Fixtures for the trust tests: the real ``git daemon`` orgs of tests/sync (with and without the guard)."""

from tests.sync.conftest import guard_runtime, net, unguarded  # noqa: F401  (pytest fixtures)
