"""A live Daphne + worker for the JavaScript tests (Vitest, Playwright), driven over stdin.

Run from the repository root: `python -m tests.serve_live`. It starts the service of
`tests/live_server.py` on a fresh temporary database (users alice, bob, carol, dave, erin,
frank and staff root, with the password `PASSWORD`), writes test audio files, and prints one JSON line:
`{"base_url", "password", "audio": {"short": path, "medium": path, "long": path}}`.
Then it reads commands, one JSON array per line, and answers each with one JSON line:

- `["restart"]`: kill Daphne (SIGKILL) and start a new one on the same port; the worker and the
  database stay, so a page can reconnect and catch up.
- `["manage", arg, ...]`: run `manage.py arg ...` against the service's database;
  answers `{"code", "stdout", "stderr"}`.
- `["stop"]` or end of input: stop everything and delete the temporary folder.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tasks_app.audio.generate import tone, write_audio, write_tone
from tests.live_server import PASSWORD, ROOT, start_service, stop_service

# Users beyond alice, bob and root, so each test can have a list of its own.
EXTRA_USERS = ["carol", "dave", "erin", "frank"]
# Analysis runs at roughly 1000x real time here: "long" takes a few seconds, enough to watch
# a bar move, cancel it, or restart the server under it; "medium" well under a second.
AUDIO = {"short": (3.0, "wav"), "medium": (60.0, "flac"), "long": (20 * 60.0, "flac")}


def swells(seconds: float) -> np.ndarray:
    """A stereo tone that swells and fades 1.3 times a second, so its waveform has a shape."""
    samples = tone(seconds)
    t = np.arange(samples.shape[1]) / 44100
    return samples * (0.15 + 0.85 * np.abs(np.sin(np.pi * 1.3 * t)) ** 2).astype(np.float32)


def reply(message: dict) -> None:
    """Write one JSON line to stdout."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    """Start the service, announce it, obey commands until told to stop."""
    tmp = Path(tempfile.mkdtemp(prefix="live-js-"))
    audio = {}
    for name, (seconds, fmt) in AUDIO.items():
        path = tmp / f"{name}.{fmt}"
        if name == "short":
            write_audio(str(path), swells(seconds), 44100, fmt)
        else:
            write_tone(str(path), seconds, fmt=fmt)
        audio[name] = str(path)
    service = start_service(tmp)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        manage(
            service.env,
            [
                "shell",
                "-c",
                (
                    "from django.contrib.auth import get_user_model as g\n"
                    f"for name in {EXTRA_USERS!r}:\n"
                    f"    u, _ = g().objects.get_or_create(username=name); u.set_password('{PASSWORD}'); u.save()"
                ),
            ],
        )
        reply({"base_url": service.base_url, "password": PASSWORD, "audio": audio})
        for line in sys.stdin:
            command = json.loads(line)
            if command[0] == "restart":
                service.restart_daphne()
                reply({"restarted": True})
            elif command[0] == "manage":
                reply(manage(service.env, command[1:]))
            else:
                break
    finally:
        stop_service(service)
        shutil.rmtree(tmp, ignore_errors=True)


def manage(env: dict, args: list[str]) -> dict:
    """Run one management command against the live service's database."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


if __name__ == "__main__":
    main()
