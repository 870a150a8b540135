"""`python3 -m testbed.access.msr --config FILE`: an MSR = AODV agent + access sink in one loop.

Config: `{aodv: <testbed.aodv AgentConfig>, access: <SinkConfig>}`. The agent calls the
access plane through the contract of testbed/aodv/access_hook.py (`Agent(cfg,
access_hook=hook)`). Hellos: with `access.port` 654 the agent's own socket receives them,
on `aodv.interfaces` only (a configuration with an access interface outside them is
refused); every hello with an access extension, and every hello on `access.interfaces`,
is judged by `hook.on_hello`, and answers leave through the agent's socket. With another
port the sink keeps a socket of its own on it (tests; on the air only 654 is AODV to
Wireshark, so the access scenario uses 654). DIAMETER answers and DHCP datagrams are
read in the agent's loop (`hook.readers()`).

Routing proxy (claims 57-62): when a DHCP node attaches, the sink adds a host route to it
on the DHCP interface and `hook.proxied(addr)` becomes true, so
- the agent answers RREQs for the node (it is the node's proxy in all routing exchanges);
- the node's datagrams to a destination without a route fall into the agent's TUN buffer
  (the node's address counts as "ours"), the agent originates the RREQ and re-injects the
  buffered datagrams once the route exists (claims 61-62).
The RREQ's originator is the sink's own address: replies come to the sink, which delivers
to the node by its host route.
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

import yaml

log = logging.getLogger("access.msr")


def hello_path_error(acfg, scfg, source: str = "config") -> None:
    """Refuse an MSR whose hellos on UDP 654 could never reach the sink.

    With `access.port` 654 the AODV agent's own socket receives the hellos and drops any
    that arrive on an interface outside `aodv.interfaces` (counted foreign_iface_dropped),
    so the sink would hear none (issue 5; the access scenario failed this way). Access
    interfaces are `access.interfaces` plus `access.dhcp.interface` when DHCP is on; an
    empty `aodv.interfaces` means every interface, which always covers them.

    Raises testbed.access.config.ConfigError naming the file, the field and the fix.
    """
    from testbed.aodv.messages import AODV_PORT

    from .config import ConfigError

    if scfg.port != AODV_PORT or not acfg.interfaces:
        return
    access = list(scfg.interfaces) + ([scfg.dhcp.interface] if scfg.dhcp.enabled else [])
    missing = [i for i in dict.fromkeys(access) if i not in acfg.interfaces]
    if missing:
        raise ConfigError(
            f"{source}: access.port {AODV_PORT} but access interface(s) {missing} are not in "
            f"aodv.interfaces {list(acfg.interfaces)}: the agent's socket drops hellos there. "
            f"Fix: add them to aodv.interfaces, or give access.port another port (the sink then "
            f"keeps a socket of its own)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.access.msr", description=__doc__)
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    from testbed.aodv.config import ConfigError as AodvConfigError
    from testbed.aodv.config import parse_config as parse_aodv

    from .config import ConfigError, SinkConfig, parse

    try:
        text = Path(args.config).read_text()
        data = yaml.safe_load(text)
        if not isinstance(data, dict) or set(data) - {"aodv", "access"} or "aodv" not in data \
                or "access" not in data:
            raise ConfigError("top level must be {aodv: ..., access: ...}")
        acfg = parse_aodv(data["aodv"])
        scfg = parse(data["access"], SinkConfig)
        hello_path_error(acfg, scfg, args.config)
    except (OSError, yaml.YAMLError, ConfigError, AodvConfigError) as exc:
        print(f"access.msr: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=scfg.log_level, stream=sys.stderr,
                        format="%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("pyroute2", "asyncio", "scapy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from testbed.aodv.agent import Agent
    from testbed.diameter import BlockingDiameterClient, LocalIdentity
    from testbed.diameter.client import CompletionQueue

    from testbed.aodv.messages import AODV_PORT

    from .__main__ import udp_socket, write_status
    from .dhcp_plane import start_dhcp_plane
    from .sink import AccessSink

    cq = CompletionQueue()
    readers: list = [(cq, cq.run_pending)]
    client = None
    if scfg.msm is not None:
        client = BlockingDiameterClient(LocalIdentity(scfg.identity, scfg.realm), str(scfg.msm.address),
                                        scfg.msm.port, destination_realm=scfg.msm.realm,
                                        tw=scfg.msm.tw, tc=1.0, request_timeout=scfg.msm.timeout)
        client.start(wait_open=0)
    proxied: dict[str, dict] = {}
    agent_box: list = []
    sock = None
    if scfg.port == AODV_PORT:
        def send(data: bytes, dst: str, iface) -> None:
            agent = agent_box[0]
            if agent.sock is None or not agent.sock.send(data, dst, 64, agent.ifindex(iface)
                                                         if iface else None, None):
                log.warning("answer to %s not sent", dst)
    else:
        sock = udp_socket(scfg.port)

        def send(data: bytes, dst: str, _iface) -> None:
            sock.sendto(data, (dst, scfg.port))
    sink = AccessSink(scfg, send, diameter=client, via=cq)

    if sock is not None:
        def on_udp() -> None:
            while True:
                try:
                    data, (src, _p) = sock.recvfrom(65535)
                except BlockingIOError:
                    return
                if src != str(scfg.address):
                    sink.on_hello(data, src)

        readers.append((sock, on_udp))

    class Hook:
        """testbed/aodv/access_hook.py's contract over AccessSink's node table."""

        def on_hello(self, m, prev, iface):
            st = sink.nodes.get(prev)
            if st is None or st.verdict not in ("member", "visitor"):
                sink.on_hello(m, prev, iface)  # asks the MSM; the verdict comes later
                st = sink.nodes.get(prev)
            if st is not None and st.verdict in ("member", "visitor"):
                return "admit"
            return "refuse" if st is not None and st.verdict == "refused" else "pending"

        def proxied(self, addr):
            return addr in proxied

        def guards(self, iface):
            """The sink's access interfaces: every hello there needs the sink's verdict."""
            return iface in scfg.interfaces

        def readers(self):
            return readers

        def status(self):
            return {"sink": sink.status(), "proxied": proxied,
                    "dhcp": {"counters": dhcp.counters, "attach_ms": list(dhcp.attach_ms)} if dhcp else None}

    hook = Hook()
    agent = Agent(acfg, access_hook=hook)
    agent_box.append(agent)
    loop = agent.loop

    dhcp = None
    if scfg.dhcp.enabled:
        def proxy_for(h, routes):
            proxied[h.address] = {"fqdn": h.fqdn, "since": time.time(), "routes": routes}
            log.info("proxying for %s (%s)", h.fqdn, h.address)

        dhcp, dsock, on_dhcp = start_dhcp_plane(scfg, sink, client, cq, on_attached=proxy_for)
        readers.append((dsock, on_dhcp))

    def status() -> None:
        try:
            write_status(scfg.status_file, {
                "agent": "access-msr", "time": time.time(), **sink.status(),
                "proxied": proxied,
                "dhcp": {"counters": dhcp.counters, "attach_ms": list(dhcp.attach_ms)} if dhcp else None,
                "aodv": {"counters": dict(agent.counters),
                         "buffered": agent.buffer.buffered, "buffer_dropped": agent.buffer.dropped},
            })
        except OSError as exc:
            log.warning("status file: %s", exc)
        loop.call_later(0.5, status)

    loop.call_later(0, status)
    try:
        agent.run()
    finally:
        if client:
            client.stop()
        sink.policy.flush()
        for addr in proxied:
            subprocess.run(["ip", "route", "del", f"{addr}/32", "dev", scfg.dhcp.interface],
                           capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
