"""Attach-time benchmark: hello -> routes in hand at the node, per attach method.

`run(say) -> dict` (for `make bench`): an in-process MSM (SQLite store, CA, embedded
DIAMETER server on loopback), a real DIAMETER client, the sink logic and the node logic.
Each sample is one full attach: the node builds its hello, the sink checks it (and asks
the MSM), installs the filter (rendered; `apply_nft=True` runs nft too), answers, and the
node verifies the answer. Methods, all in the same run:
- plain: plain AODV hello, the sink advertises configured routes (no MSM): the baseline;
- secret: AUTH extension, HMAC checked by the MSM (claims 40-41);
- certificate: certificate in the hello, checked by the sink, AUTHORIZE_ONLY for routes,
  the sink's certificate checked by the node (claims 51-54);
- certificate_fetch: only the fingerprint in the hello, certificate by DIAMETER (claim 56);
- proxy: DHCPDISCOVER (udhcpc's options) -> DIAMETER -> DHCPOFFER (claims 58-60).
Loopback only: it measures processing, not radio; the netns tests give end-to-end times.
"""
from __future__ import annotations

import socket
import statistics
import tempfile
import threading
import time


def run(say=print, samples: int = 30, apply_nft: bool = False) -> dict:
    from testbed.diameter import BlockingDiameterClient, LocalIdentity
    from testbed.common.enroll import issue_with_local_key
    from testbed.msm.__main__ import Msm
    from testbed.msm.config import parse_config

    from . import dhcp
    from .config import SinkConfig, parse
    from .node import AccessNode
    from .sink import AccessSink

    tmp = tempfile.mkdtemp(prefix="tbt-access-bench-")
    cfg = parse_config({
        "db_path": f"{tmp}/msm.db", "ca_dir": f"{tmp}/ca", "key_type": "ec",
        "http_address": "127.0.0.1", "https_port": 0, "dns_enabled": False,
        "status_file": f"{tmp}/msm.json",
        "seed": {"mvpns": [{"name": "A", "realm": "10.10.0.0/16", "sg_public": "203.0.113.1"}],
                 "users": [{"fqdn": "mn1.mwg.test", "mvpn": "A", "private_address": "10.10.0.5"}]},
        "diameter": {"enabled": True, "address": "127.0.0.1", "port": 0, "exchange_log": None,
                     "secrets": {"mn1.mwg.test": "bench-secret"}},
    })
    msm = Msm(cfg)
    msm.start()
    client = BlockingDiameterClient(LocalIdentity("msr1.mwg.test", "mwg.test"), "127.0.0.1",
                                    msm.diameter.port, destination_realm="mwg.test")
    client.start(wait_open=5)
    methods: dict = {}
    try:
        sc = issue_with_local_key(msm.portal, "msr1.mwg.test", "msr")
        nc = issue_with_local_key(msm.portal, "mn1.mwg.test", "mn")
        for name, text in (("ca.pem", msm.ca.cert_pem), ("cert.pem", sc["cert_pem"]),
                           ("key.pem", sc["key_pem"])):
            with open(f"{tmp}/{name}", "w") as f:
                f.write(text)
        certs = {"ca_file": f"{tmp}/ca.pem", "cert_file": f"{tmp}/cert.pem", "key_file": f"{tmp}/key.pem"}
        got = threading.Event()
        box: list = []

        def send(data, _dst, _iface):
            box.append(data)
            got.set()

        def sink_for(**over):
            c = {"address": "10.10.0.1", "identity": "msr1.mwg.test", "nft": apply_nft,
                 "nft_table": "tbtbench", "msm": {"address": "127.0.0.1", "port": msm.diameter.port},
                 "open_routes": ["0.0.0.0/0 10.10.0.254 10", "10.10.0.0/16 0.0.0.0 1"]}
            c.update(over)
            return AccessSink(parse(c, SinkConfig), send, diameter=client)

        ca = msm.ca.cert_pem.encode()
        node_secret = AccessNode("10.10.0.5", "mn1.mwg.test", secret="bench-secret")
        node_cert = AccessNode("10.10.0.5", "mn1.mwg.test", ca_pem=ca, cert_pem=nc["cert_pem"].encode(),
                               key_pem=nc["key_pem"].encode())
        node_fp = AccessNode("10.10.0.5", "mn1.mwg.test", ca_pem=ca, cert_pem=nc["cert_pem"].encode(),
                             key_pem=nc["key_pem"].encode(), send_certificate=False)
        methods.update({
            "plain": (sink_for(plain_hellos="open", shared_secret=False), node_secret, "plain_hello"),
            "secret": (sink_for(), node_secret, "secret_hello"),
            "certificate": (sink_for(certificate=True, shared_secret=False, certs=certs), node_cert,
                            "cert_hello"),
            "certificate_fetch": (sink_for(certificate=True, shared_secret=False, certs=certs,
                                           cert_source="diameter"), node_fp, "cert_hello"),
        })
        results: dict = {}
        sizes: dict = {}
        for name, (sink, node, build) in methods.items():
            times = []
            for _ in range(samples):
                sink.nodes.clear()
                got.clear()
                box.clear()
                t0 = time.perf_counter()
                data = getattr(node, build)()
                sink.on_hello(data, "10.10.0.5")
                if not got.wait(5):
                    raise RuntimeError(f"{name}: no answer: {sink.status()['counters']}")
                verdict, routes = node.on_reply(box[0], "10.10.0.1")
                times.append((time.perf_counter() - t0) * 1000)
                assert verdict == "member" and routes
            sizes[name] = len(data)
            results[name] = times

        # proxy: DHCPDISCOVER -> MSM -> DHCPOFFER
        done_ev = threading.Event()
        out: list = []

        def authenticate(h, done):
            def answered(ans, err):
                done(bool(ans and ans.ok), [(r.prefix, r.gateway, r.metric) for r in ans.routes]
                     if ans else [], None)
            client.submit("authenticate", h.fqdn, h.mac, authenticated_data=h.auth_data,
                          node_address=h.address, on_done=answered)

        srv = dhcp.DhcpHelloServer("10.10.0.1", authenticate)
        times = []
        for i in range(samples):
            done_ev.clear()
            out.clear()
            t0 = time.perf_counter()
            cid, vendor = dhcp.hello_options("mn1.mwg.test", "10.10.0.5", "bench-secret")
            disc = dhcp.build_message(1, 1000 + i, 0, "0.0.0.0", "0.0.0.0", b"\x02" * 6,
                                      [(53, b"\x01"), (50, socket.inet_aton("10.10.0.5")),
                                       (61, cid), (43, vendor)])
            srv.handle(disc, lambda b: (out.append(b), done_ev.set()))
            if not done_ev.wait(5):
                raise RuntimeError("proxy: no DHCPOFFER")
            offer = dhcp.parse_message(out[0])
            dhcp.parse_classless(offer.options[121])
            times.append((time.perf_counter() - t0) * 1000)
            assert offer.msg_type == dhcp.OFFER
        sizes["proxy"] = len(disc)
        results["proxy"] = times
    finally:
        for sink, _n, _b in methods.values():
            sink.policy.flush()
        client.stop()
        msm.stop()
    summary = {}
    for name, ts in results.items():
        ts.sort()
        summary[name] = {"median_ms": round(statistics.median(ts), 3),
                         "p90_ms": round(ts[int(0.9 * (len(ts) - 1))], 3),
                         "hello_bytes": sizes[name], "samples": len(ts)}
        say(f"attach {name:18s} median {summary[name]['median_ms']:7.3f} ms  "
            f"p90 {summary[name]['p90_ms']:7.3f} ms  hello {sizes[name]} bytes")
    base = summary["plain"]["median_ms"]
    for name in summary:
        summary[name]["vs_plain_ms"] = round(summary[name]["median_ms"] - base, 3)
    return {"attach": summary}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(lambda s: print(s, file=sys.stderr),
                         apply_nft="--nft" in sys.argv), indent=1))
