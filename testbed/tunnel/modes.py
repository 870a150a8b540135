"""Which IP-IP data plane a node runs: kernel ipip, tc BPF, or userspace (issue 14).

"auto" takes the first that this node can run, fastest first: a kernel `ipip` device where
the kernel has the module, the tc-BPF programs where BPF may be loaded in the node (needs
CAP_SYS_ADMIN or CAP_BPF besides CAP_NET_ADMIN), and the userspace TUN + raw socket
endpoint, which needs only CAP_NET_RAW and /dev/net/tun. A mode named explicitly must be
available: silently running something else would falsify a measurement.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

MODES = ("kernel", "bpf", "userspace")  # preference order of "auto"

# mode -> probe: None if the mode can run here, else the reason it cannot
Probe = Callable[[], "str | None"]


class TunnelModeError(RuntimeError):
    """An explicitly requested mode cannot run on this node (message says why)."""


@dataclass
class ModeChoice:
    """The chosen mode and, per mode tried before it, why it was not taken."""
    mode: str
    requested: str
    unavailable: dict[str, str] = field(default_factory=dict)

    def as_status(self) -> dict:
        return {"mode": self.mode, "mode_requested": self.requested,
                "modes_unavailable": dict(self.unavailable)}


def select_mode(requested: str, probes: Mapping[str, Probe]) -> ModeChoice:
    """Choose a data plane for `requested` ("auto" or one of MODES).

    `probes` maps every mode to its probe; probes run lazily, in MODES order, and stop at
    the first available mode. Raises ValueError for an unknown mode and TunnelModeError
    when an explicit mode is unavailable.
    """
    if requested != "auto" and requested not in MODES:
        raise ValueError(f"mode: {requested!r} is not one of auto, {', '.join(MODES)}")
    order = MODES if requested == "auto" else (requested,)
    unavailable: dict[str, str] = {}
    for mode in order:
        why = probes[mode]()
        if why is None:
            return ModeChoice(mode, requested, unavailable)
        unavailable[mode] = why
    raise TunnelModeError(f"tunnel mode {requested}: unavailable here: "
                          + "; ".join(f"{m}: {w}" for m, w in unavailable.items()))
