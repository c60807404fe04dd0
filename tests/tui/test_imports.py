"""The TUI knows the daemon only through its control socket: from `node/` it imports `node.rpc` alone.

The design's rule (`tui` never imports daemon internals) is checked on the source, so it holds for
imports inside functions and under TYPE_CHECKING too, not just for what one test run happens to load.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TUI = REPO / "tui"


def imported_modules(source: str, package: str) -> list[str]:
    """Every module `source` imports, absolute; `package` is the file's own package (for `from .`)."""
    found: list[str] = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.Import):
            found += [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - n.level + 1])
                module = f"{base}.{n.module}" if n.module else base
            else:
                module = n.module or ""
            # `from node import rpc` imports node.rpc, not node itself.
            found += [f"{module}.{a.name}" for a in n.names] if module in ("node", "protocols") else [module]
    return found


def forbidden(module: str) -> bool:
    """A daemon-side module: anything of node/ outside node.rpc, and protocols/ (the design lists neither)."""
    top = module.split(".")[0]
    if top == "protocols":
        return True
    if top == "node":
        return not (module == "node.rpc" or module.startswith("node.rpc."))
    return False


def tui_files() -> list[Path]:
    return sorted(TUI.rglob("*.py"))


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(REPO).parent.parts)


def test_tui_imports_nothing_of_the_daemon_but_the_rpc_client() -> None:
    files = tui_files()
    assert TUI / "client.py" in files  # the walk reads the package it guards
    offenders: list[str] = []
    seen: set[str] = set()
    for path in files:
        modules = imported_modules(path.read_text(), package_of(path))
        seen.update(modules)
        offenders += [f"{path.relative_to(REPO)}: {m}" for m in modules if forbidden(m)]
    assert offenders == []
    assert "node.rpc" in seen  # the one allowed way in is still the one used


@pytest.mark.parametrize(
    ("source", "package", "expected"),
    [
        ("from node.rpc import Connection", "tui", False),
        ("import node.rpc.connection", "tui", False),
        ("from node import rpc", "tui", False),
        ("from keys.peerid import x", "tui", False),
        ("from .state import DaemonState", "tui", False),
        ("from node.store import Store", "tui", True),
        ("import node.daemon", "tui", True),
        ("from node import store", "tui", True),
        ("import node", "tui", True),
        ("from node.rpcx import y", "tui", True),
        ("from protocols.codec import encode", "tui", True),
        ("def f():\n    from node.config import load\n", "tui", True),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from node.home import Home\n", "tui", True),
    ],
)
def test_the_check_tells_allowed_from_forbidden(source: str, package: str, expected: bool) -> None:
    assert any(forbidden(m) for m in imported_modules(source, package)) is expected
