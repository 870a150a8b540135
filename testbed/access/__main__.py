"""`python3 -m testbed.access --config FILE`: the sink (role: sink) or node (role: node) agent.

Standalone runner: one UDP socket on the hello port (654 by default, the AODV port; where an
AODV agent on the same node owns 654, run `testbed.access.msr` instead, whose agent socket
serves both: another port is not AODV to Wireshark), the sink's DIAMETER client
with a CompletionQueue in the same selector loop (never blocks on the MSM), the DHCP
hello server when enabled, and a status file rewritten every 0.5 s.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time

from testbed.common.jsonfile import write_json_atomic

from .config import ConfigError, NodeConfig, SinkConfig, load

log = logging.getLogger("access")


def write_status(path: str, doc: dict) -> None:
    write_json_atomic(path, doc)


def udp_socket(port: int, bind: str = "0.0.0.0") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind((bind, port))
    s.setblocking(False)
    return s


def run_sink(cfg: SinkConfig) -> int:
    from testbed.aodv.loop import EventLoop
    from testbed.diameter import BlockingDiameterClient, LocalIdentity
    from testbed.diameter.client import CompletionQueue

    from .dhcp_plane import start_dhcp_plane
    from .sink import AccessSink

    loop = EventLoop()
    cq = CompletionQueue()
    loop.add_reader(cq, cq.run_pending)
    client = None
    if cfg.msm is not None:
        client = BlockingDiameterClient(LocalIdentity(cfg.identity, cfg.realm), str(cfg.msm.address),
                                        cfg.msm.port, destination_realm=cfg.msm.realm, tw=cfg.msm.tw,
                                        tc=1.0, request_timeout=cfg.msm.timeout)
        client.start(wait_open=0)
    sock = udp_socket(cfg.port)

    def send(data: bytes, dst: str, _iface) -> None:
        try:
            sock.sendto(data, (dst, cfg.port))
        except OSError as exc:
            log.warning("reply to %s failed: %s", dst, exc)

    dns_fetch = None
    if cfg.cert_source == "dns":
        from .certdns import fetch_certificate
        dns_fetch = lambda name: fetch_certificate(name, str(cfg.dns_server), cfg.dns_port)  # noqa: E731
    sink = AccessSink(cfg, send, diameter=client, via=cq, dns_fetch=dns_fetch)

    def on_udp() -> None:
        while True:
            try:
                data, (src, _p) = sock.recvfrom(65535)
            except BlockingIOError:
                return
            if src == str(cfg.address):
                continue
            sink.on_hello(data, src)

    loop.add_reader(sock, on_udp)

    dhcp = None
    if cfg.dhcp.enabled:
        dhcp, dsock, on_dhcp = start_dhcp_plane(cfg, sink, client, cq)
        loop.add_reader(dsock, on_dhcp)

    def status() -> None:
        doc = {"agent": "access-sink", "pid": os.getpid(), "address": str(cfg.address),
               "time": time.time(), **sink.status(),
               "dhcp": {"counters": dhcp.counters, "attach_ms": list(dhcp.attach_ms)} if dhcp else None,
               "diameter": client.status() if client else None}
        try:
            write_status(cfg.status_file, doc)
        except OSError as exc:
            log.warning("status file: %s", exc)
        loop.call_later(0.5, status)

    status()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loop.stop())
    log.info("access sink %s on UDP %d (secret=%s certificate=%s visitors=%s dhcp=%s)",
             cfg.address, cfg.port, cfg.shared_secret, cfg.certificate, cfg.visitors.enabled,
             cfg.dhcp.enabled)
    loop.run(lambda exc: log.exception("callback failed", exc_info=exc))
    status_doc = sink.status()
    if client:
        client.stop()
    sink.policy.flush()
    log.info("stopped: %s", status_doc["counters"])
    return 0


def run_node(cfg: NodeConfig) -> int:
    from testbed.aodv.loop import EventLoop

    from .node import AccessNode, SinkRefused, install_routes

    certs = cfg.certs
    node = AccessNode(str(cfg.address), cfg.identity, secret=cfg.secret,
                      ca_pem=open(certs.ca_file, "rb").read() if certs else None,
                      cert_pem=open(certs.cert_file, "rb").read() if certs else None,
                      key_pem=open(certs.key_file, "rb").read() if certs else None,
                      send_certificate=cfg.send_certificate)
    loop = EventLoop()
    sock = udp_socket(cfg.port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, cfg.interface.encode())
    state: dict = {"attached": False, "verdict": None, "routes": [], "sink": None,
                   "attach_ms": None, "hellos_sent": 0, "refused_answers": {}, "gave_up": False}

    def send_hello() -> None:
        if state["attached"]:
            return
        if cfg.max_hellos and state["hellos_sent"] >= cfg.max_hellos:
            log.warning("no acceptable answer to %d hellos: giving up", state["hellos_sent"])
            state["gave_up"] = True
            loop.stop()
            return
        data = {"plain": node.plain_hello, "secret": node.secret_hello,
                "certificate": node.cert_hello}[cfg.method]()
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
        try:
            sock.sendto(data, ("255.255.255.255", cfg.port))
            state["hellos_sent"] += 1
        except OSError as exc:
            log.debug("hello not sent: %s", exc)
        loop.call_later(cfg.hello_interval_ms / 1000, send_hello)

    def on_udp() -> None:
        while True:
            try:
                data, (src, _p) = sock.recvfrom(65535)
            except BlockingIOError:
                return
            if src == str(cfg.address) or state["attached"]:
                continue
            try:
                verdict, routes = node.on_reply(data, src)
            except SinkRefused as exc:
                r = state["refused_answers"]
                r[exc.reason] = r.get(exc.reason, 0) + 1
                log.debug("answer from %s not accepted: %s", src, exc)
                continue
            if cfg.install_routes:
                install_routes(routes, src, cfg.interface)
            state.update(attached=True, verdict=verdict, routes=routes, sink=src,
                         attach_ms=round((time.monotonic() - node.sent_at) * 1000, 3))
            log.info("attached to %s as %s in %s ms: %s", src, verdict, state["attach_ms"], routes)
            if cfg.exit_when_attached:
                loop.stop()

    def status() -> None:
        try:
            write_status(cfg.status_file, {"agent": "access-node", "pid": os.getpid(),
                                           "identity": cfg.identity, "method": cfg.method,
                                           "time": time.time(), **state})
        except OSError as exc:
            log.warning("status file: %s", exc)
        loop.call_later(0.5, status)

    loop.add_reader(sock, on_udp)
    status()
    send_hello()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loop.stop())
    loop.run(lambda exc: log.exception("callback failed", exc_info=exc))
    loop.timers.clear()
    status()  # final state, also after SIGTERM
    return 1 if state["gave_up"] else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.access", description=__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--check", action="store_true", help="validate the config and exit")
    args = ap.parse_args(argv)
    try:
        cfg = load(args.config)
    except (ConfigError, OSError) as exc:
        print(f"access: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print("config ok")
        return 0
    logging.basicConfig(level=cfg.log_level, stream=sys.stderr,
                        format="%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    return run_sink(cfg) if isinstance(cfg, SinkConfig) else run_node(cfg)


if __name__ == "__main__":
    sys.exit(main())
