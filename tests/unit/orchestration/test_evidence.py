"""tshark as the judge of a scenario's pcaps (issue 11, section 5): AODV on UDP 654 is
decoded by Wireshark's own dissector, a truncated one is marked malformed, AODV on 655 is
plain UDP. Real tshark, real pcaps written by scapy."""
from __future__ import annotations

import struct
from pathlib import Path

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
