"""`python3 -m testbed.tunnel --config FILE`: run one IP-IP endpoint and write its counters."""
from __future__ import annotations

import logging
import sys
import time


from testbed.tunnel.config import PeerConfig, TunnelConfig
from testbed.tunnel.ipip import IpipEndpoint, Peer
from testbed.common.jsonfile import write_json_atomic as write_status
from testbed.common.tun import configure_link

from testbed.common.cli import start_agent

log = logging.getLogger("testbed.tunnel")


def setup_peer(peer: Peer, pc: PeerConfig) -> None:
    """Move/configure a freshly created peer interface as its PeerConfig says."""
    configure_link(peer.ifname, netns=pc.netns, mtu=pc.mtu,
                   addresses=[str(a) for a in pc.addresses], routes=pc.routes)
    peer.netns = pc.netns


def main(argv: list[str] | None = None) -> int:
    cfg, stop = start_agent("python3 -m testbed.tunnel", __doc__, TunnelConfig, argv)
    ep = IpipEndpoint(str(cfg.local), mode=cfg.mode, ifname_prefix=cfg.ifname_prefix,
                      threads=cfg.threads)
    for name, pc in cfg.peers.items():
        peer = ep.add_peer(name, str(pc.addr), ifname=pc.ifname)
        setup_peer(peer, pc)
    ep.start()
    log.info("IP-IP endpoint %s up (%s), %d peers", cfg.local, ep.mode, len(ep.peers))
    try:
        while not stop.is_set():
            write_status(cfg.status_file, {"time": time.time(), **ep.status()})
            stop.wait(cfg.status_interval)
    finally:
        write_status(cfg.status_file, {"time": time.time(), **ep.status()})
        ep.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
