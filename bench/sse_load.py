"""Load figures for the live stream, side by side in one run on loopback.

    .venv/bin/python bench/sse_load.py [--streams 1000] [--idle 5000] [--idle-big 10000]
                                       [--targets ours,ours-redis,ours-public,stock,aiohttp] [--quick] [--gzip]
                                       [--phases users,one,spread,fanout,idle,idle_big] [--lockstep]

Targets, each a Daphne (or aiohttp) process on 127.0.0.1 started and stopped here:

- `ours`: the service's embedded default (SQLite, no Redis; the worker's path to the server is
  the log poll).
- `ours-redis`: the scaled shape (PostgreSQL + Redis pub/sub).
- `ours-public`: the embedded default on public server APIs only (`SSE_PUBLIC_APIS_ONLY`: the
  seam's fallback when Daphne's, Twisted's or Django's internals are not as expected).
- `stock`: django-eventstream's own view (database storage, Redis pub/sub) in this project.
- `aiohttp`: a bare aiohttp SSE server fed by Redis pub/sub: the floor.

Figures: idle RSS, threads and database connections per stream; server CPU per connect;
commit → client latency p50/p99 for many subscribers of one task, for one stream on each of
many tasks, and (ours) for 50 users' running tasks; fan-out deliveries/s of a burst with lost
and repeated events; the p99 of a plain GET while streams are busy (event-loop stalls show
there); garbage-collector pauses the server logged; CPU of 10,000 idle streams; bytes and
requests per client-minute against 2 s polling. Everything runs on this machine, so the
client competes with the server for the same 2 cores: compare rows, not absolute numbers.

The publisher writes to each task once a period, its writes spread over the period as tasks on
their own workers report. With `--lockstep` it writes each round back to back: then how fast it
commits decides how many events one log poll finds and writes out in turn, and a faster
publisher shows as a slower stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SEQ = re.compile(rb'"(?:stage": ?"s|seq": ?)(\d+)')
CLK = os.sysconf("SC_CLK_TCK")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


# ------------------------------------------------------------------ processes


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_kb(pid: int) -> int:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def threads(pid: int) -> int:
    """Threads of a process."""
    return len(os.listdir(f"/proc/{pid}/task"))


def db_connections(pid: int, target: Target) -> int:
    """Database connections the server holds: SQLite file handles, or PostgreSQL sessions."""
    if target.pg_name:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            return (
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                    "AND client_port IS NOT NULL AND pid <> pg_backend_pid()",
                    (target.pg_name,),
                ).fetchone()[0]
                - target.pg_baseline
            )
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith("db.sqlite3"):
                count += 1
        except OSError:
            pass
    return count


@dataclass
class Target:
    """One server under test and how to reach it."""

    name: str
    env: dict
    tmp: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    publisher: subprocess.Popen | None = None
    pg_name: str = ""
    pg_baseline: int = 0
    kind: str = "ours"  # ours | stock | aiohttp
    streams: list[tuple[str, str]] = field(default_factory=list)  # (path, token)
    gc_log: Path | None = None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        self.port = free_port()
        log = open(self.tmp / f"{self.name}.log", "wb")
        if self.kind == "aiohttp":
            argv = [PY, __file__, "_aiohttp", str(self.port)]
        else:
            argv = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "project.asgi:application"]
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                assert self.proc.poll() is None, (self.tmp / f"{self.name}.log").read_text()
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        """Stop the server and the publisher."""
        for proc in (self.proc, self.publisher):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)

    def log_text(self) -> str:
        """The server's output so far."""
        return (self.tmp / f"{self.name}.log").read_text(errors="replace")

    def publish(self, command: dict) -> dict:
        """Ask the publisher process to write events; return its report."""
        assert self.publisher is not None and self.publisher.stdin and self.publisher.stdout
        self.publisher.stdin.write(json.dumps(command) + "\n")
        self.publisher.stdin.flush()
        line = self.publisher.stdout.readline()
        if not line:
            raise RuntimeError("publisher died: " + (self.tmp / "publisher.log").read_text())
        return json.loads(line)


