"""Server memory per upload and bytes taken before a 413 (bench/README.md).

    .venv/bin/python bench/upload_memory.py [--server project.server|daphne] [--sizes 50 100 200]

Starts the service (no worker) twice: with a 5 MiB limit, to see how much of an oversize body
the client sends before the answer, and with the default limit, for legitimate uploads. The
figure per upload is the server process's peak RSS (VmHWM, reset before each upload through
/proc/<pid>/clear_refs) minus its RSS before.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests import live_server  # noqa: E402
from tests.test_upload_limits import peak_rss_since_reset, reset_peak_rss  # noqa: E402
from tests.upload_client import upload_silence  # noqa: E402

MB = 1_000_000
MIB = 2**20


def measure(limit_mb: int | None, sizes: list[int], chunked: bool = False) -> None:
    """Upload each size to a fresh service and print status, bytes sent and RSS growth."""
    env = {"AUDIO_MAX_UPLOAD_MB": str(limit_mb)} if limit_mb else {}
    with tempfile.TemporaryDirectory() as tmp:
        service = live_server.start_service(Path(tmp), workers=0, extra_env=env)
        try:
            token = service.token("alice")
            pid = service.daphne.pid
            for size in sizes:
                before = reset_peak_rss(pid)
                result = upload_silence(service.base_url, token, size * MB, chunked=chunked)
                peak = peak_rss_since_reset(pid)
                print(
                    f"{live_server.SERVER_MODULE:15} limit {limit_mb or 500:>4} MiB  "
                    f"{'chunked' if chunked else 'length ':8} {size:>4} MB  -> "
                    f"{result.status}  sent {result.body_bytes_sent / MB:7.1f} MB  "
                    f"RSS {before / MIB:5.0f} -> peak {peak / MIB:5.0f} MiB "
                    f"(+{(peak - before) / MIB:.0f})",
                    flush=True,
                )
        finally:
            live_server.stop_service(service)


def main() -> None:
    """Parse arguments and run both measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server", default=live_server.SERVER_MODULE, help="module run with -m: project.server (default) or daphne"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200], help="upload sizes in MB")
    args = parser.parse_args()
    live_server.SERVER_MODULE = args.server
    measure(5, args.sizes)
    measure(5, args.sizes, chunked=True)
    measure(None, args.sizes)


if __name__ == "__main__":
    main()
