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

from pathlib import Path
from typing import Any

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
        for p in agents.problems(f):
            problems.append((f"nodes.{f.node}.files.{f.path}", f"{f.agent} agent would refuse it: {p} "
                             "(generated from the lab; fix the lab field it came from, or override it under 'nodes:')"))
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


def lab_schema() -> dict[str, Any]:
    """JSON Schema of the lab format, for editors."""
    return LabFile.model_json_schema()


__all__ = ["is_lab", "parse_lab", "compile_lab", "load_lab", "lab_schema", "Compiled", "LabFile", "Secrets",
           "nft_available", "nft_problems"]
