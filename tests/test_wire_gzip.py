"""The stream's gzip encoder: every event decodable on arrival, a valid gzip file, small memory."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib

import pytest

from tasks_app.streams.hub import KEEPALIVE
from tasks_app.streams.log import frame
from tasks_app.wire_gzip import GzipStream, accepts_gzip, for_request


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
