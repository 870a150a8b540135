"""The claim coverage matrix (``testbed claims``, issue 10 §4): which checks exercise each
of the 70 claims, and how each fared in its last run.

Where checks are found:
- every scenario's ``scenario.yaml`` checks and, when its topology is a lab file
  (``kind: lab``), the lab's checks;
- every ``examples/*.yaml`` lab file's checks;
- every scenario's ``scenario.py``: ``ctx.check(NAME, ..., claims=[...])`` calls (found in
  the source with ``ast``; an f-string name is shown as written);
- the last reports: ``results/<scenario>/report.json`` (``testbed scenario``) and
  ``results/examples/<name>/report.json`` (``testbed run``, tests/integration/test_examples.py),
  whose checks carry their claims; a check is passed/failed by its report, "not run" without one.

The claims' titles come from docs/claims.txt (NUMBER<TAB>text).
"""
from __future__ import annotations

import ast
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..yamlfile import load_yaml

CLAIMS_FILE = Path("docs/claims.txt")


class ClaimsError(RuntimeError):
    """The claims file is missing or malformed; the message names the file and the fix."""


@dataclass
class CheckRef:
    """One check that names claims: where it is declared, its name, and its last result."""

    source: str            # scenario:<name>, example:<file>
    name: str
    claims: list[int]
    status: str = "not run"  # pass | fail | not run
    detail: str = ""
    written: bool = False    # the name is an expression in scenario.py (f-string, loop variable), not the name run


@dataclass
class Matrix:
    """claim -> checks; ``titles`` claim -> text; ``uncovered`` claims no check names."""

    titles: dict[int, str]
    checks: dict[int, list[CheckRef]] = field(default_factory=dict)

    @property
    def uncovered(self) -> list[int]:
        """Claim numbers of ``titles`` (in file order) that no check names."""
        return [n for n in self.titles if not self.checks.get(n)]

    def counts(self, n: int) -> dict[str, int]:
        """How many checks naming claim ``n`` have each status: {"pass", "fail", "not run"} -> count
        (all three keys, 0 when none). KeyError for a check whose status is none of the three.
        """
        out = {"pass": 0, "fail": 0, "not run": 0}
        for c in self.checks.get(n, []):
            out[c.status] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        """The matrix as a JSON-ready dict: ``claims`` (per claim: number, title, the ``counts``
        and its checks as dicts, in file order), ``uncovered`` claim numbers, ``covered`` and
        ``total`` claim counts.
        """
        return {"claims": [{"claim": n, "title": t, **self.counts(n),
                            "checks": [asdict(c) for c in self.checks.get(n, [])]} for n, t in self.titles.items()],
                "uncovered": self.uncovered,
                "covered": len(self.titles) - len(self.uncovered), "total": len(self.titles)}


def read_claims(path: Path) -> dict[int, str]:
    """NUMBER<TAB>text lines of ``path`` ('#' comments) as {number: text}. Raises ClaimsError."""
    if not path.is_file():
        raise ClaimsError(f"{path}: no claims file; give --claims FILE (lines 'NUMBER<TAB>text') "
                          "or restore docs/claims.txt")
    out: dict[int, str] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        num, _, text = line.partition("\t")
        if not num.strip().isdigit():
            raise ClaimsError(f"{path}:{i}: {line[:40]!r} does not start with a claim number and a tab")
        out[int(num)] = text.strip()
    if not out:
        raise ClaimsError(f"{path}: no claims in it")
    return dict(sorted(out.items()))


def _yaml_checks(data: Any) -> list[dict]:
    return [c for c in (data or {}).get("checks", []) or [] if isinstance(c, dict)] if isinstance(data, dict) else []


def _refs(source: str, checks: list[dict]) -> list[CheckRef]:
    return [CheckRef(source, str(c.get("name", "?")), [int(x) for x in c.get("claims") or []]) for c in checks]


