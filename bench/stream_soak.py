"""Soak: does the web process's memory stay flat while streams churn and the API is busy?

    .venv/bin/python bench/stream_soak.py [--minutes 30] [--streams 1000] [--api-rate 50]
                                          [--warmup 5] [--public]

Starts the embedded service (Daphne and one worker on a temporary SQLite database, loopback
only), then every minute opens `--streams` streams, holds them, and closes them all, while
the API answers `--api-rate` GETs a second and a task is created and run every few seconds.
Every 10 s it samples the web process: RSS, and `python_gc_frozen_objects` from /metrics
(the collector's permanent generation: the start-up heap, and streams frozen as they open while
no request is in flight, see tasks_app/streams/collector.py). It reports
RSS growth from the end of `--warmup` minutes to the end (first sample to last, and minute to
minute at the same point of the churn: each minute's peak and low), the freeze count's range,
and the API's latency. `--public` runs the server on public APIs only (SSE_PUBLIC_APIS_ONLY).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks_app.audio.generate import write_tone  # noqa: E402
from tests.live_server import start_service, stop_service  # noqa: E402


def rss_kb(pid: int) -> int:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def request(port: int, path: str, token: str, method: str = "GET", body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request on its own connection; the status and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1]) if data else 0
    return status, data.split(b"\r\n\r\n", 1)[-1]


async def hold_stream(port: int, path: str, token: str, until: float) -> str:
    """Open a stream, read it until `until` (monotonic), then drop it; how it went."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return "refused"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    try:
        while time.monotonic() < until:
            try:
                if not await asyncio.wait_for(reader.read(65536), max(0.01, until - time.monotonic())):
                    return "ended"
            except TimeoutError:
                break
    except ConnectionError:
        return "reset"
    finally:
        writer.close()
    return "held"


