"""What following one live task costs on the wire: the SSE stream against polling, per client-minute.

    .venv/bin/python bench/wire_cost.py [--window 20] [--minutes 30] [--rows idle,poll-2,poll-1,sse,sse-gzip]
                                        [--env KEY=VALUE ...]

Starts the service embedded (Daphne and one worker on SQLite, `tests/live_server.py`), uploads a
long pink-noise WAV made by ffmpeg, starts a `normalize` of it and, while it runs, follows it with
one client per row, one row after the other, each for `--window` seconds:

- `sse`, `sse-gzip`: one `GET sse/tasks/{id}/progress`, without and with `Accept-Encoding: gzip`;
- `poll-1`, `poll-2`: `GET tasks/{id}/progress/` every 1 s or 2 s on one kept-alive connection,
  sending `Accept-Encoding: gzip` as browsers do;
- `idle`: no client at all, the server's own CPU while the task runs (subtract it from the rows).

Polling runs before any stream: the first stream starts the server's log poll (one query every
`SSE_POLL_SECONDS` for all the streams of the process, however many), which the stream rows pay.

Bytes are counted on the client's socket, both ways: request and response headers, chunk framing,
keep-alives and gzip framing included. A stream pays its request and response headers once per
connection, so they count once; the rest of its window is scaled to the minute, like every other
figure. Updates are the progress values a client saw change. Server CPU is the Daphne process's
user + system time over the window; stored events are the rows the task's channel gained in the
event log (the worker's writes: each also costs the database a transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.live_server import LiveService, start_service, stop_service  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
ROWS = ("idle", "poll-2", "poll-1", "sse", "sse-gzip")
LABELS = {
    "idle": "no client (server baseline)",
    "sse": "SSE stream, no Accept-Encoding",
    "sse-gzip": "SSE stream, Accept-Encoding: gzip",
    "poll-1": "1 s polling of tasks/{id}/progress/",
    "poll-2": "2 s polling of tasks/{id}/progress/",
}


@dataclass
class Row:
    """What one client cost and saw over its window."""

    name: str
    seconds: float
    requests: int = 0
    bytes: int = 0
    # Bytes a stream pays once however long it lasts: its request and its response's headers.
    once: int = 0
    updates: int = 0
    events: int = 0
    cpu: float = 0.0
    stored: int = 0
    still_running: bool = True

    def per_minute(self, value: float) -> float:
        """`value` scaled from the window to one minute."""
        return value * 60.0 / self.seconds

    def bytes_per_minute(self) -> float:
        """Bytes of one minute: what is paid once, then the rest of the window scaled."""
        return self.once + self.per_minute(self.bytes - self.once)


class Wire:
    """One HTTP/1.1 connection that counts every byte it sends and receives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sent = 0
        self.received = 0
        self.buffer = b""
        self.head_bytes = 0

    @classmethod
    async def open(cls, port: int) -> Wire:
        """Connect to the service on loopback."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def get(self, path: str, headers: dict[str, str]) -> None:
        """Send a GET request."""
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.sent += len(data)
        self.writer.write(data)
        await self.writer.drain()

    async def _fill(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.received += len(data)
        self.buffer += data

    async def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            await self._fill()
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def head(self) -> tuple[int, dict[str, str]]:
        """Status and headers of the next response."""
        raw = await self._until(b"\r\n\r\n")
        self.head_bytes = len(raw) + 4
        lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers

    async def parts(self, headers: dict[str, str]):
        """The response body as it arrives (chunks undone), until it ends."""
        if headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await self._until(b"\r\n")).split(b";")[0], 16)
                data = await self._exactly(size)
                await self._exactly(2)
                if not size:
                    return
                yield data
        else:
            yield await self._exactly(int(headers.get("content-length", "0")))

    def close(self) -> None:
        """Drop the connection."""
        self.writer.close()


def decoder(headers: dict[str, str]):
    """A function undoing the response's Content-Encoding part by part."""
    if headers.get("content-encoding") == "gzip":
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return inflate.decompress
    return lambda data: data


async def follow_stream(port: int, task_id: str, token: str, gzip: bool, seconds: float, row: Row) -> None:
    """One SSE client for `seconds`: bytes, events and progress updates seen."""
    wire = await Wire.open(port)
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if gzip:
        headers["Accept-Encoding"] = "gzip"
    await wire.get(f"/api/v1/sse/tasks/{task_id}/progress", headers)
    row.requests = 1
    text = b""
    seen: tuple | None = None

    async def read() -> None:
        nonlocal text, seen
        status, response_headers = await wire.head()
        assert status == 200, status
        row.once = wire.sent + wire.head_bytes
        decode = decoder(response_headers)
        async for part in wire.parts(response_headers):
            text += decode(part)
            *events, text = text.split(b"\n\n")
            for event in events:
                fields = dict(line.split(b": ", 1) for line in event.split(b"\n") if b": " in line and line[:1] != b":")
                if fields.get(b"event") != b"progress":
                    continue
                row.events += 1
                data = json.loads(fields[b"data"])
                value = (data["state"], data["stage"], data["progress"], data["estimated_time"])
                if value != seen:
                    seen = value
                    row.updates += 1

    try:
        await asyncio.wait_for(read(), seconds)
    except TimeoutError:
        pass
    row.bytes = wire.sent + wire.received
    wire.close()


