"""gitmail: a mailbox that lives in git.

The public API is :mod:`gitmail.api` and exactly the names in its ``__all__``
(``send``, ``mailbox``, ``read``, ...), also reachable here as ``gitmail.send``
and so on (loaded on first use, so ``import gitmail`` stays cheap). The
formats are defined in :mod:`gitmail.core.model` and specified in
docs/protocol.md.

Layers, each importing only those below it (tests/test_layout.py checks this):
``errors``, ``git``, ``rundir`` -> ``core`` (the protocol) -> ``hookscripts`` and ``api``
(the library) -> the front-ends ``hooks`` (git hooks), ``claude`` (Claude
Code hooks), ``mcp`` (MCP server), ``guard`` (server guard) -> ``cli``, which
dispatches to all of them.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing would cost the CLI launcher's start-up
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    import importlib
    import importlib.util

    if name.startswith("_") or importlib.util.find_spec(f"gitmail.{name}") is not None:
        raise AttributeError(name)  # a submodule: let the import system load it
    api = importlib.import_module("gitmail.api")
    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'gitmail' has no attribute {name!r}")
