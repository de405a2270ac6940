"""Web-process memory while serving a large download (bench/README.md).

    .venv/bin/python bench/download_memory.py [--size-mb 1993] [--stalled 5]

Starts the service (no worker), makes a completed normalize task whose output is a sparse
file of the given size (about the 1,993,320,044-byte WAV a 3-hour normalize writes), and
prints the Daphne process's RSS (VmRSS) and its peak (VmHWM, reset through
/proc/<pid>/clear_refs) around three phases:

1. one client reading the whole file at full speed;
2. `--stalled` clients that read the headers and then stop reading, first alone (once the
   server's memory has settled) and then held open while one more full-speed download runs (in
   the old `FileResponse` each stalled client cost the whole file);
3. after the stalled clients have closed their connections and the server has closed the files.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tasks_app.audio.generate import write_tone  # noqa: E402
from tests import live_server  # noqa: E402
from tests.download_client import completed_with_output, download, rss, stalled_download  # noqa: E402
from tests.test_upload_limits import peak_rss_since_reset, reset_peak_rss  # noqa: E402

MB = 1_000_000
MIB = 2**20


def line(what: str, before: int, peak: int, after: int, extra: str = "") -> None:
    """Print one phase's figures in MiB."""
    print(
        f"{what:42} RSS {before / MIB:6.0f} -> peak {peak / MIB:6.0f} (+{(peak - before) / MIB:4.0f}) "
        f"-> {after / MIB:6.0f} MiB {extra}",
        flush=True,
    )


def settle(pid: int, quiet_seconds: float = 2.0, limit_seconds: float = 30.0) -> None:
    """Wait until the process's RSS has stayed within 64 KiB for `quiet_seconds` (a bench, not a test)."""
    deadline = time.monotonic() + limit_seconds
    last, since = rss(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_seconds:
        time.sleep(0.25)
        now = rss(pid)
        if abs(now - last) > 64 * 1024:
            last, since = now, time.monotonic()


def main() -> None:
    """Parse arguments, run the three phases, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1993.320044, help="download size in MB (10^6 bytes)")
    parser.add_argument("--stalled", type=int, default=5, help="clients that stop reading")
    args = parser.parse_args()
    size = int(args.size_mb * MB)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; download {size:,} bytes", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "tone.wav"
        write_tone(str(wav), 1.0)
        data = Path(tmp) / "data"
        data.mkdir()
        service = live_server.start_service(data, workers=0)
        try:
            token = service.token("alice")
            task_id = completed_with_output(service, token, service.upload(token, wav)["id"], size)
            path = f"/api/v1/tasks/{task_id}/output"
            pid = service.daphne.pid
            fds = len(os.listdir(f"/proc/{pid}/fd"))

            before = reset_peak_rss(pid)
            started = time.monotonic()
            assert download(service, token, path) == size
            seconds = time.monotonic() - started
            line(
                "1 client, full speed", before, peak_rss_since_reset(pid), rss(pid), f"({size / MB / seconds:.0f} MB/s)"
            )

            before = reset_peak_rss(pid)
            stalled = [stalled_download(service, token, path) for _ in range(args.stalled)]
            settle(pid)
            line(f"{args.stalled} stalled clients alone", before, peak_rss_since_reset(pid), rss(pid))
            assert download(service, token, path) == size
            held = rss(pid)
            line(f"{args.stalled} stalled clients + 1 full speed", before, peak_rss_since_reset(pid), held)

            for sock in stalled:
                sock.close()
            live_server.wait_until(lambda: len(os.listdir(f"/proc/{pid}/fd")) <= fds, 30, "the files to close")
            line("after the stalled clients left", before, peak_rss_since_reset(pid), rss(pid))
        finally:
            live_server.stop_service(service)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
