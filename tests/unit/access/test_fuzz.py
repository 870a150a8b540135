"""Mutated hellos and answers never crash the sink or the node: dropped and counted."""
from __future__ import annotations

import random

from testbed.access import credentials as cr
from testbed.access.config import SinkConfig, parse
from testbed.access.node import AccessNode, SinkRefused
from testbed.access.sink import AccessSink
from testbed.aodv.messages import hello
from testbed.access import hello_auth as ha
from testbed.msm.ca import CertificateAuthority
from testbed.common.enroll import sign_local_key

from .netns import wait_for

from .conftest import Collector


def mutations(base: bytes, rng: random.Random, n: int):
    for _ in range(n):
        b = bytearray(base)
        kind = rng.randrange(4)
        if kind == 0:
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif kind == 1:
            b = b[:rng.randrange(len(b))]
        elif kind == 2:
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        else:
            i = rng.randrange(20, len(b))
            b[i:i] = bytes([rng.choice([131, 132, 133, 134]), rng.randrange(256)])
        yield bytes(b)


def test_sink_survives_mutated_hellos(msm, dclient, tmp_path):
    ca = CertificateAuthority(str(tmp_path / "ca2"), key_type="ec")
    issued = sign_local_key(ca, "mn1.mwg.test", "mn", [], ["mn1.mwg.test"])
    (tmp_path / "ca.pem").write_text(ca.cert_pem)
    (tmp_path / "c.pem").write_text(issued.cert_pem)
    (tmp_path / "k.pem").write_text(issued.key_pem)
    certs = {"ca_file": str(tmp_path / "ca.pem"), "cert_file": str(tmp_path / "c.pem"),
             "key_file": str(tmp_path / "k.pem")}
    sink = AccessSink(parse({"address": "10.10.0.1", "nft": False, "refused_holddown_ms": 0,
                             "certificate": True, "certs": certs,
                             "msm": {"address": "127.0.0.1", "port": msm.diameter.port}}, SinkConfig),
                      Collector(), diameter=dclient)
    rng = random.Random(5)

    def fresh_secret() -> bytes:
        return AccessNode("10.10.0.5", "mn1.mwg.test", secret="s3cret-1").secret_hello()

    def attaches() -> None:
        """A good hello still gets its member verdict (synchronised on the counter)."""
        before = sink.counters["attached_member"]
        sink.nodes.clear()
        assert sink.on_hello(fresh_secret(), "10.10.0.5")
        assert wait_for(lambda: sink.counters["attached_member"] == before + 1, 10), dict(sink.counters)

    attaches()
    secret = fresh_secret()
    cert = AccessNode("10.10.0.5", "mn1.mwg.test", ca_pem=ca.cert_pem.encode(),
                      cert_pem=issued.cert_pem.encode(), key_pem=issued.key_pem.encode()).cert_hello()
    consumed = 0
    before = dict(sink.counters)
    for base in (secret, cert):
        for data in mutations(base, rng, 250):
            sink.nodes.clear()  # every mutation judged afresh
            consumed += bool(sink.on_hello(data, "10.10.0.5"))
    # the sink survived: a good hello after the flood still attaches (a sink that refuses
    # everything fails here, as one that crashed would)
    attaches()
    c = {k: v - before.get(k, 0) for k, v in sink.counters.items()}
    assert c["refused_malformed"] > 50, c
    # every consumed mutation was counted exactly once before any verification: as malformed,
    # spoofed, ignored, or as a hello judged (the last one of these is the good hello above)
    early = sum(c.get(k, 0) for k in ("refused_malformed", "refused_spoofed_source",
                                        "hello_while_pending", "hello_ignored_holddown"))
    assert early + c["hellos"] - 1 == consumed, (consumed, c)


def test_node_survives_mutated_answers():
    node = AccessNode("10.10.0.5", "mn1.mwg.test", secret="k")
    good = bytes(hello("10.10.0.1", 0, 0, [ha.routes_ext(0, [("0.0.0.0/0", "10.10.0.254", 10)])]))
    assert node.on_reply(good, "10.10.0.1")[0] == "member"
    rng = random.Random(7)
    refused = 0
    for data in mutations(good, rng, 400):
        try:
            node.on_reply(data, "10.10.0.1")
        except SinkRefused:
            refused += 1
    assert refused > 100
    # and the node still takes the good answer: refusing everything would not pass
    node2 = AccessNode("10.10.0.5", "mn1.mwg.test", secret="k")
    assert node2.on_reply(good, "10.10.0.1")[0] == "member"
    assert node.on_reply(good, "10.10.0.1")[0] == "member"
