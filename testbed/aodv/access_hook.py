"""Interface between the AODV agent and the access plane of issue 5 (claims 40-62).

New file (the agent itself is not edited while its helper works on it). The agent already
offers `Agent.attach_guard(m, mn) -> bool` for handover attach hellos; authentication by
DIAMETER is asynchronous, so the access plane needs a three-way answer and two more
questions. The intended contract, for the agent to call natively later:

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

Until the agent calls it natively, `testbed.access.msr` runs the agent and the hook in one
process with the agent's existing extension points only: `attach_guard` (via
`guard_adapter` below), `announced` (a proxied node's /32 is announced while attached, so
the agent's own RREQ answering and TUN buffering act for it) and `loop.add_reader`.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

ADMIT, REFUSE, PENDING = "admit", "refuse", "pending"


class AccessHook(Protocol):
    def on_hello(self, m: Any, prev: str, iface: str) -> str: ...

    def proxied(self, addr: str) -> bool: ...

    def readers(self) -> list[tuple[Any, Callable[[], None]]]: ...

    def status(self) -> dict: ...


def guard_adapter(hook: AccessHook, iface_of: Callable[[str], str | None]) -> Callable[[Any, str], bool]:
    """The agent's synchronous attach_guard from a hook: only "admit" admits."""

    def guard(m: Any, mn: str) -> bool:
        return hook.on_hello(m, mn, iface_of(mn) or "") == ADMIT

    return guard
