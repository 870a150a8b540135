"""Labs in the language of the domain (issue 10): a lab file that names M-VPNs, SGs,
the MSM, workgroups, mobile nodes, access networks and a schedule of moves, compiled to
the low-level topology (orchestration.topology) that the engine runs.

Modules, one job each: ``model`` (the file format), ``checks`` (domain checks),
``addressing`` (derived addresses), ``agents`` (agent configs through their own models),
``mesh`` (an AODV mesh by its links), ``napt`` (backbone NAPT, SG edge, policy routes), ``enrolment`` (tokens, keys),
``compiler`` (the whole derivation), ``nftcheck`` (``nft -c``), ``schedule`` (moves and
link events at run time), ``generate`` (N M-VPNs x M mobile nodes).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..topology import TopologyError, _loc, read_yaml_file
from . import agents
from .checks import check_lab
from .compiler import Compiled, compile_model
from .enrolment import Secrets
from .model import LabFile
from .nftcheck import nft_available, nft_problems


def is_lab(data: Any) -> bool:
    """A lab file at the level of the domain says ``kind: lab`` at the top."""
    return isinstance(data, dict) and data.get("kind") == "lab"


def parse_lab(data: Any, source: str = "<lab>") -> LabFile:
    """Validate the shape of a lab file; TopologyError names every fault with its path."""
    try:
        return LabFile.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field; remove it or check its spelling (see 'testbed schema')"
            elif err["type"] == "missing":
                msg = "required field is missing"
            problems.append((_loc(err["loc"]), msg))
        raise TopologyError(source, problems) from None


def compile_lab(data: Any, source: str = "<lab>", secrets: Secrets | None = None, check_nft: bool = True) -> Compiled:
    """Check and compile a lab (already loaded YAML). Raises TopologyError naming every
    fault: domain checks first, then the low-level topology, then each generated agent
    config through its agent's model, then each generated nftables file through ``nft -c``
    (skipped where nft or namespaces are unavailable)."""
    lab = parse_lab(data, source)
    problems = check_lab(lab)
    if problems:
        raise TopologyError(source, problems)
    compiled = compile_model(lab, source, secrets)
    problems = []
    for f in compiled.agent_files:
        # judge the file the node will get: a 'nodes:' override replaces the generated text
        final = compiled.topology.nodes[f.node].files.get(f.path)
        overridden = final is not None and final != f.text()
        where = f"nodes.{f.node}.files.{f.path}"
        if overridden:
            try:
                f = dataclasses.replace(f, data=yaml.safe_load(final) or {})
            except yaml.YAMLError as e:
                problems.append((where, f"the override under 'nodes:' is no YAML: {e}"))
                continue
        for p in agents.problems(f):
            problems.append((where, f"{f.agent} agent would refuse it: {p} " + (
                "(from the override under 'nodes:'; fix the override)" if overridden else
                "(generated from the lab; fix the lab field it came from, or override it under 'nodes:')")))
    if check_nft and compiled.nft_files and nft_available():
        for node, path in compiled.nft_files:
            for p in nft_problems(compiled.topology.nodes[node].files[path]):
                problems.append((f"nodes.{node}.files.{path}", f"nft -c refuses it: {p}"))
    if problems:
        raise TopologyError(source, problems)
    return compiled


def load_lab(path: str | Path, secrets: Secrets | None = None, check_nft: bool = True) -> Compiled:
    """Read, check and compile a lab file."""
    p = Path(path)
    return compile_lab(read_yaml_file(p), str(p), secrets, check_nft)


#: Short forms the parser accepts besides the full object (model.py's "before" validators):
#: ``sg: 198.51.100.1`` for ``{address: ...}``, ``home_agent: opha`` for ``{operator: ...}``,
#: and every ``at`` as text with a unit (``2.5s``, ``300ms``).
_SHORT_FORMS = {
    "sg": {"type": "string", "description": "short for {address: THIS}: the SG's public address"},
    "home_agent": {"type": "string", "description": "short for {operator: THIS}: a virtual HA in that operator HA"},
    "at": {"type": "string", "pattern": r"^[0-9.]+\s*(ms|s)?$", "description": "a time with its unit, e.g. 2.5s or 300ms"},
}


def _allow_short_forms(node: Any) -> None:
    """Add the short forms to every property of that name in a JSON Schema (in place)."""
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            if name in _SHORT_FORMS and isinstance(prop, dict):
                alts = prop.pop("anyOf", None) or [{k: prop.pop(k) for k in list(prop)
                                                    if k not in ("title", "description", "default")}]
                prop["anyOf"] = [a for a in alts if a] + [_SHORT_FORMS[name]]
        for v in node.values():
            _allow_short_forms(v)
    elif isinstance(node, list):
        for v in node:
            _allow_short_forms(v)


def lab_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12, as pydantic writes it) of the lab format, for editors;
    it accepts the short forms the parser accepts (``sg: ADDRESS``, ``at: 2.5s``, ...)."""
    schema = LabFile.model_json_schema()
    _allow_short_forms(schema)
    return schema


__all__ = ["is_lab", "parse_lab", "compile_lab", "load_lab", "lab_schema", "Compiled", "LabFile", "Secrets",
           "nft_available", "nft_problems"]
