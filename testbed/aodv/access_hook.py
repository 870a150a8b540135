"""Interface between the AODV agent and the access plane of issue 5 (claims 40-62).

The agent calls the hook natively (`Agent(cfg, access_hook=hook)`). Authentication by
DIAMETER is asynchronous, so the answer is three-way:

    hook.on_hello(m, prev, iface) -> "admit" | "refuse" | "pending"
        every hello carrying an access extension (types 131-134, testbed.access.hello_auth);
        "pending": the sink asked the MSM; the node's next hello gets the verdict.
    hook.guards(iface) -> bool   (optional)
        True for the sink's access interfaces: there plain hellos go to on_hello too, so a
        node cannot skip authentication by leaving the extension out.
    hook.proxied(addr) -> bool
        the sink answers RREQs for `addr` as its proxy (claim 57) and treats datagrams
        from `addr` as its own for discovery and buffering (claims 61-62).
    hook.readers() -> list[(fileobj, callback)]
        sockets the hook needs in the agent's selector loop (DIAMETER completion queue,
        DHCP socket).
    hook.status() -> dict
        merged into the agent's status file under "access".

The access extension types (131-134) are declared here once: the agent tells access
hellos by them, testbed.access.hello_auth builds and parses them.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

ADMIT, REFUSE, PENDING = "admit", "refuse", "pending"

#: access plane hello extensions (issue 5; layouts in testbed.access.hello_auth)
EXT_AUTH = 131       # shared-secret authenticator (claims 40-41)
EXT_CHUNK = 132      # a slice of a certificate / signature blob
EXT_CERTAUTH = 133   # certificate hello header (claims 50-54)
EXT_ROUTES = 134     # what the sink advertises (claims 43-46)
ACCESS_EXT_TYPES = frozenset((EXT_AUTH, EXT_CHUNK, EXT_CERTAUTH, EXT_ROUTES))


class AccessHook(Protocol):
    def on_hello(self, m: Any, prev: str, iface: str) -> str: ...

    def proxied(self, addr: str) -> bool: ...

    def readers(self) -> list[tuple[Any, Callable[[], None]]]: ...

    def status(self) -> dict: ...
