"""Every public function and class of orchestration/ (every .py below it: engine, benches,
domain, checks, interop) and of the protocol message modules has a docstring (issue 13
item 7: shapes, units, errors raised, source).

The scan is ast-based; a module listed here that gains an undocumented public name fails
this test with the file:line of each."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKED = sorted(
    list((REPO / "orchestration").rglob("*.py"))
    + [REPO / "testbed" / m for m in ("aodv/messages.py", "mip/messages.py", "diameter/message.py",
                                      "diameter/avps.py", "diameter/nasreq.py", "common/extensions.py")])


def undocumented(source: str, label: str) -> list[str]:
    """``label:line name`` of each public def/class (module level or in a public class)
    without a docstring."""
    out: list[str] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for n in ast.iter_child_nodes(node):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith("_"):
                if not ast.get_docstring(n):
                    out.append(f"{label}:{n.lineno} {prefix}{n.name}")
                if isinstance(n, ast.ClassDef):
                    walk(n, f"{prefix}{n.name}.")

    walk(ast.parse(source), "")
    return out


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: str(p.relative_to(REPO)))
def test_public_names_are_documented(path: Path) -> None:
    assert undocumented(path.read_text(), str(path.relative_to(REPO))) == []


def test_the_scan_finds_an_undocumented_method_and_ignores_private_ones() -> None:
    src = 'class A:\n    """doc"""\n    def f(self): pass\n    def _g(self): pass\ndef h():\n    """doc"""\n'
    assert undocumented(src, "x.py") == ["x.py:3 A.f"]
