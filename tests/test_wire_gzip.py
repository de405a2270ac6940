"""The stream's gzip encoder: every event decodable on arrival, a valid gzip file, small memory."""

from __future__ import annotations

import asyncio
import gzip
import random
import tracemalloc
import zlib
from collections import deque

import pytest

from tasks_app.streams.hub import KEEPALIVE
from tasks_app.streams.log import frame
from tasks_app.wire_gzip import GzipStream, Lane, accepts_gzip, for_request


def events(count: int) -> list[bytes]:
    """Progress events as a running task sends them."""
    return [
        frame(
            "progress",
            f'{{"task_id":"3f9a1c2e","state":"processing","progress":{10 + i * 0.41:.2f},'
            f'"estimated_time":{88 - i * 0.9:.2f},"updated_at":"2026-12-06T12:40:{i % 60:02d}.{i * 7919:06d}Z",'
            '"stage":"encode","error":null,"attempts":1,"warnings":[]}',
            f"task-3f9a1c2e:{100 + i}",
        )
        for i in range(count)
    ]


def test_each_event_decodes_from_its_own_bytes_without_waiting_for_the_next():
    encoder = GzipStream()
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for event in [*events(20), KEEPALIVE, *events(5)]:
        assert inflate.decompress(encoder.encode(event)) == event


def test_the_whole_body_is_one_valid_gzip_file():
    encoder = GzipStream()
    body = b"".join(encoder.encode(event) for event in events(30)) + encoder.finish()
    assert gzip.decompress(body) == b"".join(events(30))


def test_events_shrink_to_a_fraction_of_their_size():
    encoder = GzipStream()
    plain = events(60)
    encoded = [encoder.encode(event) for event in plain]
    # Past the first, an event costs what changed in it, not its length.
    assert sum(map(len, encoded[1:])) < 0.25 * sum(map(len, plain[1:]))


def test_an_idle_compressed_stream_holds_little_memory():
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        encoders = [GzipStream() for _ in range(50)]
        for encoder in encoders:
            for event in events(10):
                encoder.encode(event)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown / len(encoders) < 16 * 1024


def test_the_body_wrapper_encodes_each_part_and_ends_the_gzip_file():
    encoder = GzipStream()
    closed = []

    async def body():
        try:
            for event in events(3):
                yield event
        finally:
            closed.append(True)

    async def collect() -> list[bytes]:
        return [part async for part in encoder.wrap(body())]

    parts = asyncio.run(collect())
    assert len(parts) == 4 and closed == [True]
    assert gzip.decompress(b"".join(parts)) == b"".join(events(3))


def test_leaving_the_wrapper_closes_the_stream_inside():
    closed = []

    async def body():
        try:
            while True:
                yield KEEPALIVE
        finally:
            closed.append(True)

    async def leave_after_one() -> None:
        wrapped = GzipStream().wrap(body())
        await wrapped.__anext__()
        await wrapped.aclose()

    asyncio.run(leave_after_one())
    assert closed == [True]


class Channel:
    """A channel's ring of framed events, as the hub keeps it, and its lane."""

    def __init__(self, count: int, ring: int = 256) -> None:
        self.log = events(count)
        self.ring: deque[tuple[int, str, bytes]] = deque(maxlen=ring)
        self.lane = Lane(self.ring)

    def publish(self, upto: int) -> None:
        newest = self.ring[-1][0] if self.ring else 0
        self.ring.extend((eid, "progress", self.log[eid - 1]) for eid in range(newest + 1, upto + 1))


class Client:
    """One stream of a channel as the hub writes it, and what its client decodes."""

    def __init__(self, position: int = 0) -> None:
        self.encoder = GzipStream()
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.body: list[bytes] = []
        self.plain: list[bytes] = []
        self.position = position

    def write(self, plain: bytes, encoded: bytes) -> bytes:
        # Every write decodes on arrival, to exactly what was written.
        assert self.inflate.decompress(encoded) == plain
        self.body.append(encoded)
        self.plain.append(plain)
        return encoded

    def events(self, channel: Channel, upto: int) -> bytes:
        """The events after its position up to `upto`, as one write shared through the lane."""
        first = self.position + 1
        data = b"".join(channel.log[first - 1 : upto])
        self.position = upto
        return self.write(data, self.encoder.encode_shared(data, channel.lane, first, upto))

    def alone(self, data: bytes) -> None:
        self.write(data, self.encoder.encode(data, alone=True))

    def finish(self) -> None:
        self.body.append(self.encoder.finish())
        assert gzip.decompress(b"".join(self.body)) == b"".join(self.plain)


def test_streams_at_one_position_share_each_event_s_compression():
    channel = Channel(40)
    channel.publish(1)
    clients = [Client(position=1) for _ in range(100)]
    for client in clients:
        client.alone(channel.log[0])  # the first snapshot
    for eid in range(2, 41):
        channel.publish(eid)
        sent = [client.events(channel, eid) for client in clients]
        if eid > 2:  # the first event after the snapshots lets them all in
            # Compressed once for every stream: the very same bytes object.
            assert all(encoded is sent[0] for encoded in sent)
    shared = b"".join(clients[0].body[2:])
    assert len(shared) < 0.25 * sum(map(len, channel.log[2:]))
    for client in clients:
        client.finish()


