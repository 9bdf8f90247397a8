"""No module of the package imports click at run time.

Recent typer releases vendor their own copy of click and no longer install it, so on a fresh
base install (newest typer) ``import click`` fails and takes every ``mlimaging`` command with
it, while the test environment (Flower pins an older typer that still depends on click) would
not notice. Imports under ``if TYPE_CHECKING:`` are fine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mlimaging

SRC = Path(mlimaging.__file__).parent


def _runtime_click_imports(tree: ast.AST) -> list[int]:
    lines: list[int] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, guarded)
            return
        if not guarded:
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "click" for a in node.names):
                lines.append(node.lineno)
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "click":
                lines.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return lines


def test_the_scanner_finds_a_runtime_import_and_ignores_a_type_checking_one():
    code = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import click\ndef f():\n    import click.core\n"
    assert _runtime_click_imports(ast.parse(code)) == [5]


def test_no_module_imports_click_at_run_time():
    found = [f"{p.relative_to(SRC)}:{line}" for p in sorted(SRC.rglob("*.py"))
             for line in _runtime_click_imports(ast.parse(p.read_text()))]
    assert found == [], f"runtime `import click` (use typer's API, or import it under TYPE_CHECKING): {found}"