def _py_checks(source: str, path: Path) -> list[CheckRef]:
    """``*.check(NAME, ..., claims=[1, 2])`` calls in a scenario.py, the claims a literal
    list or a module-level name bound to one (``CLAIMS = [63, 64]``)."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return []
    text = path.read_text()
    consts: dict[str, Any] = {}
    for st in tree.body:
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
            try:
                consts[st.targets[0].id] = ast.literal_eval(st.value)
            except (ValueError, TypeError, SyntaxError):
                pass
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "check"):
            continue
        kw = next((k for k in node.keywords if k.arg == "claims"), None)
        if kw is None or not node.args:
            continue
        try:
            value = consts[kw.value.id] if isinstance(kw.value, ast.Name) else ast.literal_eval(kw.value)
            claims = [int(x) for x in value]
        except (KeyError, ValueError, TypeError, SyntaxError):
            continue
        a = node.args[0]
        literal = isinstance(a, ast.Constant)
        name = a.value if literal else (ast.get_source_segment(text, a) or "?")
        out.append(CheckRef(source, str(name), claims, written=not literal))
    return out


def declared(root: Path) -> list[CheckRef]:
    """Every check with its claims, from the scenarios and examples under ``root``."""
    out: list[CheckRef] = []
    for folder in sorted((root / "scenarios").glob("*/")):
        spec_path = folder / "scenario.yaml"
        if not spec_path.is_file():
            continue
        src = f"scenario:{folder.name}"
        spec = load_yaml(spec_path) or {}
        out += _refs(src, _yaml_checks(spec))
        topo = folder / (spec.get("topology") or "topology.yaml") if isinstance(spec, dict) else folder / "topology.yaml"
        if topo.is_file():
            data = load_yaml(topo)
            if isinstance(data, dict) and data.get("kind") == "lab":
                out += _refs(src, _yaml_checks(data))
        if (folder / "scenario.py").is_file():
            out += _py_checks(src, folder / "scenario.py")
    for f in sorted((root / "examples").glob("*.yaml")):
        out += _refs(f"example:{f.stem}", _yaml_checks(load_yaml(f)))
    return out


def _report(path: Path) -> list[dict]:
    try:
        return [c for c in json.loads(path.read_text()).get("checks", []) if isinstance(c, dict)]
    except (OSError, ValueError, AttributeError):
        return []


def build(root: Path, results: Path, claims_file: Path) -> Matrix:
    """The matrix for the tree at ``root`` with reports under ``results``."""
    titles = read_claims(claims_file if claims_file.is_absolute() else root / claims_file)
    refs = declared(root)
    reports: dict[str, list[dict]] = {}
    for r in refs:
        kind, _, name = r.source.partition(":")
        if r.source not in reports:
            reports[r.source] = _report(results / ("examples/" + name if kind == "example" else name) / "report.json")
    # a check whose name is an expression in scenario.py ran under other names: where the
    # scenario has a report, its entries stand for it
    refs = [r for r in refs if not (r.written and reports.get(r.source))]
    # checks a report names claims for but no file declares literally (scenario.py f-string names)
    known = {(r.source, r.name) for r in refs}
    for src, checks in reports.items():
        for c in checks:
            if c.get("claims") and (src, c.get("name")) not in known:
                refs.append(CheckRef(src, str(c.get("name")), [int(x) for x in c["claims"]]))
    for r in refs:
        got = next((c for c in reports.get(r.source, []) if c.get("name") == r.name), None)
        if got is not None:
            r.status, r.detail = ("pass" if got.get("passed") else "fail"), str(got.get("detail", ""))[:200]
    m = Matrix(titles)
    for r in refs:
        for n in r.claims:
            m.checks.setdefault(n, []).append(r)
    return m


def markdown(m: Matrix, width: int = 70) -> str:
    """The matrix as a Markdown table: claim, what it claims (shortened), checks, pass/fail/not run, where."""
    rows = ["| claim | what it claims | checks | pass | fail | not run | where |", "| ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for n, t in m.titles.items():
        c = m.counts(n)
        where = ", ".join(sorted({r.source for r in m.checks.get(n, [])})) or "**no check**"
        short = t if len(t) <= width else t[:width - 1].rstrip() + "…"
        rows.append(f"| {n} | {short} | {len(m.checks.get(n, []))} | {c['pass']} | {c['fail']} | {c['not run']} | {where} |")
    cov = len(m.titles) - len(m.uncovered)
    rows.append("")
    rows.append(f"{cov} of {len(m.titles)} claims have a check; no check names claims "
                + (", ".join(map(str, m.uncovered)) if m.uncovered else "(none)") + ".")
    return "\n".join(rows)


BEGIN, END = "<!-- claims matrix: begin (testbed claims --readme README.md) -->", "<!-- claims matrix: end -->"


def update_readme(path: Path, table: str) -> None:
    """Replace the text between the BEGIN and END markers of ``path`` with ``table``.
    Raises ClaimsError when the markers are missing."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ClaimsError(f"{path}: no claims matrix markers; add the lines\n{BEGIN}\n{END}\nwhere the matrix goes")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
