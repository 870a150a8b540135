"""tshark as the judge of a scenario's pcaps (issue 11, section 5): AODV on UDP 654 is
decoded by Wireshark's own dissector, a truncated one is marked malformed, AODV on 655 is
plain UDP. Real tshark, real pcaps written by scapy."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from scapy.all import IP, UDP, Ether, Raw, wrpcap

from orchestration.evidence import decode, judge

# RFC 3561 5.1: RREQ type 1, flags, hop count 2, RREQ ID, dst, dst seq, orig, orig seq (24 bytes)
RREQ = struct.pack("!BBBBI4sI4sI", 1, 0, 0, 2, 7, bytes([10, 30, 0, 10]), 0, bytes([10, 30, 0, 6]), 3)


def pcap(tmp_path: Path, name: str, payloads: list[tuple[int, bytes]]) -> Path:
    path = tmp_path / name
    wrpcap(str(path), [Ether() / IP(src="10.30.0.6", dst="255.255.255.255", ttl=1) / UDP(sport=port, dport=port) / Raw(p)
                       for port, p in payloads])
    return path


def test_aodv_on_its_port_is_decoded_and_clean(tmp_path: Path) -> None:
    d = decode(pcap(tmp_path, "good.pcap", [(654, RREQ)] * 3))
    assert d.frames == 3 and d.protocols["aodv"] == 3 and not d.malformed
    assert all(ok for _, ok, _ in judge([d], ["aodv"]))


def test_truncated_aodv_is_malformed_and_fails_the_check(tmp_path: Path) -> None:
    d = decode(pcap(tmp_path, "bad.pcap", [(654, RREQ), (654, RREQ[:9])]))
    assert len(d.malformed) == 1 and d.malformed[0].startswith("frame 2:")
    res = judge([d], ["aodv"])
    assert not res[0][1] and "bad.pcap: frame 2" in res[0][2]


def test_aodv_on_another_port_is_not_evidence(tmp_path: Path) -> None:
    d = decode(pcap(tmp_path, "port.pcap", [(655, RREQ)]))
    assert d.protocols["aodv"] == 0
    names = {n: ok for n, ok, _ in judge([d], ["aodv"])}
    assert names["tshark's own dissector decodes aodv in the pcaps (registered port)"] is False


def test_no_pcap_is_no_evidence() -> None:
    assert judge([], [])[0][1] is False


def test_error_level_expert_mark_fails_the_check_without_a_malformed_frame(tmp_path: Path) -> None:
    """DHCP without its End option (RFC 2131 section 4.1) is dissected whole, so nothing is
    malformed, but Wireshark marks it with an error: only the expert check catches it."""
    from scapy.all import BOOTP, DHCP

    def dhcp(options: list) -> Ether:
        return (Ether() / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
                / BOOTP(chaddr=b"\x02" * 6, xid=5) / DHCP(options=options))

    good, bad = tmp_path / "good.pcap", tmp_path / "noend.pcap"
    wrpcap(str(good), [dhcp([("message-type", "discover"), "end"])])
    wrpcap(str(bad), [dhcp([("message-type", "discover"), "end"]), dhcp([("message-type", "discover")])])
    ok = {n: passed for n, passed, _ in judge([decode(good)], ["dhcp"])}
    assert all(ok.values()), ok
    d = decode(bad)
    assert d.protocols["dhcp"] == 2 and not d.malformed
    assert d.errors == ["frame 2: eth:ethertype:ip:udp:dhcp | End option missing"]
    res = {n: (passed, detail) for n, passed, detail in judge([d], ["dhcp"])}
    assert res["tshark decodes the 1 pcaps without a malformed frame"][0] is True
    assert res["tshark decodes the 1 pcaps without an error-level expert mark"] == (
        False, "noend.pcap: frame 2: eth:ethertype:ip:udp:dhcp | End option missing")


def access_hellos() -> list[bytes]:
    """The access plane's real messages: plain, shared-secret and certificate hellos of a node
    (extensions 131-133, the certificate in CHUNK extensions) and the sink's answer (134)."""
    import tempfile

    from testbed.access import hello_auth as ha
    from testbed.access.node import AccessNode
    from testbed.aodv.messages import hello
    from testbed.common.enroll import sign_local_key
    from testbed.msm.ca import CertificateAuthority

    ca = CertificateAuthority(tempfile.mkdtemp(prefix="tbt-ev-"), "Mobile Workgroup MSM CA", "ec")
    c = sign_local_key(ca, "mn2.mwg.test", "mn", [], ["mn2.mwg.test"])
    n1 = AccessNode("10.10.0.5", "mn1.mwg.test", secret="secret-one")
    n2 = AccessNode("10.10.0.6", "mn2.mwg.test", cert_pem=c.cert_pem.encode(), key_pem=c.key_pem.encode())
    answer = hello("10.10.0.1", 0, 0, [ha.routes_ext(ha.VERDICT_MEMBER, [("0.0.0.0/0", "10.10.1.1", 10)])])
    return [n1.plain_hello(), n1.secret_hello(), n2.cert_hello(), bytes(answer)]


