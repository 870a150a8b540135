"""Mode selection of the IP-IP data plane and the userspace "fragmentation needed" answer."""
from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP, IP, UDP

from testbed.tunnel.ipip import _checksum, frag_needed
from testbed.tunnel.modes import MODES, TunnelModeError, select_mode


def probes(available: set[str], calls: list[str] | None = None):
    def probe(mode):
        def run():
            if calls is not None:
                calls.append(mode)
            return None if mode in available else f"{mode} missing"
        return run
    return {m: probe(m) for m in MODES}


@pytest.mark.parametrize("available, chosen", [
    ({"kernel", "bpf", "userspace"}, "kernel"),   # ipip module present: the kernel device
    ({"bpf", "userspace"}, "bpf"),                # this machine: no ipip, BPF allowed
    ({"userspace"}, "userspace"),                 # a node without SYS_ADMIN/BPF
])
def test_auto_takes_the_fastest_available(available, chosen):
    calls: list[str] = []
    c = select_mode("auto", probes(available, calls))
    assert c.mode == chosen
    # probes stop at the first available mode, and the skipped ones say why
    assert calls == list(MODES[:MODES.index(chosen) + 1])
    assert c.unavailable == {m: f"{m} missing" for m in MODES[:MODES.index(chosen)]}
    assert c.as_status()["mode"] == chosen and c.as_status()["mode_requested"] == "auto"


def test_explicit_mode_never_falls_back():
    assert select_mode("userspace", probes({"userspace"})).mode == "userspace"
    with pytest.raises(TunnelModeError, match="bpf: bpf missing"):
        select_mode("bpf", probes({"kernel", "userspace"}))


def test_nothing_available_and_unknown_mode():
    with pytest.raises(TunnelModeError, match="kernel missing.*bpf missing.*userspace missing"):
        select_mode("auto", probes(set()))
    with pytest.raises(ValueError, match="'gre' is not one of"):
        select_mode("gre", probes(set(MODES)))


def _inner(df=True, proto_payload=None, frag_off=0):
    pkt = IP(src="10.0.0.5", dst="10.0.0.7", flags="DF" if df else 0, frag=frag_off) / (
        proto_payload if proto_payload is not None else UDP(sport=1234, dport=5000) / (b"x" * 1400))
    return bytes(pkt)


def test_frag_needed_names_the_tunnel_mtu_and_quotes_the_packet():
    inner = _inner()
    msg = frag_needed(bytes([198, 51, 100, 1]), inner, 1380)
    ip = IP(msg)
    assert (ip.src, ip.dst, ip.proto, ip.ttl) == ("198.51.100.1", "10.0.0.5", 1, 64)
    assert _checksum(msg[:20]) == 0                        # header checksum valid
    icmp = msg[20:]
    assert _checksum(icmp) == 0                            # ICMP checksum valid
    assert (icmp[0], icmp[1]) == (3, 4)                    # destination unreachable, frag needed
    assert struct.unpack("!H", icmp[6:8])[0] == 1380       # RFC 1191 next-hop MTU
    assert icmp[8:] == inner[:28]                          # inner header + 8 bytes
    assert ip[ICMP].nexthopmtu == 1380


def test_frag_needed_clamps_and_refuses_what_rfc1812_forbids():
    assert struct.unpack("!H", frag_needed(b"\0" * 4, _inner(), 10)[26:28])[0] == 68
    assert struct.unpack("!H", frag_needed(b"\0" * 4, _inner(), 70000)[26:28])[0] == 65535
    # never an ICMP error about an ICMP error, nor about a non-first fragment
    assert frag_needed(b"\0" * 4, _inner(proto_payload=ICMP(type=3, code=1) / (b"y" * 1400)), 1380) is None
    assert frag_needed(b"\0" * 4, _inner(frag_off=100), 1380) is None
    assert frag_needed(b"\0" * 4, _inner()[:12], 1380) is None
    # an echo request (not an error) is answered
    assert frag_needed(b"\0" * 4, _inner(proto_payload=ICMP(type=8) / (b"y" * 1400)), 1380) is not None


def test_bpf_plane_serves_one_local_address_per_process(monkeypatch):
    """Two endpoints with different addresses in one process (virtual HAs, claim 16) cannot
    share the object's maps: the second is told why, so "auto" takes the next mode."""
    from testbed.tunnel import tcbpf
    monkeypatch.setattr(tcbpf, "_active_local", "198.51.100.1")
    assert "already runs the bpf plane for 198.51.100.1" in tcbpf.bpf_unavailable("198.51.100.2")
