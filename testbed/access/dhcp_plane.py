"""The sink's DHCP hello plane (claims 58-60), wired the same way by the standalone sink
(``python3 -m testbed.access``) and by the MSR (``testbed.access.msr``): a DHCPREQUEST's
authenticator goes to the MSM by DIAMETER, an accepted node gets the MSM's filters at the
sink and a host route on the DHCP interface, and the answer carries the MSM's routes."""
from __future__ import annotations

import logging
import socket
import subprocess
from typing import Any, Callable

from .config import SinkConfig
from .dhcp import DhcpHelloServer, open_server_socket

log = logging.getLogger("access")


def start_dhcp_plane(cfg: SinkConfig, sink: Any, client: Any, cq: Any,
                     on_attached: Callable[[Any, list], None] | None = None
                     ) -> tuple[DhcpHelloServer, socket.socket, Callable[[], None]]:
    """Open the DHCP server socket; return the server, the socket and its read callback
    (the caller adds that to its selector loop)."""
    assert cfg.msm is not None  # the config refuses dhcp without an MSM
    dsock = open_server_socket(cfg.dhcp.interface, cfg.dhcp.port)

    def authenticate(h: Any, done: Callable[[bool, list, str | None], None]) -> None:
        def answered(ans: Any, err: Any) -> None:
            if err is not None:
                sink.counters["msm_unavailable"] += 1
                return done(False, [], f"MSM unavailable: {err}")
            if not ans.ok:
                return done(False, [], ans.reason)
            sink.policy.member(h.address, ans.filters)
            done(True, [(r.prefix, r.gateway, r.metric) for r in ans.routes], None)
        client.submit("authenticate", h.fqdn, h.mac, authenticated_data=h.auth_data,
                      node_address=h.address, nas_ip_address=str(cfg.address),
                      timeout=cfg.msm.timeout, on_done=answered, via=cq)

    def attached(h: Any, routes: list) -> None:
        # the node is reached through this sink: a host route on the DHCP interface
        subprocess.run(["ip", "route", "replace", f"{h.address}/32", "dev", cfg.dhcp.interface,
                        "proto", "static"], capture_output=True)
        log.info("DHCP node %s (%s) attached: routes %s", h.fqdn, h.address, routes)
        if on_attached is not None:
            on_attached(h, routes)

    dhcp = DhcpHelloServer(str(cfg.address), authenticate, attached, cfg.dhcp.lease_s, sink.replay,
                           decision_ttl_s=cfg.dhcp.decision_ttl_s,
                           max_decisions=cfg.dhcp.max_decisions, max_pending=cfg.dhcp.max_pending)

    def on_dhcp() -> None:
        while True:
            try:
                data, _src = dsock.recvfrom(65535)
            except BlockingIOError:
                return
            dhcp.handle(data, lambda b: dsock.sendto(b, ("255.255.255.255", cfg.dhcp.client_port)))

    return dhcp, dsock, on_dhcp