@pytest.mark.parametrize("port", [654, 655])
def test_access_hellos_are_aodv_only_on_654(tmp_path: Path, port: int) -> None:
    """The access scenario's hellos on AODV's port are decoded as AODV (RFC 3561 section 10), extensions
    and all, with no malformed or error mark; on 655, where they ran before, Wireshark sees bare UDP data
    and the evidence check fails."""
    from orchestration.evidence import count, port_census

    msgs = access_hellos()
    assert max(map(len, msgs)) > 500  # the certificate hello is really in the pcap
    path = pcap(tmp_path, f"hellos{port}.pcap", [(port, m) for m in msgs])
    d = decode(path)
    assert not d.malformed and not d.errors
    res = {n: ok for n, ok, _ in judge([d], ["aodv"])}
    if port == 654:
        assert d.protocols["aodv"] == 4 and port_census([path], "aodv") == (4, 4)
        assert all(res.values()), res
    else:
        assert d.protocols["aodv"] == 0 and d.protocols["data"] == 4 and port_census([path], "aodv") == (0, 0)
        assert count(path, "udp.port == 655 && data") == 4
        assert res["tshark's own dissector decodes aodv in the pcaps (registered port)"] is False


def test_aodv_extensions_of_the_agents_decode_clean(tmp_path: Path) -> None:
    """The agents' own extensions (WEIGHT 129 and HANDOVER 128 on a RREQ, GRATUITOUS 130 on a RREP)
    open in Wireshark without a malformed or error mark. Regression: the gratuitous-RREP extension
    had Length 0, which Wireshark's AODV dissector marks "Invalid option length" (the first
    long-session capture: 18 such frames); the same message with Length 0 still fails here."""
    from testbed.aodv.messages import RREP, RREQ as Rreq, GratuitousExt, HandoverExt, HandoverKind, WeightExt

    rreq = Rreq(dst="10.40.0.4", orig="10.40.0.1",
                extensions=[WeightExt(weight=300), HandoverExt(kind=HandoverKind.LOCATE, mn_seq=7, addr="10.0.0.3")])
    rrep = RREP(dst="10.40.0.4", orig="10.40.0.1", hop_count=2, lifetime=2000, extensions=[GratuitousExt()])
    d = decode(pcap(tmp_path, "ext.pcap", [(654, bytes(rreq)), (654, bytes(rrep))]))
    assert d.protocols["aodv"] == 2 and not d.malformed and not d.errors
    empty = bytes(RREP(dst="10.40.0.4", orig="10.40.0.1", hop_count=2, lifetime=2000)) + bytes([130, 0])
    d = decode(pcap(tmp_path, "empty.pcap", [(654, empty)]))
    assert len(d.malformed) == 1 and len(d.errors) == 1 and d.errors[0].endswith("Invalid option length")
