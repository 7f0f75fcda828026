"""The package's layers: every import runs downwards, no circles, no front-end imports another.

Layers, bottom up (gitmail/__init__.py documents them): errors and git; core
(the protocol); hookscripts and api (the library); the front-ends hooks,
claude, mcp and guard; cli on top (it dispatches to every front-end). Every
import counts, lazy ones inside functions and TYPE_CHECKING ones included.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "gitmail"
LAYERS = [
    ("gitmail.errors", "gitmail.git", "gitmail.rundir"),
    ("gitmail.core",),
    ("gitmail.hookscripts", "gitmail.api"),
    ("gitmail.hooks", "gitmail.claude", "gitmail.mcp", "gitmail.guard"),
    ("gitmail.cli", "gitmail.__main__"),
]
FRONT_ENDS = LAYERS[3]


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    found = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(anchor[: len(anchor) - (node.level - 1)] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {n: _imports(n, p, set(mods)) for n, p in mods.items()}


def _group(module: str, groups: tuple[str, ...]) -> str | None:
    return next((g for g in groups if module == g or module.startswith(g + ".")), None)


def _layer(module: str) -> int | None:
    return next((i for i, layer in enumerate(LAYERS) if _group(module, layer)), None)


def test_every_module_has_a_layer() -> None:
    assert [m for m in _modules() if m != "gitmail" and _layer(m) is None] == []


def test_imports_run_downwards() -> None:
    up = [(a, b) for a, deps in _graph().items() for b in deps
          if b != "gitmail" and a != "gitmail" and (_layer(b) or 0) > (_layer(a) or 0)]
    assert up == []


def test_no_front_end_imports_another() -> None:
    cross = [(a, b) for a, deps in _graph().items() for b in deps
             if _group(a, FRONT_ENDS) and _group(b, FRONT_ENDS) and _group(a, FRONT_ENDS) != _group(b, FRONT_ENDS)]
    assert cross == []


def test_no_import_circles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert circles == []


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The walker sees lazy and TYPE_CHECKING imports (the checks above are not vacuous)."""
    f = tmp_path / "m.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gitmail.cli import main\n"
                 "def g():\n    from gitmail.api.send import send\n")
    assert _imports("gitmail.core.m", f, {"gitmail.cli", "gitmail.cli.main", "gitmail.api.send"}) == {
        "gitmail.cli", "gitmail.cli.main", "gitmail.api.send"}


_SQL = re.compile(r"\s*(SELECT |INSERT (OR \w+ )?INTO |UPDATE \w+ SET |DELETE FROM |CREATE (TABLE|INDEX|VIRTUAL|TRIGGER) |"
                  r"DROP |ALTER TABLE |PRAGMA )")


def _sql_strings(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _SQL.match(node.value):
                out.append(node.value)
        elif isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany", "executescript"):
            out.append(f"<{node.attr} call>")
    return out


def test_all_sql_lives_in_the_cache() -> None:
    """Every SQL statement (and every cursor call) is in gitmail/core/cache.py (issue #11)."""
    home = PKG / "core" / "cache.py"
    outside = {str(p.relative_to(PKG)): _sql_strings(p) for p in PKG.rglob("*.py") if p != home}
    assert {k: v for k, v in outside.items() if v} == {}
    assert _sql_strings(home), "the check sees the cache's own SQL (it is not vacuous)"


def test_one_history_walker() -> None:
    """Walks down a first-parent line go through core/objects.first_parent_line (issue #11):
    no hand-written ``parent_ids[0]`` step and no ``pygit2.Walker`` elsewhere."""
    home = PKG / "core" / "objects.py"
    pattern = re.compile(r"parent_ids\[0\]|\.walk\(|Walker\(")
    outside = {str(p.relative_to(PKG)): pattern.findall(p.read_text()) for p in PKG.rglob("*.py") if p != home}
    assert {k: v for k, v in outside.items() if v} == {}
    assert "def first_parent_line(" in home.read_text()
