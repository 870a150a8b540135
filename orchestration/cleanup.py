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

import json
import os
import time
from pathlib import Path

from pyroute2 import IPRoute

from . import netns as nsmod
from .backend import Backend
from .state import labs_up, state_path


SYS_NET = Path("/sys/class/net")


def host_interfaces(lab: str) -> list[str]:
    """Names of the host namespace's interfaces that belong to ``lab`` (``<lab>.*``).
    Read from sysfs: a netlink dump decodes every host interface (0.2 s on a busy host)."""
    if SYS_NET.is_dir():
        return sorted(n for n in os.listdir(SYS_NET) if n.startswith(f"{lab}."))
    with IPRoute() as ipr:
        return [l.get_attr("IFLA_IFNAME") for l in ipr.get_links()
                if (l.get_attr("IFLA_IFNAME") or "").startswith(f"{lab}.")]


def _brought_up_here(lab: str) -> bool:
    """True when this very process started the lab: its container creations have all
    returned, so none can land after the removal."""
    try:
        return json.loads(state_path(lab).read_text()).get("pid") == os.getpid()
    except (OSError, ValueError):
        return False


def clean_lab(lab: str, backend: Backend) -> dict[str, list[str]]:
    """Remove everything lab ``lab`` left: its labelled containers (again until none lands late
    from a killed ``up``), its namespaces, its host interfaces and its state file; nothing of
    another lab. Returns what was removed per kind (containers, namespaces, interfaces, state)."""
    settled = _brought_up_here(lab)
    containers = backend.remove_lab(lab)
    # A killed 'up' (another process) may have container creations still in flight at the
    # engine; they land a moment later. Look again until a pass finds nothing more.
    for _ in range(0 if settled else 5):
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
    labs |= set(labs_up())
    return labs


def leftovers(lab: str, backend: Backend) -> dict[str, list[str]]:
    """What of a lab still exists (empty lists when it is fully gone)."""
    return {
        "containers": backend.list_nodes(lab).get(lab, []),
        "namespaces": nsmod.lab_entries(lab),
        "interfaces": host_interfaces(lab),
        "state": [str(state_path(lab))] if state_path(lab).exists() else [],
    }