async def poll(port: int, task_id: str, token: str, every: float, seconds: float, row: Row) -> None:
    """Poll the progress endpoint every `every` s on one kept-alive connection for `seconds`."""
    wire = await Wire.open(port)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "Accept-Encoding": "gzip"}
    start = time.monotonic()
    seen: tuple | None = None
    while (due := start + row.requests * every) < start + seconds:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await wire.get(f"/api/v1/tasks/{task_id}/progress/", headers)
        status, response_headers = await wire.head()
        body = b"".join([part async for part in wire.parts(response_headers)])
        assert status == 200, status
        row.requests += 1
        data = json.loads(decoder(response_headers)(body))
        value = (data["state"], data["stage"], data["progress"], data["estimated_time"])
        row.events += 1
        if value != seen:
            seen = value
            row.updates += 1
    row.bytes = wire.sent + wire.received
    wire.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def stored_events(service: LiveService, channel: str) -> int:
    """The newest event id of a channel in the service's SQLite log."""
    with sqlite3.connect(f"file:{service.data_dir / 'db.sqlite3'}?mode=ro", uri=True, timeout=30) as db:
        row = db.execute("SELECT value FROM django_eventstream_eventcounter WHERE name = ?", (channel,)).fetchone()
    return row[0] if row else 0


def task_state(service: LiveService, token: str, task_id: str) -> dict:
    """The task's progress, read once through the API."""
    with service.client(token) as client:
        return client.get(f"/api/v1/tasks/{task_id}/progress/").json()


async def measure(service: LiveService, name: str, task_id: str, token: str, seconds: float) -> Row:
    """Run one row's client for its window, with the server's CPU and the log's growth around it."""
    port = int(service.base_url.rsplit(":", 1)[1])
    row = Row(name, seconds)
    channel = f"task-{task_id}"
    cpu0, stored0 = cpu_seconds(service.daphne.pid), stored_events(service, channel)
    if name == "idle":
        await asyncio.sleep(seconds)
    elif name.startswith("sse"):
        await follow_stream(port, task_id, token, name == "sse-gzip", seconds, row)
    else:
        await poll(port, task_id, token, float(name.split("-")[1]), seconds, row)
    row.cpu = cpu_seconds(service.daphne.pid) - cpu0
    row.stored = stored_events(service, channel) - stored0
    row.still_running = task_state(service, token, task_id)["state"] == "processing"
    return row


def make_wav(path: Path, minutes: float) -> None:
    """A 44.1 kHz stereo pink-noise WAV (the encoder's work per minute does not depend on the content)."""
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"anoisesrc=color=pink:amplitude=0.3:sample_rate=44100:duration={minutes * 60:g}",
            "-ac",
            "2",
            str(path),
        ],
        check=True,
    )


def table(rows: list[Row]) -> str:
    """The rows per client-minute, as a Markdown table."""
    out = [
        "| per client-minute | requests | bytes on the wire | updates seen | events received | server CPU, ms | "
        "events stored |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        note = "" if row.still_running else " (task ended in the window)"
        cells = [
            # A stream is one request however long it lasts.
            f"{row.requests if row.name.startswith('sse') else row.per_minute(row.requests):.0f}",
            f"{row.bytes_per_minute():,.0f}",
            f"{row.per_minute(row.updates):.0f}",
            f"{row.per_minute(row.events):.0f}",
            f"{row.per_minute(row.cpu) * 1000:.0f}",
            f"{row.per_minute(row.stored):.0f}",
        ]
        out.append(f"| {LABELS[row.name]}{note} | " + " | ".join(cells) + " |")
    return "\n".join(out)


async def run(args: argparse.Namespace, service: LiveService, task_id: str, token: str) -> list[Row]:
    """Every row, one after the other, on the same running task."""
    return [await measure(service, name, task_id, token, args.window) for name in args.rows]


def main() -> None:
    """Parse the options, run the rows, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=20.0, help="seconds each row follows the task")
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the WAV being normalised")
    parser.add_argument("--rows", type=lambda text: text.split(","), default=list(ROWS))
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the service, e.g. a setting")
    args = parser.parse_args()
    unknown = set(args.rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    extra = dict(item.split("=", 1) for item in args.env)
    folder = Path(tempfile.mkdtemp(prefix="wire-cost-"))
    service = None
    try:
        wav = folder / "long.wav"
        make_wav(wav, args.minutes)
        (folder / "service").mkdir()
        service = start_service(folder / "service", extra_env=extra)
        token = service.token("alice")
        audio = service.upload(token, wav)
        wav.unlink()
        task = service.create_task(token, audio["id"], kind="normalize")
        deadline = time.monotonic() + 120
        while task_state(service, token, task["id"])["progress"] <= 0:
            assert time.monotonic() < deadline, "the task did not start"
            time.sleep(0.2)
        rows = asyncio.run(run(args, service, task["id"], token))
    finally:
        if service is not None:
            stop_service(service)
        shutil.rmtree(folder, ignore_errors=True)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    settings = " ".join(args.env) or "defaults"
    print(f"Following a normalize of a {args.minutes:g}-minute WAV, {args.window:g} s per row ({settings}); {load}")
    print(table(rows))


if __name__ == "__main__":
    main()
