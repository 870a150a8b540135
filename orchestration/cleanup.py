"""Removing what the testbed made, and only that.

A lab leaves three kinds of things: containers labelled ``testbed.lab=<lab>``, namespace
names ``/run/netns/<lab>.*`` (the switch namespace holds the bridges and the switch ends
of veths, so removing it removes them), and its state file. Interfaces are created
directly inside their namespaces, so none should ever sit in the host's namespace; any
host interface named ``<lab>.*`` is removed too in case an older run left one. All of it
is found by the exact lab name, so this also works after ``testbed up`` was killed with
SIGKILL, and never touches another lab or anything the testbed did not make.
"""
from __future__ import annotations

import time

from pyroute2 import IPRoute

from . import netns as nsmod
from .backend import Backend
from .lab import STATE_DIR, state_path


def host_interfaces(lab: str) -> list[str]:
    with IPRoute() as ipr:
        return [l.get_attr("IFLA_IFNAME") for l in ipr.get_links()
                if (l.get_attr("IFLA_IFNAME") or "").startswith(f"{lab}.")]


def clean_lab(lab: str, backend: Backend) -> dict[str, list[str]]:
    containers = backend.remove_lab(lab)
    # A killed 'up' may have container creations still in flight at the engine; they land
    # a moment later. Look again until a pass finds nothing more.
    for _ in range(5):
        if not containers and not backend.list_nodes(lab):
            break
        time.sleep(0.2)
        more = backend.remove_lab(lab)
        if not more:
            break
        containers += more
    namespaces = nsmod.remove_lab(lab)
    ifaces = host_interfaces(lab)
    if ifaces:
        with IPRoute() as ipr:
            for name in ifaces:
                for idx in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=idx)
    state = []
    for p in (state_path(lab), state_path(lab).with_suffix(".tmp")):
        if p.exists():
            p.unlink()
            state.append(str(p))
    return {"containers": containers, "namespaces": namespaces, "interfaces": ifaces, "state": state}


def known_labs(backend: Backend) -> set[str]:
    """Every lab that left anything behind: containers, namespaces or state files."""
    labs = set(backend.list_nodes())
    labs |= nsmod.labs_with_entries()
    if STATE_DIR.is_dir():
        labs |= {p.stem for p in STATE_DIR.glob("*.json")}
    return labs


def leftovers(lab: str, backend: Backend) -> dict[str, list[str]]:
    """What of a lab still exists (empty lists when it is fully gone)."""
    return {
        "containers": backend.list_nodes(lab).get(lab, []),
        "namespaces": nsmod.lab_entries(lab),
        "interfaces": host_interfaces(lab),
        "state": [str(state_path(lab))] if state_path(lab).exists() else [],
    }
