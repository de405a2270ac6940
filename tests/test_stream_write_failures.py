"""No silent loss: a write that fails or is cut short ends the stream, and the client loses nothing.

Live streams run in the hub against real Twisted requests on a real `tcp.Connection` whose
socket misbehaves on cue: it raises, takes part of the bytes, resets after a part, or the
connection goes away. A client reads what reached the socket, reconnects with its own
Last-Event-ID whenever its connection ends, and must see every event exactly once. Both
paths run: the seam's direct writes, and public APIs only (ASGI `send` → `Request.write`).
"""

from __future__ import annotations

import asyncio
import errno
import random
import re
from functools import partial
from typing import Any

import pytest
from twisted.internet import tcp
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, Request

from tasks_app.streams import seam
from tasks_app.streams.hub import Channel, Hub
from tasks_app.streams.log import COMPLETE, PROGRESS, LogEvent
from tasks_app.streams.seam import SCOPE_KEY

EVENTS = 200  # within the ring: no storage needed
ID = re.compile(rb"^id: task-x:(\d+)$", re.M)


@pytest.fixture(params=["internals", "public"])
def path(request: pytest.FixtureRequest, settings: Any) -> str:
    """Run on the seam's direct writes, and on public APIs only."""
    settings.SSE_PUBLIC_APIS_ONLY = request.param == "public"
    settings.SSE_MAX_STREAMS_PER_USER = 1000
    seam.internals.cache_clear()
    yield request.param
    seam.internals.cache_clear()


class Reactor:
    """Registers nothing; runs what is scheduled when the test says so."""

    def __init__(self) -> None:
        self.later: list[tuple] = []

    def addReader(self, reader: Any) -> None:  # noqa: N802
        pass

    addWriter = removeReader = removeWriter = addReader  # noqa: N815

    def callLater(self, delay: float, fn: Any, *args: Any) -> None:  # noqa: N802
        self.later.append((fn, args))

    def run_later(self) -> None:
        while self.later:
            fn, args = self.later.pop(0)
            fn(*args)


class FaultySocket:
    """A socket that takes bytes as the fault asks: all, part, none (raising), or resets."""

    def __init__(self, fault: str, rng: random.Random) -> None:
        self.fault = fault
        self.rng = rng
        self.received = bytearray()
        self.sends = 0
        self.fail_at = rng.randint(2, 12)

    def send(self, data: memoryview) -> int:
        self.sends += 1
        failing = self.sends >= self.fail_at
        if self.fault == "exception" and self.sends == self.fail_at:  # once: the connection lives on
            raise RuntimeError("a framing bug, or an attribute an upgrade renamed")
        if self.fault in ("short", "partial"):
            taken = self.rng.randint(1, max(1, len(data) - 1))
            if self.fault == "partial" and failing:
                self.received += bytes(data[:taken])
                raise ConnectionResetError(errno.ECONNRESET, "reset after a part")
            self.received += bytes(data[:taken])
            return taken
        self.received += bytes(data)
        return len(data)

    def setblocking(self, flag: bool) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        pass

    def setsockopt(self, *args: Any) -> None:
        pass

    def fileno(self) -> int:
        return -1


class Connection(tcp.Connection):
    """A TCP connection over a FaultySocket."""

    def getPeer(self) -> IPv4Address:  # noqa: N802
        return IPv4Address("TCP", "127.0.0.1", 50000)

    getHost = getPeer  # noqa: N815


class Client:
    """One client: its connection, what it read whole, and its Last-Event-ID."""

    def __init__(self, fault: str, seed: int) -> None:
        self.fault = fault
        self.rng = random.Random(seed)
        self.ids: list[int] = []
        self.connects = 0
        self.done = False

    def connect(self) -> tuple[dict, FaultySocket, Connection, Request, Reactor]:
        self.connects += 1
        reactor = Reactor()
        sock = FaultySocket(self.fault, self.rng)
        channel = HTTPChannel()
        transport = Connection(sock, channel, reactor=reactor)
        transport.connected = True
        channel.makeConnection(transport)
        request = Request(channel)
        request.method, request.uri, request.path, request.clientproto = b"GET", b"/", b"/", b"HTTP/1.1"

        async def daphne_send(request: Request, message: dict) -> None:  # Daphne's send, in shape
            if request.channel is not None and not request.finished:
                request.write(message["body"])

        return {SCOPE_KEY: partial(daphne_send, request)}, sock, transport, request, reactor

    def read(self, sock: FaultySocket) -> None:
        """Take the whole events that reached the client (a cut one is dropped, as EventSource does)."""
        raw = bytes(sock.received)
        body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""
        body = dechunk(body)
        for block in body.split(b"\n\n")[:-1]:
            match = ID.search(block)
            if match:
                self.ids.append(int(match.group(1)))
                if b"event: complete" in block:
                    self.done = True

    @property
    def last(self) -> int:
        return self.ids[-1] if self.ids else 0


