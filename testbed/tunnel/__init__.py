"""IP-in-IP tunnel endpoints shared by the SG and Mobile IP: kernel ipip devices, tc BPF
(bpf/ipip_tc.bpf.c) or TUN + raw socket in userspace, chosen per node by modes.py."""
from testbed.tunnel.ipip import IpipEndpoint, Peer, PeerCounters, kernel_ipip_available

__all__ = ["IpipEndpoint", "Peer", "PeerCounters", "kernel_ipip_available"]
