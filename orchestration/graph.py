"""A picture of a topology: M-VPN realms as boxes, nodes shaped and coloured by role,
segments as bars, links labelled with their addresses. Rendered with Graphviz's ``dot``."""
from __future__ import annotations

from pathlib import Path

import graphviz

from .topology import INTERNET, Topology, wires

ROLE_STYLE = {
    "sg": ("doubleoctagon", "#f4a261"),
    "msm": ("component", "#e9c46a"),
    "router": ("circle", "#adb5bd"),
    "msr": ("hexagon", "#90be6d"),
    "mn": ("ellipse", "#8ecae6"),
    "fa": ("house", "#cdb4db"),
    "ha": ("invhouse", "#ffafcc"),
    "host": ("box", "#ffffff"),
}
REALM_COLOURS = ["#e8f1fb", "#fdeeee", "#eef8ee", "#fff7e0", "#f3eefa", "#eefaf8"]


def render(topo: Topology, out: str | Path) -> Path:
    """Draw the topology with graphviz (dot) into ``out``; the suffix picks the format (png
    when none): one cluster per M-VPN (coloured, with its realm) plus the Internet, nodes shaped
    by role, segments as rounded boxes, links labelled with interfaces and addresses.

    Returns the written file. Raises graphviz.ExecutableNotFound when ``dot`` is missing."""
    out = Path(out)
    fmt = out.suffix.lstrip(".") or "png"
    g = graphviz.Graph(topo.name, format=fmt, engine="dot")
    g.attr(rankdir="LR", fontname="Helvetica", label=f"{topo.name}: {topo.description}", labelloc="t", fontsize="16")
    g.attr("node", fontname="Helvetica", fontsize="10", style="filled")
    g.attr("edge", fontname="Helvetica", fontsize="8")

    groups: dict[str, list[str]] = {}
    for name, nd in topo.nodes.items():
        groups.setdefault(nd.mvpn or INTERNET, []).append(name)
    seg_group = {s: (seg.mvpn or INTERNET) for s, seg in topo.segments.items()}

    for i, (grp, members) in enumerate(sorted(groups.items())):
        ctx = g.subgraph(name=f"cluster_{grp}")
        with ctx as c:
            if grp == INTERNET:
                c.attr(label="Internet / public", style="dashed", color="#888888")
            else:
                c.attr(label=f"M-VPN {grp}  realm {topo.mvpns[grp].realm}", style="filled",
                       color=REALM_COLOURS[i % len(REALM_COLOURS)])
            for n in members:
                shape, colour = ROLE_STYLE.get(topo.nodes[n].role.value, ("box", "#ffffff"))
                c.node(n, f"{n}\n({topo.nodes[n].role.value})", shape=shape, fillcolor=colour)
            for s, sg in seg_group.items():
                if sg == grp:
                    sub = topo.segments[s].subnet
                    c.node(f"seg__{s}", f"{s}\n{sub or ''}", shape="box", style="filled,rounded",
                           fillcolor="#dddddd", height="0.2")
    for w in wires(topo):
        if w.segment:
            g.edge(w.a.node, f"seg__{w.segment}", label=f"{w.a.ifname} {w.a.address or ''}")
        else:
            assert w.b is not None
            g.edge(w.a.node, w.b.node, taillabel=str(w.a.address or ""), headlabel=str(w.b.address or ""))
    target = out.with_suffix("")
    path = g.render(filename=target.name, directory=str(target.parent or "."), cleanup=True)
    return Path(path)
