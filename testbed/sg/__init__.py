"""Security gateway of an M-VPN: IP-IP tunnels to peer SGs, the realm-indexed workgroup
filter following the MSM portal, and per-realm strongSwan responders (claims 2-13)."""