def flush(transport: Connection) -> bool:
    """Send what the transport buffered, as the reactor would; True when the connection was lost."""
    if transport.disconnected or transport._aborting or not (transport.dataBuffer or transport._tempDataBuffer):
        return False
    try:
        return transport.doWrite() is not None
    except Exception:  # noqa: BLE001 - the reactor drops a connection whose write raised
        return True


def dechunk(body: bytes) -> bytes:
    """The payload of an HTTP/1.1 chunked body, up to where it was cut."""
    out = bytearray()
    while True:
        head, sep, rest = body.partition(b"\r\n")
        if not sep:
            return bytes(out)
        try:
            size = int(head, 16)
        except ValueError:  # the size line itself was cut
            return bytes(out)
        if size == 0 or len(rest) < size:
            return bytes(out + rest[:size])
        out += rest[:size]
        body = rest[size + 2 :]


async def run_client(hub: Hub, channel: Channel, client: Client, published: asyncio.Event) -> None:
    """Follow the stream through every failure until `complete`, reconnecting from the last id."""
    while not client.done:
        assert client.connects < 500, "the stream never got through"
        scope, sock, transport, request, reactor = client.connect()
        channel.holders += 1
        sub = hub.subscribe(
            channel, user_id=1, last_id=client.last, current=0, expires_at=None, ends_on_complete=True, opened_at=0.0
        )
        outlet = seam.outlet(scope)
        serving = asyncio.ensure_future(hub.serve(sub, outlet, b""))
        lost = False
        while not serving.done():
            await asyncio.sleep(0)  # let the hub and the stream run
            lost = flush(transport)
            if client.fault == "closed" and sock.sends >= sock.fail_at and not lost:
                transport.connectionLost(Failure(ConnectionDone()))  # the client went away
                lost = True
            if lost or (published.is_set() and sub.last_id >= EVENTS and not transport.dataBuffer):
                break
        if not serving.done():
            serving.cancel()  # the server hears of the lost connection, or the client leaves
        await asyncio.gather(serving, return_exceptions=True)
        for _ in range(10_000):  # the response's last bytes still reach the client
            if lost or not (transport.dataBuffer or transport._tempDataBuffer):
                break
            lost = flush(transport)
        reactor.run_later()
        client.read(sock)


@pytest.mark.parametrize("fault", ["exception", "short", "partial", "closed"])
def test_failed_or_partial_writes_end_the_stream_and_lose_or_repeat_nothing(path: str, fault: str) -> None:
    async def scenario() -> list[Client]:
        hub = Hub()
        hub.loop = asyncio.get_running_loop()
        channel = hub.channels["task-x"] = Channel("task-x")
        channel.holders = 1
        channel.last = 0
        published = asyncio.Event()
        clients = [Client(fault, seed) for seed in range(20)]
        runs = [asyncio.ensure_future(run_client(hub, channel, c, published)) for c in clients]

        async def publish() -> None:
            rng = random.Random(7)
            eid = 0
            while eid < EVENTS:
                burst = []
                for _ in range(rng.randint(1, 8)):
                    eid += 1
                    kind = COMPLETE if eid == EVENTS else PROGRESS
                    burst.append(LogEvent("task-x", eid, kind, f'{{"n": {eid}}}'))
                    if eid == EVENTS:
                        break
                hub.dispatch(burst)
                for _ in range(rng.randint(1, 5)):
                    await asyncio.sleep(0)
            published.set()

        await publish()
        await asyncio.wait_for(asyncio.gather(*runs), 60)
        return clients

    clients = asyncio.run(scenario())
    for client in clients:
        assert client.done
        assert client.ids == list(range(1, EVENTS + 1)), f"lost or repeated: {client.ids}"
    reconnects = sum(c.connects - 1 for c in clients)
    if fault == "short":
        assert reconnects == 0, "a short write the transport took whole must not end a stream"
    else:
        assert reconnects >= len(clients), "every fault should have ended a stream"
