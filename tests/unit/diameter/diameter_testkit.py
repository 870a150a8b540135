"""Shared helpers for the DIAMETER tests: a real server on loopback, a raw TCP peer.

No pytest-asyncio here: each test runs its own event loop with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from testbed.diameter import avps as A
from testbed.diameter import constants as C
from testbed.diameter.client import DiameterClient
from testbed.diameter.message import Message, decode, encode
from testbed.diameter.peer import LocalIdentity
from testbed.diameter.server import DiameterServer
from testbed.diameter.static_backend import StaticBackend, StaticUser

REALM = "home.example"
NODE = "mn1.home.example"
SECRET = "mn1-shared-secret"
DEFAULT_ROUTES = ["0.0.0.0/0 10.1.0.254 10", "10.1.0.0/16 0.0.0.0 1"]
DEFAULT_FILTERS = ["permit in ip from assigned to 10.1.0.0/16",
                   "permit out ip from 10.1.0.0/16 to assigned",
                   "deny in ip from any to any"]
FAKE_PEM = "-----BEGIN CERTIFICATE-----\nTUlJQm9n\n-----END CERTIFICATE-----\n"


def make_backend() -> StaticBackend:
    return StaticBackend(
        {NODE: StaticUser(secret=SECRET, certificate_pem=FAKE_PEM),
         "mn2.home.example": StaticUser(secret="other", routes=["10.1.0.0/16 0.0.0.0 1"],
                                        filters=[], allow_authorize_only=False)},
        list(DEFAULT_ROUTES), list(DEFAULT_FILTERS))


@contextlib.asynccontextmanager
async def serving(backend: Any, *, tw: float = 30.0, port: int = 0, **kw: Any) -> AsyncIterator[DiameterServer]:
    server = DiameterServer(LocalIdentity("msm.home.example", REALM), backend, host="127.0.0.1",
                            port=port, tw=tw, **kw)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def client_of(server: DiameterServer, *, tw: float = 30.0,
                    host: str = "msr1.home.example", **kw: Any) -> AsyncIterator[DiameterClient]:
    client = DiameterClient(LocalIdentity(host, REALM), "127.0.0.1", server.port,
                            destination_realm=REALM, tw=tw, tc=0.2, **kw)
    await client.start()
    assert await client.wait_open(5.0), client.last_error
    try:
        yield client
    finally:
        await client.stop()


class RawPeer:
    """A hand-driven TCP peer: sends exactly the bytes a test wants."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.hbh = 100

    @classmethod
    async def connect(cls, port: int) -> "RawPeer":
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = 3.0) -> Message | None:
        """Next message, or None when the server closed the connection."""
        try:
            first = await asyncio.wait_for(self.reader.readexactly(4), timeout)
            length = int.from_bytes(first[1:4], "big")
            rest = await asyncio.wait_for(self.reader.readexactly(length - 4), timeout)
        except asyncio.IncompleteReadError:
            return None
        return decode(first + rest)

    async def closed_by_server(self, timeout: float = 3.0, drain: bool = False) -> bool:
        """True when the server closes within ``timeout``; with ``drain``, bytes it
        still sends before closing (e.g. a DWR) are read and ignored."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                data = await asyncio.wait_for(self.reader.read(65536), max(0.0, left))
            except (ConnectionError, asyncio.TimeoutError):
                return False
            if data == b"":
                return True
            if not drain:
                return False

    def request(self, code: int, app: int, avp_list: list[Any], **kw: Any) -> bytes:
        self.hbh += 1
        return encode(code, request=True, app_id=app, hop_by_hop=self.hbh, end_to_end=self.hbh,
                      avp_list=avp_list, **kw)

    def cer(self, host: str = "raw.home.example", apps: tuple[int, ...] = (C.APP_NASREQ,)) -> bytes:
        avp_list = [A.make(C.AVP_ORIGIN_HOST, host), A.make(C.AVP_ORIGIN_REALM, REALM),
                    A.make_address(C.AVP_HOST_IP_ADDRESS, "127.0.0.1"),
                    A.make(C.AVP_VENDOR_ID, 0), A.make(C.AVP_PRODUCT_NAME, "raw-test")]
        avp_list += [A.make(C.AVP_AUTH_APPLICATION_ID, a) for a in apps]
        return self.request(C.CMD_CAPABILITIES_EXCHANGE, C.APP_COMMON, avp_list)

    async def open(self, host: str = "raw.home.example") -> Message:
        await self.send(self.cer(host))
        cea = await self.recv()
        assert cea is not None and cea.result_code == C.RESULT_SUCCESS
        return cea

    def close(self) -> None:
        self.writer.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