def test_a_stream_behind_stays_in_the_lane_and_sends_the_same_bytes_joined():
    channel = Channel(20)
    ahead, behind = Client(), Client()
    channel.publish(1)
    ahead.events(channel, 1)
    behind.events(channel, 1)
    for eid in range(2, 10):
        channel.publish(eid)
        ahead.events(channel, eid)
    catch_up = behind.events(channel, 9)  # eight events in one write, all from the lane
    assert catch_up == b"".join(ahead.body[1:])
    ahead.finish()
    behind.finish()


def test_a_stream_that_writes_outside_the_lane_leaves_it_and_joins_again_at_a_fresh_event():
    channel = Channel(12)
    steady, other = Client(), Client()
    for eid in range(1, 5):
        channel.publish(eid)
        steady.events(channel, eid)
        other.events(channel, eid)
    other.write(b": page\n\n", other.encoder.encode(b": page\n\n"))  # outside the lane: out of it
    channel.publish(5)
    steady.events(channel, 5)
    assert other.events(channel, 5) != steady.body[-1]  # on its own, and it asks to join
    channel.publish(6)
    assert other.events(channel, 6) is steady.events(channel, 6)  # a fresh event: in again
    for eid in range(7, 13):
        channel.publish(eid)
        assert steady.events(channel, eid) is other.events(channel, eid)
    steady.finish()
    other.finish()


def test_any_mix_of_joining_lagging_and_keep_alives_decodes_exactly():
    rng = random.Random(16)
    channel = Channel(600, ring=64)  # a short ring: the lane lets its oldest pieces go too
    clients: list[Client] = []
    through_lane = calls = 0
    for newest in range(1, 601):
        channel.publish(newest)
        if newest % 150 == 0:
            # A hole: the hub starts the ring again after it, and the lane starts again too.
            channel.ring.clear()
            channel.ring.append((newest, "progress", channel.log[newest - 1]))
        if rng.random() < 0.2 or not clients:
            client = Client(position=rng.randrange(0, newest))
            client.alone(b"retry: 2000\n\n")
            clients.append(client)
        rng.shuffle(clients)
        for client in clients:
            roll = rng.random()
            ring_first = channel.ring[0][0]
            if roll < 0.05:
                client.alone(KEEPALIVE)
            elif roll < 0.15 or client.position == newest:
                continue  # its client is not reading, or it has everything
            elif client.position + 1 < ring_first or roll < 0.25:
                # Behind the ring: a page from storage, written on its own.
                upto = min(newest, client.position + rng.randrange(1, 5))
                data = b"".join(channel.log[client.position : upto])
                client.write(data, client.encoder.encode(data))
                client.position = upto
            else:
                client.events(channel, min(newest, client.position + 32))
                calls += 1
                through_lane += client.encoder._lane == client.position
    for client in clients:
        client.finish()
    assert through_lane > 0.8 * calls  # most event writes went through the lane


def test_a_lane_that_starts_again_ahead_never_serves_a_stream_left_behind():
    channel = Channel(40)
    behind, ahead = Client(), Client()
    channel.publish(5)
    behind.events(channel, 5)  # in the lane up to 5
    channel.ring.clear()  # a hole after 5: the ring goes on from 20
    channel.ring.extend((eid, "progress", channel.log[eid - 1]) for eid in range(20, 31))
    ahead.position = 19
    ahead.events(channel, 25)  # the lane starts again at 20, fresh
    assert channel.lane.span(6, 25) is None  # 6..19 are nowhere in the lane
    behind.position = 19  # its page from storage (6..19) went out on its own
    data = b"".join(channel.log[5:19])
    behind.write(data, behind.encoder.encode(data))
    behind.events(channel, 30)  # not in the lane at 19: through its own context, and decodes
    ahead.events(channel, 30)
    behind.finish()
    ahead.finish()


def test_after_a_keep_alive_an_idle_stream_joins_again_at_the_next_event():
    channel = Channel(10)
    clients = [Client() for _ in range(20)]
    for eid in range(1, 4):
        channel.publish(eid)
        for client in clients:
            client.events(channel, eid)
    for client in clients:
        client.alone(KEEPALIVE)  # a quiet spell: every idle stream got one
    channel.publish(4)
    sent = [client.events(channel, 4) for client in clients]
    assert all(encoded is sent[0] for encoded in sent)  # all back in the lane at once
    assert all(client.encoder._deflate is None for client in clients)
    for client in clients:
        client.finish()


def test_a_stream_in_its_lane_holds_no_context_of_its_own():
    channel = Channel(10)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        clients = [GzipStream() for _ in range(200)]
        channel.publish(1)
        for encoder in clients:
            encoder.encode(channel.log[0], alone=True)
        for eid in range(2, 11):
            channel.publish(eid)
            for encoder in clients:
                encoder.encode_shared(channel.log[eid - 1], channel.lane, eid, eid)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown / len(clients) < 1024


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip", True),
        ("gzip, deflate, br, zstd", True),
        ("deflate, GZIP;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, deflate", False),
        ("identity", False),
        ("br", False),
        ("", False),
        (None, False),
    ],
)
def test_accept_encoding_is_read_as_http_says(header, accepted):
    assert accepts_gzip(header) is accepted
    assert (for_request(header) is not None) is accepted
