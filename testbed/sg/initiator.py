"""The mobile node's side of the workgroup IPsec (claims 7-10, 12): one unidirectional tunnel
per target SG, brought up over VICI. For the MN agent; the SG only answers.

    ini = Initiator(workdir="/var/lib/testbed/mn", own_sg_public="198.51.100.1",
                    creds=Credentials(cert, key, ca))
    ini.start()                                              # charon + VICI socket
    ini.set_targets({"B": ("198.51.100.2", ["10.0.0.7"])})   # from the MSM member list
    ini.up("B")                                              # IKE_SA + CHILD_SA to SG-B

The MN's IKE identity is its own SG's public address, which the MSM CA writes into the
certificate's subjectAltName; the target SG's responder for that realm demands exactly it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

from testbed.common.strongswan import (Charon, Credentials, render_initiator_swanctl, summarize_sas,
                                   write_swanctl_dir)

log = logging.getLogger(__name__)

CHILD = "wg"


class Initiator:
    def __init__(self, workdir: str | Path, own_sg_public: str, creds: Credentials,
                 netns: str | None = None, debug: int = 1) -> None:
        self.workdir = Path(workdir)
        self.own_sg_public = own_sg_public
        self.creds = creds
        self.charon = Charon("mn", self.workdir, netns=netns, debug=debug)
        self.targets: dict[str, tuple[str, list[str]]] = {}

    def start(self) -> None:
        self.charon.start()

    def set_targets(self, targets: Mapping[str, tuple[str, list[str]]]) -> None:
        """{name: (target SG public, [target private addresses])}: (re)load connections.

        Connections of SGs that left the list are terminated (their members left the
        workgroup); the others keep their SAs (swanctl replaces unchanged configs in place).
        """
        gone = set(self.targets) - set(targets)
        self.targets = {k: (sg, list(addrs)) for k, (sg, addrs) in targets.items()}
        conf = write_swanctl_dir(self.workdir / "swanctl",
                                 render_initiator_swanctl(self.targets, self.own_sg_public),
                                 self.creds)
        self.charon.load_swanctl(conf)
        for name in gone:
            try:
                self.charon.terminate(f"to-{name}")
            except Exception as exc:  # already down is fine
                log.debug("terminate to-%s: %s", name, exc)

    def up(self, name: str, timeout_ms: int = 10000) -> list[str]:
        """Bring up the tunnel to target SG `name`; returns charon's log lines."""
        return self.charon.initiate(CHILD, f"to-{name}", timeout_ms)

    def status(self) -> list[dict]:
        return summarize_sas(self.charon.list_sas()) if self.charon.running() else []

    def stop(self) -> None:
        self.charon.stop()
