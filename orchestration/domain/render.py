"""``testbed render``: a compiled topology as the YAML a user would have written by hand,
multi-line strings (agent configs, nftables, scripts) as literal blocks."""
from __future__ import annotations

import yaml

from ..topology import Topology


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)


_Dumper.add_representer(str, _str)


def render_topology(topo: Topology) -> str:
    """The low-level topology file (orchestration.topology format) for ``topo``."""
    data = topo.model_dump(mode="json", exclude_defaults=True)
    return "# rendered by 'testbed render': the low-level topology this lab compiles to\n" + \
        yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=120)