async def soak(args: argparse.Namespace, port: int, token: str, audio_id: int, pid: int) -> dict:
    """Run the churn, the API load and the tasks; sample the web process."""
    samples: list[dict] = []
    latencies: list[float] = []
    errors = 0
    outcomes: dict[str, int] = {}
    start = time.monotonic()
    end = start + args.minutes * 60
    user_path = "/api/v1/sse/tasks/progress"

    async def api() -> None:
        nonlocal errors
        period = 1.0 / args.api_rate
        tick = time.monotonic()
        pending: set[asyncio.Task] = set()

        async def one() -> None:
            nonlocal errors
            t0 = time.perf_counter()
            status, _ = await request(port, "/api/v1/tasks/?page_size=5", token)
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += status != 200

        while time.monotonic() < end:
            task = asyncio.ensure_future(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            tick += period
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        await asyncio.gather(*pending, return_exceptions=True)

    async def tasks() -> None:
        while time.monotonic() < end:
            await request(port, "/api/v1/tasks/", token, "POST", json.dumps({"audio_file": audio_id}).encode())
            await asyncio.sleep(5)

    async def churn() -> None:
        while time.monotonic() < end:
            minute = time.monotonic()
            close_at = minute + 40
            streams = []
            for _ in range(args.streams):  # opened over the first 20 s of the minute
                # The user's channel: a stream on a task would end as soon as its task does.
                streams.append(asyncio.ensure_future(hold_stream(port, user_path, token, close_at)))
                await asyncio.sleep(20 / args.streams)
            for outcome in await asyncio.gather(*streams):
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            await asyncio.sleep(max(0.0, minute + 60 - time.monotonic()))

    async def sample() -> None:
        while time.monotonic() < end:
            status, body = await request(port, "/metrics", token)
            frozen = re.search(rb"^python_gc_frozen_objects (\S+)", body, re.M)
            streams = re.search(rb"^sse_open_streams (\S+)", body, re.M)
            busy = re.search(rb"^http_requests_in_flight (\S+)", body, re.M)
            freezes = re.search(rb"^python_gc_freezes (\S+)", body, re.M)
            shed = re.search(rb"^http_requests_shed (\S+)", body, re.M)
            samples.append(
                {
                    "t": round(time.monotonic() - start),
                    "rss_kb": rss_kb(pid),
                    "frozen": int(float(frozen.group(1))) if frozen else None,
                    "streams": int(float(streams.group(1))) if streams else None,
                    "in_flight": int(float(busy.group(1))) if busy else None,
                    "freezes": int(float(freezes.group(1))) if freezes else None,
                    "shed": int(float(shed.group(1))) if shed else None,
                }
            )
            print(json.dumps(samples[-1]), flush=True)
            await asyncio.sleep(10)

    await asyncio.gather(api(), tasks(), churn(), sample())
    after = [s for s in samples if s["t"] >= args.warmup * 60] or samples
    base, last = after[0]["rss_kb"], samples[-1]["rss_kb"]
    frozen = [s["frozen"] for s in samples if s["frozen"] is not None]
    # RSS swings within each minute as its 1,000 streams open and close: compare minutes at the
    # same point of the cycle, their peak (all streams open) and their low (all closed).
    minutes: dict[int, list[int]] = {}
    for s in samples:
        minutes.setdefault(s["t"] // 60, []).append(s["rss_kb"])
    whole = [m for m in sorted(minutes) if m >= args.warmup and len(minutes[m]) >= 5]
    first, final = (minutes[whole[0]], minutes[whole[-1]]) if whole else (None, None)
    return {
        "rss_mb_by_minute_low_peak": {m: [round(min(v) / 1024), round(max(v) / 1024)] for m, v in minutes.items()},
        "peak_growth_pct": round(100 * (max(final) - max(first)) / max(first), 1) if whole else None,
        "low_growth_pct": round(100 * (min(final) - min(first)) / min(first), 1) if whole else None,
        "rss_mb_at_warmup": round(base / 1024, 1),
        "rss_mb_at_end": round(last / 1024, 1),
        "rss_mb_peak": round(max(s["rss_kb"] for s in samples) / 1024, 1),
        "rss_growth_pct": round(100 * (last - base) / base, 1),
        "frozen_min_max": [min(frozen), max(frozen)] if frozen else None,
        # With no stream open: what stays frozen (the start-up heap, and anything frozen for good).
        "frozen_low_at_warmup_and_end": [min(s["frozen"] for s in after[:6]), min(s["frozen"] for s in samples[-6:])]
        if frozen
        else None,
        "streams": outcomes,
        "api_requests": len(latencies),
        "api_errors": errors,
        "api_shed_503": samples[-1]["shed"] if samples else None,
        "api_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "api_p99_ms": round(sorted(latencies)[int(len(latencies) * 0.99) - 1], 1) if latencies else None,
    }


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--api-rate", type=float, default=50)
    parser.add_argument("--public", action="store_true")
    parser.add_argument("--keep-log", type=Path, help="copy the server's log here at the end")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    env = {
        "SSE_MAX_STREAMS_PER_USER": str(args.streams + 100),
        "METRICS_ALLOWED_IPS": "127.0.0.1",
        "THROTTLE_ANON": "1000000/min",
        "THROTTLE_USER": "1000000/min",
        "SSE_PUBLIC_APIS_ONLY": "1" if args.public else "",
    }
    service = start_service(tmp, extra_env=env)
    try:
        token = service.token("alice")
        wav = tmp / "tone.wav"
        write_tone(str(wav), 20.0)
        audio = service.upload(token, wav)
        port = int(service.base_url.rsplit(":", 1)[1])
        result = asyncio.run(soak(args, port, token, audio["id"], service.daphne.pid))
        print(json.dumps({"args": vars(args), **result}, indent=2))
    finally:
        stop_service(service)
        if args.keep_log:
            shutil.copyfile(tmp / "daphne.log", args.keep_log)
        log = (tmp / "daphne.log").read_text(errors="replace").splitlines()
        print("\n".join(line for line in log if "HTTP" not in line and "- - [" not in line)[-3000:])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
