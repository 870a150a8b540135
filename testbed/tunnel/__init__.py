"""Tunnel endpoints (IP-in-IP over raw sockets and TUN devices) shared by the SG and Mobile IP."""
from testbed.tunnel.ipip import IpipEndpoint, Peer, PeerCounters, kernel_ipip_available

__all__ = ["IpipEndpoint", "Peer", "PeerCounters", "kernel_ipip_available"]