def make_target(name: str, base: Path, users: int, tasks_per_user: int) -> Target:
    """Prepare a target's database, users, tasks and tokens; start its publisher."""
    tmp = base / name
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "EVENTSTREAM_REDIS", "MEDIA_ROOT"}}
    env.update(
        {
            "DATA_DIR": str(tmp),
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "SSE_MAX_STREAMS_PER_USER": "100000",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
    )
    target = Target(name, env, tmp)
    if name == "aiohttp":
        env["EVENTSTREAM_REDIS"] = REDIS_URL
    if name == "ours-public":
        env["SSE_PUBLIC_APIS_ONLY"] = "1"  # the seam's fallback: public server APIs only
    if name == "stock":
        # SQLite, as the stock view holds a database connection per open stream: a thousand
        # streams would exhaust PostgreSQL's connection limit.
        env["EVENTSTREAM_REDIS"] = REDIS_URL
    if name == "ours-redis":
        import psycopg

        target.pg_name = f"sse_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{target.pg_name}"')
        env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{target.pg_name}"
        env["EVENTSTREAM_REDIS"] = REDIS_URL
        env["SSE_REDIS_CHANNEL"] = f"events_{target.pg_name}"
    if name == "stock":
        target.kind = "stock"
        env["DJANGO_SETTINGS_MODULE"] = "bench.stock_settings"
        env["SSE_REDIS_CHANNEL"] = "events_channel"  # the stock view listens there only
    if name == "aiohttp":
        target.kind = "aiohttp"
    if target.kind != "aiohttp":
        subprocess.run([PY, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True)
    out = subprocess.run(
        [PY, __file__, "_setup", target.kind, str(users), str(tasks_per_user)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    target.streams = [tuple(row) for row in json.loads(out.stdout.splitlines()[-1])]
    target.publisher = subprocess.Popen(
        [PY, __file__, "_publish", target.kind],
        cwd=ROOT,
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(tmp / "publisher.log", "wb"),
        start_new_session=True,
    )
    return target


def drop_target(target: Target) -> None:
    """Stop everything and drop the target's database."""
    target.stop()
    if target.pg_name:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target.pg_name}" WITH (FORCE)')


# ---------------------------------------------------------------------- client


class Stream:
    """One SSE connection that records the arrival time of every sequence number it sees."""

    __slots__ = ("reader", "writer", "seen", "status", "bytes", "task", "paused", "inflate", "framed")

    # Set by --gzip: every stream asks for gzip, as browsers do, and undoes it as it reads.
    GZIP = False

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []
        self.status = 0
        self.bytes = 0
        self.task: asyncio.Task | None = None
        self.paused = False
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.GZIP else None
        self.framed = b""  # chunked body bytes not yet undone (--gzip only)

    async def open(self, port: int, path: str, token: str) -> None:
        """Connect, send the request, read the status line and headers."""
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        gzip = "Accept-Encoding: gzip\r\n" if self.inflate else ""
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{gzip}Accept: text/event-stream\r\n\r\n".encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        if b"\r\ncontent-encoding: gzip\r\n" not in head.lower():
            self.inflate = None  # a target that does not compress

    async def read(self) -> None:
        """Read until the connection ends, noting each sequence number's arrival."""
        seen = self.seen
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                return
            now = time.time()
            self.bytes += len(chunk)
            if self.inflate is not None:
                chunk = self.unchunk(chunk)
            for match in SEQ.finditer(chunk):
                seen.append((int(match.group(1)), now))

    def unchunk(self, data: bytes) -> bytes:
        """The decompressed text of the whole chunks received so far (HTTP/1.1 chunked, gzip)."""
        self.framed += data
        out = []
        while (end := self.framed.find(b"\r\n")) >= 0:
            size = int(self.framed[:end].split(b";")[0] or b"0", 16)
            if len(self.framed) < end + 2 + size + 2:
                break
            out.append(self.inflate.decompress(self.framed[end + 2 : end + 2 + size]))
            self.framed = self.framed[end + 2 + size + 2 :]
        return b"".join(out)

    def close(self) -> None:
        """Drop the connection."""
        if self.task:
            self.task.cancel()
        self.writer.close()


async def open_streams(
    target: Target, rows: list[tuple[str, str]], *, concurrency: int = 100
) -> tuple[list[Stream], float]:
    """Open one stream per row; return them and the server CPU seconds spent per connect."""
    gate = asyncio.Semaphore(concurrency)
    before = cpu_seconds(target.proc.pid)

    async def one(path: str, token: str) -> Stream:
        async with gate:
            stream = Stream()
            await stream.open(target.port, path, token)
            stream.task = asyncio.get_running_loop().create_task(stream.read())
            return stream

    streams = await asyncio.gather(*(one(p, t) for p, t in rows))
    await asyncio.sleep(1.0)  # let the snapshots arrive before counting CPU
    spent = cpu_seconds(target.proc.pid) - before
    bad = [s.status for s in streams if s.status != 200]
    assert not bad, f"{len(bad)} streams refused: {bad[:5]}"
    return list(streams), spent / len(rows)


async def probe_get(target: Target, path: str, token: str, stop: asyncio.Event, out: list[float]) -> None:
    """A plain GET every 20 ms until `stop`: its latency shows event-loop stalls."""
    while not stop.is_set():
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n".encode())
        await reader.read()
        writer.close()
        out.append((time.monotonic() - started) * 1000)
        await asyncio.sleep(0.02)


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def deliveries(
    streams: list[Stream], sent: dict[int, float], by_stream: list[set[int]]
) -> tuple[list[float], int, int, float]:
    """Latencies (ms), lost, repeated, and the last arrival time, over a phase's events."""
    latencies, lost, repeated, last = [], 0, 0, 0.0
    for stream, expected in zip(streams, by_stream):
        got = [(seq, at) for seq, at in stream.seen if seq in sent]
        seqs = [seq for seq, _ in got]
        repeated += len(seqs) - len(set(seqs))
        lost += len(expected - set(seqs))
        for seq, at in got:
            latencies.append((at - sent[seq]) * 1000)
            last = max(last, at)
    return latencies, lost, repeated, last


async def wait_delivered(streams: list[Stream], expected: int, timeout: float) -> None:
    """Wait until the streams saw `expected` events in all, or the timeout passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(len(s.seen) for s in streams) >= expected:
            return
        await asyncio.sleep(0.1)


# ----------------------------------------------------------------- scenarios


async def latency_phase(
    target: Target,
    rows: list[tuple[str, str]],
    channel_of: list[str],
    *,
    rate: float,
    seconds: float,
    lockstep: bool = False,
) -> dict:
    """Streams on `rows`; the publisher writes to each distinct channel at `rate`/s."""
    streams, cpu_per_connect = await open_streams(target, rows)
    for stream in streams:
        stream.seen.clear()
    channels = sorted(set(channel_of))
    stop, probe = asyncio.Event(), []
    probe_task = asyncio.create_task(probe_get(target, *probe_path(target), stop, probe))
    report = await asyncio.to_thread(
        target.publish, {"cmd": "rate", "channels": channels, "rate": rate, "seconds": seconds, "lockstep": lockstep}
    )
    sent = {int(k): v for k, v in report["sent"].items()}
    per_channel: dict[str, set[int]] = {}
    for seq, channel in report["channel"].items():
        per_channel.setdefault(channel, set()).add(int(seq))
    expected = [per_channel.get(c, set()) for c in channel_of]
    await wait_delivered(streams, sum(len(e) for e in expected), 30)
    stop.set()
    await probe_task
    latencies, lost, repeated, _ = deliveries(streams, sent, expected)
    for stream in streams:
        stream.close()
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "lost": lost,
        "repeated": repeated,
        "events": len(sent),
        "cpu_per_connect_ms": cpu_per_connect * 1000,
        "get_p99": percentile(probe, 99),
        "get_max": max(probe, default=float("nan")),
    }


async def fanout_phase(target: Target, rows: list[tuple[str, str]], channel: str, count: int) -> dict:
    """Many subscribers of one channel; the publisher writes `count` events back to back."""
    streams, _ = await open_streams(target, rows)
    for stream in streams:
        stream.seen.clear()
    cpu = cpu_seconds(target.proc.pid)
    report = await asyncio.to_thread(target.publish, {"cmd": "burst", "channel": channel, "count": count})
    sent = {int(k): v for k, v in report["sent"].items()}
    await wait_delivered(streams, len(sent) * len(streams), 120)
    cpu = cpu_seconds(target.proc.pid) - cpu
    latencies, lost, repeated, last = deliveries(streams, sent, [set(sent)] * len(streams))
    first, published = min(sent.values()), max(sent.values())
    for stream in streams:
        stream.close()
    return {
        "deliveries_per_s": (len(latencies)) / max(last - first, 1e-6),
        # How long the publisher took to commit the burst: the fan-out cannot end sooner.
        "publish_s": published - first,
        "deliver_s": last - first,
        # The server's CPU for the whole burst (hearing of the events, framing, writing) per
        # 1,000 deliveries: what the engine costs, whoever is the bottleneck.
        "cpu_ms_per_1000": cpu * 1000 / max(len(latencies), 1) * 1000,
        "lost": lost,
        "repeated": repeated,
    }


async def idle_phase(target: Target, rows: list[tuple[str, str]], *, watch: float) -> dict:
    """Open idle streams; memory, threads, connections per stream and idle CPU."""
    pid = target.proc.pid
    base = {"rss": rss_kb(pid), "threads": threads(pid), "db": db_connections(pid, target)}
    streams, cpu_per_connect = await open_streams(target, rows)
    await asyncio.sleep(2)
    before = cpu_seconds(pid)
    await asyncio.sleep(watch)
    idle_cpu = (cpu_seconds(pid) - before) / watch
    stop, probe = asyncio.Event(), []
    probe_task = asyncio.create_task(probe_get(target, *probe_path(target), stop, probe))
    await asyncio.sleep(min(watch, 10))
    stop.set()
    await probe_task
    n = len(streams)
    result = {
        "streams": n,
        "rss_kb_per_stream": (rss_kb(pid) - base["rss"]) / n,
        "threads_per_stream": (threads(pid) - base["threads"]) / n,
        "db_per_stream": (db_connections(pid, target) - base["db"]) / n,
        "idle_cpu_pct": idle_cpu * 100,
        "cpu_per_connect_ms": cpu_per_connect * 1000,
        "get_p99": percentile(probe, 99),
        "get_max": max(probe, default=float("nan")),
    }
    for stream in streams:
        stream.close()
    await asyncio.sleep(5)  # let the server take the disconnects before the next phase
    return result


def probe_path(target: Target) -> tuple[str, str]:
    """A cheap GET on the target (ours: the polling endpoint of a task)."""
    if target.kind == "ours":
        path, token = target.streams[0]
        task_id = path.split("/")[5]
        return f"/api/v1/tasks/{task_id}/progress/", token
    return "/nothing", ""


def gc_pauses(target: Target) -> list[float]:
    """Collector pauses over the threshold the server logged (ms)."""
    return [float(m) for m in re.findall(r"garbage collection paused the server for ([\d.]+) ms", target.log_text())]


def polling_cost(target: Target) -> dict:
    """Bytes and requests per client-minute: 2 s polling against the stream."""
    import httpx

    path, token = probe_path(target)
    with httpx.Client(base_url=f"http://127.0.0.1:{target.port}", timeout=120) as client:
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
    request = len(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\nAuthorization: Bearer {token}\r\nAccept: */*\r\n\r\n"
    )
    head = sum(len(k) + len(v) + 4 for k, v in response.headers.items()) + 17
    return {"requests": 30, "bytes": 30 * (request + head + len(response.content))}


# -------------------------------------------------------------------- the run


def rows_for(target: Target, which: str, n: int) -> tuple[list[tuple[str, str]], list[str]]:
    """Stream rows for a scenario: `one` task, `spread` over n tasks, or `users` (50 tasks)."""
    if which == "one":
        chosen = [target.streams[0]] * n
    elif which == "users":
        per_user = max(1, len(target.streams) // 50)
        tasks = target.streams[::per_user][:50]
        chosen = [tasks[i % len(tasks)] for i in range(n)]
    else:
        chosen = [target.streams[i % len(target.streams)] for i in range(n)]
    return chosen, [path for path, _ in chosen]


async def run_target(target: Target, args: argparse.Namespace) -> dict:
    """Every scenario against one target; a scenario the target fails is noted, not fatal."""
    out: dict = {"failed": []}
    n = args.streams

    async def phase(key: str, run) -> None:
        if args.phases and key not in args.phases:
            return
        if target.proc.poll() is not None:
            out["failed"].append(f"{key} (server gone)")
            return
        try:
            out[key] = await run()
        except Exception as exc:  # noqa: BLE001 - e.g. the stock view at 10,000 threads
            out["failed"].append(f"{key} ({type(exc).__name__})")
            print(f"{target.name}: {key} failed: {exc!r}", file=sys.stderr, flush=True)

    def latency(rows: list[tuple[str, str]], channels: list[str], rate: float):
        return lambda: latency_phase(target, rows, channels, rate=rate, seconds=args.seconds, lockstep=args.lockstep)

    embedded = target.kind == "ours" and not target.pg_name
    if embedded:
        await phase("users", latency(*rows_for(target, "users", n), args.rate))
    one_rows, one_channels = rows_for(target, "one", n)
    await phase("one", latency(one_rows, one_channels, args.rate))
    await phase("spread", latency(*rows_for(target, "spread", n), args.spread_rate))
    await phase("fanout", lambda: fanout_phase(target, one_rows, one_channels[0], args.burst))
    idle_rows, _ = rows_for(target, "spread", args.idle)
    await phase("idle", lambda: idle_phase(target, idle_rows, watch=args.watch))
    if args.idle_big:
        big_rows, _ = rows_for(target, "spread", args.idle_big)
        await phase("idle_big", lambda: idle_phase(target, big_rows, watch=args.watch))
    out["gc_pauses"] = gc_pauses(target)
    if target.kind == "ours" and not args.phases:
        out["polling"] = polling_cost(target)
    return out


def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    """The figures as one Markdown table, a column per target."""
    names = list(results)

    def row(label: str, get) -> str:
        cells = []
        for name in names:
            try:
                value = get(results[name])
            except (KeyError, TypeError):
                value = None
            cells.append("–" if value is None else value)
        return f"| {label} | " + " | ".join(str(c) for c in cells) + " |"

    n, idle, big = args.streams, args.idle, args.idle_big
    lines = [
        f"| figure | {' | '.join(names)} |",
        "|---" * (len(names) + 1) + "|",
        row(f"idle RSS per stream ({idle} streams), KB", lambda r: f"{r['idle']['rss_kb_per_stream']:.1f}"),
        row("threads per stream", lambda r: f"{r['idle']['threads_per_stream']:.3f}"),
        row("database connections per stream", lambda r: f"{r['idle']['db_per_stream']:.3f}"),
        row("server CPU per connect, ms", lambda r: f"{r['idle']['cpu_per_connect_ms']:.2f}"),
        row(
            f"latency p50 / p99, {n} streams on 50 users' tasks, ms",
            lambda r: f"{r['users']['p50']:.0f} / {r['users']['p99']:.0f}",
        ),
        row(
            f"latency p50 / p99, {n} subscribers of one task, ms",
            lambda r: f"{r['one']['p50']:.0f} / {r['one']['p99']:.0f}",
        ),
        row(
            f"latency p50 / p99, one stream on each of {n} tasks, ms",
            lambda r: f"{r['spread']['p50']:.0f} / {r['spread']['p99']:.0f}",
        ),
        row(
            f"fan-out, deliveries/s ({n} subscribers, burst of {args.burst})",
            lambda r: f"{r['fanout']['deliveries_per_s']:,.0f}",
        ),
        row(
            "server CPU per 1,000 deliveries of the burst, ms",
            lambda r: f"{r['fanout']['cpu_ms_per_1000']:.1f}",
        ),
        row(
            "burst committed in / last delivery at, s",
            lambda r: f"{r['fanout']['publish_s']:.2f} / {r['fanout']['deliver_s']:.2f}",
        ),
        row(
            "lost / repeated events (all phases)",
            lambda r: (
                f"{sum(r[k]['lost'] for k in ('users', 'one', 'spread', 'fanout') if k in r)}"
                f" / {sum(r[k]['repeated'] for k in ('users', 'one', 'spread', 'fanout') if k in r)}"
            ),
        ),
        row(
            "plain GET p99 / max while streaming, ms",
            lambda r: f"{r['one']['get_p99']:.0f} / {r['one']['get_max']:.0f}",
        ),
        row(
            f"plain GET p99 / max with {idle} idle streams, ms",
            lambda r: f"{r['idle']['get_p99']:.0f} / {r['idle']['get_max']:.0f}",
        ),
        row(
            "collector pauses over 50 ms (logged)",
            lambda r: str(len(r["gc_pauses"])) + (f", max {max(r['gc_pauses']):.0f} ms" if r["gc_pauses"] else ""),
        ),
        row(f"CPU with {big} idle streams, % of a core", lambda r: f"{r['idle_big']['idle_cpu_pct']:.1f}"),
        row(f"CPU with {idle} idle streams, % of a core", lambda r: f"{r['idle']['idle_cpu_pct']:.1f}"),
        row("scenarios the target failed", lambda r: ", ".join(r["failed"]) or "none"),
    ]
    ours = results.get("ours", {})
    if "polling" in ours and "one" in ours:
        lines.append(
            f"\nPer client-minute, a task reporting {args.rate:g} times a second: "
            f"the stream sends {args.rate * 60:.0f} events; 2 s polling makes "
            f"{ours['polling']['requests']} requests and moves "
            f"{ours['polling']['bytes'] / 1024:.1f} KB for 30 snapshots."
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    """Run every target in turn and print the table."""
    base = Path(tempfile.mkdtemp(prefix="sse-bench-"))
    results: dict[str, dict] = {}
    tasks_per_user = max(1, args.streams // 50)
    try:
        for name in args.targets.split(","):
            print(f"== {name}", file=sys.stderr, flush=True)
            target = make_target(name, base, 50, tasks_per_user)
            try:
                target.start()
                results[name] = await run_target(target, args)
                print(json.dumps(results[name]), file=sys.stderr, flush=True)
            finally:
                drop_target(target)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(table(results, args))


# ---------------------------------------------------- roles run in subprocesses


def role_setup(kind: str, users: int, per_user: int) -> None:
    """Create users, running tasks and tokens; print [(stream path, token), …]."""
    if kind == "aiohttp":
        print(json.dumps([(f"/events/ch{i}", "") for i in range(users * per_user)]))
        return
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from rest_framework_simplejwt.tokens import AccessToken

    from tasks_app import services
    from tasks_app.audio.generate import write_tone

    if kind == "stock":
        print(json.dumps([(f"/events/ch{i}/", "") for i in range(users * per_user)]))
        return
    wav = Path(tempfile.mkdtemp()) / "t.wav"
    write_tone(str(wav), 0.2)
    rows = []
    for u in range(users):
        user = get_user_model().objects.create_user(f"bench{u}", password="x")
        token = str(AccessToken.for_user(user))
        audio = services.audio_file_create(owner=user, upload=SimpleUploadedFile("t.wav", wav.read_bytes()))
        for _ in range(per_user):
            task = services.task_create(owner=user, audio_file_id=audio.pk)
            services.task_start(task_id=task.id)
            rows.append((f"/api/v1/sse/tasks/{task.id}/progress", token))
    print(json.dumps(rows))


def role_publish(kind: str) -> None:
    """Write events on command (stdin JSON lines); answer with commit times per sequence."""
    if kind != "aiohttp":
        import django

        django.setup()
    seq = 0
    progress: dict[str, float] = {}
    redis_client = None
    if kind in ("aiohttp", "stock"):
        import redis

        redis_client = redis.Redis.from_url(os.environ["EVENTSTREAM_REDIS"])

    def write(channel: str) -> float:
        nonlocal seq
        seq += 1
        if kind == "ours":
            from tasks_app import services

            task_id = channel.split("/")[5]
            progress[task_id] = min(99.0, progress.get(task_id, 0.0) + 0.01)
            services.task_report_progress(
                task_id=task_id, attempt=1, progress=progress[task_id], stage=f"s{seq}", estimated_time=None
            )
        elif kind == "stock":
            from django_eventstream import send_event

            send_event(channel.split("/")[2], "message", {"seq": seq, "t": time.time()})
        else:
            redis_client.publish("bench", json.dumps({"channel": channel.split("/")[2], "seq": seq}))
        return time.time()

    for line in sys.stdin:
        command = json.loads(line)
        sent: dict[int, float] = {}
        channel_of: dict[int, str] = {}
        if command["cmd"] == "rate":
            # Each channel once a period, spread over it (or back to back: `--lockstep`).
            period = 1.0 / command["rate"]
            channels = command["channels"]
            step = 0.0 if command.get("lockstep") else period / len(channels)
            round_start = time.monotonic()
            end = round_start + command["seconds"]
            while round_start < end:
                for i, channel in enumerate(channels):
                    if (wait := round_start + i * step - time.monotonic()) > 0:
                        time.sleep(wait)
                    at = write(channel)
                    sent[seq], channel_of[seq] = at, channel
                round_start += period
        else:
            for _ in range(command["count"]):
                at = write(command["channel"])
                sent[seq], channel_of[seq] = at, command["channel"]
        print(json.dumps({"sent": sent, "channel": channel_of}), flush=True)


def role_aiohttp(port: int) -> None:
    """A bare aiohttp SSE server: Redis pub/sub → each channel's open responses."""
    from aiohttp import web
    from redis.asyncio import Redis

    listeners: dict[str, set[asyncio.Queue]] = {}

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        channel = request.match_info["channel"]
        listeners.setdefault(channel, set()).add(queue)
        try:
            await response.write(b": hi\n\n")
            while True:
                await response.write(await queue.get())
        finally:
            listeners[channel].discard(queue)

    async def feed(app: web.Application) -> None:
        pubsub = Redis.from_url(os.environ["EVENTSTREAM_REDIS"]).pubsub()
        await pubsub.subscribe("bench")
        async for message in pubsub.listen():
            if message["type"] == "message":
                data = json.loads(message["data"])
                frame = f"event: message\ndata: {message['data'].decode()}\n\n".encode()
                for queue in listeners.get(data["channel"], ()):
                    queue.put_nowait(frame)

    async def start(app: web.Application) -> None:
        app["feed"] = asyncio.create_task(feed(app))

    app = web.Application()
    app.router.add_get("/events/{channel}", events)
    app.on_startup.append(start)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def main() -> None:
    """Entry point: the bench, or one of its subprocess roles."""
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        role, rest = sys.argv[1], sys.argv[2:]
        if role == "_setup":
            role_setup(rest[0], int(rest[1]), int(rest[2]))
        elif role == "_publish":
            role_publish(rest[0])
        elif role == "_aiohttp":
            role_aiohttp(int(rest[0]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default="ours,ours-redis,ours-public,stock,aiohttp")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--idle-big", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=2.0, help="events/s per task")
    parser.add_argument(
        "--spread-rate", type=float, default=0.2, help="events/s per task when one stream watches each of many tasks"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--lockstep",
        action="store_true",
        help="the publisher writes each round to all its tasks back to back, not spread over the period",
    )
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--watch", type=float, default=20.0, help="seconds of idle watching")
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the bench")
    parser.add_argument("--gzip", action="store_true", help="streams send Accept-Encoding: gzip")
    parser.add_argument(
        "--phases",
        default="",
        help="only these scenarios, e.g. one,fanout (of users, one, spread, fanout, idle, idle_big)",
    )
    args = parser.parse_args()
    args.phases = set(filter(None, args.phases.split(",")))
    Stream.GZIP = args.gzip
    if args.quick:
        args.streams, args.idle, args.idle_big, args.seconds, args.burst, args.watch = 200, 500, 0, 4.0, 200, 5.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
