"""Namespaces, veths and processes for the access netns tests; cleanup removes only what
this test made (names start with `tbt`)."""
from __future__ import annotations

from netns_support import REPO, NetLab, needs, read_json, sh, wait_for  # noqa: F401

needs_root = needs("ip", "nft")


#: send n UDP datagrams from src to dst:port
UDP_SEND = r"""
import socket, sys, time
dst, port, src, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((src, 0))
for i in range(n):
    try:
        s.sendto(f"tbt-{i}".encode(), (dst, port))
    except OSError as e:
        print("send error", e)
    time.sleep(0.01)
"""

#: count UDP datagrams (port) and IP-IP packets for `secs` seconds, print JSON
RECV = r"""
import json, select, socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
print("ready", flush=True)
got = {"udp": [], "ipip": []}
end = time.time() + secs
while time.time() < end:
    rd, _, _ = select.select([u, r], [], [], 0.05)
    for s in rd:
        data, (a, _p) = s.recvfrom(4096)
        if s is u:
            got["udp"].append([a, data.decode(errors="replace")])
        else:
            ihl = (data[0] & 15) * 4
            inner = data[ihl:]
            got["ipip"].append([a, socket.inet_ntoa(inner[12:16]), socket.inet_ntoa(inner[16:20])])
print(json.dumps(got), flush=True)
"""
