"""What a test lab adds around the system it emulates: the ``testing:`` section of a lab file.

    testing:
      peers: [[B, D]]            # SG peerings beyond the workgroups, both ways
      tokens: {d: [mn, operator]}
      msm: {allow_test_certs: true}
      sg_tunnel: auto

- ``peers``: the SGs of two M-VPNs are peers although no workgroup joins them, so that a
  non-member's packets get through IKE and IP-IP and die at the realm-indexed filter
  (claim 6), which is what a negative check wants to see.
- ``tokens``: enrolment tokens (issue 9) for a node to enrol *by hand* (no agent does it):
  ``mn`` is for the node's own FQDN, in :data:`~orchestration.domain.enrolment.TOKEN_FILE`;
  ``operator`` is an operator token for ``harness-<node>.<zone>`` in :data:`OPERATOR_TOKEN_FILE`
  (the test harness asks the MSM for test certificates with it).
- ``msm``: further fields of the MSM's config (testbed.msm.config.MsmConfig), checked by that
  model like every generated config (``allow_test_certs``, ``insecure_no_authz``).
- ``sg_tunnel``: the SGs' IP-IP data plane (testbed.sg.config: auto, kernel, bpf, userspace);
  the compiler's default is userspace.

The compiler calls :func:`before_msm` once the SGs and mobile nodes are made (the tokens
must be in the MSM's seed; a lab without MSM has no SG agents to change) and :func:`after_msm`
before the low-level ``nodes:`` of the lab file are merged.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # model.py imports this module for the section's shape
    from .compiler import Compiler
    from .model import LabFile

Problems = list[tuple[str, str]]
OPERATOR_TOKEN_FILE = "/etc/testbed/operator.token"


class Testing(BaseModel):
    """The ``testing:`` section (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    peers: list[tuple[str, str]] = Field([], description="pairs of M-VPNs whose SGs peer beyond the workgroups")
    tokens: dict[str, list[Literal["mn", "operator"]]] = Field(
        {}, description="node -> tokens it holds for enrolling by hand: mn (its FQDN), operator (harness-<node>)")
    msm: dict[str, Any] = Field({}, description="further MSM config fields (testbed.msm.config.MsmConfig)")
    sg_tunnel: Literal["auto", "kernel", "bpf", "userspace"] | None = Field(
        None, description="the SGs' IP-IP data plane (default: userspace)")


def problems(lab: "LabFile") -> Problems:
    """Faults of ``lab.testing`` as ``(path, message and fix)``."""
    t = lab.testing
    out: Problems = []
    add: Callable[[str, str], None] = lambda p, m: out.append((p, m))  # noqa: E731
    for i, pair in enumerate(t.peers):
        for m in pair:
            if m not in lab.mvpns:
                add(f"testing.peers[{i}]", f"unknown M-VPN {m!r}; declare it under 'mvpns'")
            elif lab.mvpns[m].sg is None:
                add(f"testing.peers[{i}]", f"M-VPN {m} has no SG to peer; give mvpns.{m}.sg a public address")
        if pair[0] == pair[1]:
            add(f"testing.peers[{i}]", f"an SG does not peer with itself; name two M-VPNs, not {pair[0]} twice")
    if (t.tokens or t.msm) and lab.msm is None:
        add("testing", "tokens and MSM options need the MSM; add 'msm: {}' or drop them")
    for n, kinds in t.tokens.items():
        x = lab.mobile_nodes.get(n)
        if x is None:
            add(f"testing.tokens.{n}", f"{n!r} is no mobile node; tokens are held by mobile nodes "
                f"({', '.join(sorted(lab.mobile_nodes)) or 'none declared'})")
            continue
        if "mn" in kinds and x.workgroup:
            add(f"testing.tokens.{n}", f"{n} signs on to {x.workgroup}, so it already holds its mn token; drop 'mn'")
        elif "mn" in kinds and x.mvpn in lab.mvpns and lab.mvpns[x.mvpn].sg is None:
            add(f"testing.tokens.{n}", f"{n} is no MSM user: its M-VPN {x.mvpn} has no SG; give mvpns.{x.mvpn}.sg an address")
        if len(set(kinds)) != len(kinds):
            add(f"testing.tokens.{n}", "a kind is listed twice; list each of mn, operator once")
    return out


def _sg_files(c: "Compiler") -> dict[str, Any]:
    """M-VPN -> its SG's generated agent file."""
    return {f.data["mvpn"]: f for f in c.agent_files if f.agent == "sg"}


def _rewrite(c: "Compiler", f: Any) -> None:
    c.nodes[f.node]["files"][f.path] = f.text()


def before_msm(c: "Compiler") -> None:
    """Peers, SG tunnel mode and tokens, into the generated files (before the MSM's seed)."""
    t, lab = c.lab.testing, c.lab
    sgs = _sg_files(c)
    for pair in t.peers:
        for m, o in (pair, pair[::-1]):
            if m in sgs:
                peers = {**sgs[m].data["peers"], o: {"public": str(lab.mvpns[o].sg.address)}}  # type: ignore[union-attr]
                sgs[m].data["peers"] = dict(sorted(peers.items()))
    for f in sgs.values():
        if t.sg_tunnel:
            f.data["tunnel"]["mode"] = t.sg_tunnel
        _rewrite(c, f)
    zone = lab.zone.rstrip(".")
    for n, kinds in t.tokens.items():
        if "mn" in kinds:
            c.token(n, c.users()[n][2], "mn")
        if "operator" in kinds:
            c.token(n, f"harness-{n}.{zone}", "operator", OPERATOR_TOKEN_FILE)


def after_msm(c: "Compiler") -> None:
    """The MSM options into its generated config."""
    for f in c.agent_files:
        if f.agent == "msm" and c.lab.testing.msm:
            f.data = {**f.data, **c.lab.testing.msm}
            _rewrite(c, f)
