"""Layering of testbed/ (issue 13): no module of one agent folder is shared by two others
(shared code lives in common/ or a protocol library), libraries never import agents, and
the import graph has no cycle.

Agent folders: access, aodv, mip, mn, msm, sg. Protocol libraries the agents build on:
common (shared pieces), tunnel (the IP-IP data path: userspace, tc-BPF, kernel) and
diameter (the RFC 6733 stack; its server and client run inside access and msm agents)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
AGENTS = {"access", "aodv", "mip", "mn", "msm", "sg"}
LIBRARIES = {"common", "tunnel", "diameter"}


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run (also inside functions), not those under ``if TYPE_CHECKING:``."""
    out: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST) -> None:
        for n in ast.iter_child_nodes(node):
            if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                walk(ast.Module(body=n.orelse, type_ignores=[]))
                continue
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                out.append(n)
            walk(n)

    walk(tree)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> modules of the same package tree it imports at run time (absolute and
    relative, also inside functions), from the source alone."""
    mods: dict[str, Path] = {}
    for p in root.rglob("*.py"):
        parts = p.relative_to(root.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    edges: dict[str, set[str]] = defaultdict(set)
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for n in _runtime_imports(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom):
                if n.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                    target = ".".join(base + ([n.module] if n.module else []))
                else:
                    target = n.module or ""
                for cand in [f"{target}.{a.name}" for a in n.names] + [target]:
                    if cand in mods and cand != m:
                        edges[m].add(cand)
                        break
            elif isinstance(n, ast.Import):
                edges[m].update(a.name for a in n.names if a.name in mods and a.name != m)
    return edges


def folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def shared_agent_modules(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Modules of an agent folder imported by two or more other agent folders."""
    users: dict[str, set[str]] = defaultdict(set)
    for m, targets in edges.items():
        for t in targets:
            if folder(t) in AGENTS and folder(m) in AGENTS and folder(m) != folder(t):
                users[t].add(folder(m))
    return {t: f for t, f in users.items() if len(f) >= 2}


def library_imports_of_agents(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, t) for m, ts in edges.items() for t in ts
                  if folder(m) in LIBRARIES and folder(t) in AGENTS)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    colour: dict[str, int] = {}
    found: list[list[str]] = []

    def visit(u: str, stack: list[str]) -> None:
        colour[u] = 1
        stack.append(u)
        for v in sorted(edges.get(u, ())):
            if colour.get(v) == 1:
                found.append(stack[stack.index(v):] + [v])
            elif not colour.get(v):
                visit(v, stack)
        stack.pop()
        colour[u] = 2

    for m in sorted(edges):
        if not colour.get(m):
            visit(m, [])
    return found


def test_testbed_layering_holds() -> None:
    edges = import_graph(REPO / "testbed")
    assert {folder(m) for m in edges} <= AGENTS | LIBRARIES, "a new folder: say whether it is an agent or a library"
    assert shared_agent_modules(edges) == {}
    assert library_imports_of_agents(edges) == []
    assert cycles(edges) == []


def test_each_rule_fails_on_a_tree_that_breaks_it(tmp_path: Path) -> None:
    root = tmp_path / "testbed"
    for d in ("sg", "mn", "mip", "common"):
        (root / d).mkdir(parents=True)
        (root / d / "__init__.py").write_text("")
    (root / "sg" / "strongswan.py").write_text("from testbed.common import util\n")
    (root / "mn" / "agent.py").write_text("from testbed.sg.strongswan import x\n")
    (root / "mip" / "ipsec.py").write_text("from testbed.sg import strongswan\n")
    (root / "common" / "util.py").write_text("from ..mn import agent\n"   # a library importing an agent
                                             "if TYPE_CHECKING:\n    from testbed.mip import ipsec\n")
    edges = import_graph(root)
    assert shared_agent_modules(edges) == {"testbed.sg.strongswan": {"mn", "mip"}}
    assert library_imports_of_agents(edges) == [("testbed.common.util", "testbed.mn.agent")]
    assert cycles(edges)  # common.util -> mn.agent -> sg.strongswan -> common.util
