"""Large downloads against a live service: a big stored output, fast and stalled clients, RSS.

Used by `tests/test_downloads.py` and `bench/download_memory.py`.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

from .live_server import LiveService


def rss(pid: int) -> int:
    """Bytes of the process's resident memory now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc status")


def completed_with_output(service: LiveService, token: str, audio_id: int, size: int) -> str:
    """A completed normalize task of the token's user whose output is a `size`-byte WAV; its id.

    The output is a sparse file (it costs no disk), stored where a job would store it.
    """
    with service.client(token) as api:
        task_id = api.post(
            "/api/v1/tasks/", json={"audio_file": audio_id, "kind": "normalize", "options": {"output_format": "wav"}}
        ).json()["id"]
    service.shell(
        "import os\n"
        "from django.core.files.storage import default_storage\n"
        "from tasks_app import services\n"
        f"services.task_start(task_id='{task_id}')\n"
        f"name = services.artifacts_dir('{task_id}', 1) + '/big-normalized.wav'\n"
        "path = default_storage.path(name)\n"
        "os.makedirs(os.path.dirname(path), exist_ok=True)\n"
        f"with open(path, 'wb') as fh: fh.truncate({size})\n"
        f"services.task_complete(task_id='{task_id}', attempt=1, "
        "result={'artifacts': {'output': name}, 'output': {'format': 'wav'}})\n"
    )
    return task_id


def download(service: LiveService, token: str, path: str, chunk: int = 1 << 20) -> int:
    """Read a download at full speed; return the bytes received."""
    received = 0
    with service.client(token, timeout=120) as api, api.stream("GET", path) as response:
        assert response.status_code == 200, response.read()
        for part in response.iter_raw(chunk):
            received += len(part)
    return received


def stalled_download(service: LiveService, token: str, path: str) -> socket.socket:
    """Start a download, read its first bytes, then stop reading (the socket is returned open)."""
    url = urlsplit(service.base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    # A small receive window, as a client on a slow link would have.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {url.hostname}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return sock
