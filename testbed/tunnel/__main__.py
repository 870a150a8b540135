"""`python3 -m testbed.tunnel --config FILE`: run one IP-IP endpoint and write its counters."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

from pydantic import ValidationError

from testbed.tunnel.config import PeerConfig, TunnelConfig
from testbed.tunnel.ipip import IpipEndpoint, Peer
from testbed.tunnel.status import load_config_file, write_status
from testbed.tunnel.tun import configure_link

log = logging.getLogger("testbed.tunnel")


def setup_peer(peer: Peer, pc: PeerConfig) -> None:
    """Move/configure a freshly created peer interface as its PeerConfig says."""
    configure_link(peer.ifname, netns=pc.netns, mtu=pc.mtu,
                   addresses=[str(a) for a in pc.addresses], routes=pc.routes)
    peer.netns = pc.netns


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.tunnel", description=__doc__)
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    try:
        cfg = TunnelConfig.model_validate(load_config_file(args.config))
    except (ValidationError, ValueError, OSError) as exc:
        print(f"bad config {args.config}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ep = IpipEndpoint(str(cfg.local), mode=cfg.mode, ifname_prefix=cfg.ifname_prefix,
                      threads=cfg.threads)
    for name, pc in cfg.peers.items():
        peer = ep.add_peer(name, str(pc.addr), ifname=pc.ifname)
        setup_peer(peer, pc)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    ep.start()
    log.info("IP-IP endpoint %s up (%s), %d peers", cfg.local, ep.mode, len(ep.peers))
    try:
        while not stopping:
            write_status(cfg.status_file, {"time": time.time(), **ep.status()})
            time.sleep(cfg.status_interval)
    finally:
        write_status(cfg.status_file, {"time": time.time(), **ep.status()})
        ep.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
