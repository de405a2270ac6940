"""The Docker image's contract, checked without a Docker engine.

The runtime stage of the Dockerfile is read and laid out in a folder: the files it copies, its
environment, its data volume. Its command then runs from there as the container would run it
(this interpreter standing in for the image's venv), and its HEALTHCHECK must pass. A module the
code imports but the image leaves out, a production default that refuses to start, or a health
check that cannot pass fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .live_server import ROOT, free_port, wait_until

IMAGE_DATA = "/data"


def runtime_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage, continuation lines joined."""
    lines: list[str] = []
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + raw.strip()
        elif raw.strip():
            lines.append(raw.strip())
    instructions = [tuple(line.split(None, 1)) for line in lines]
    last_from = max(i for i, (name, _) in enumerate(instructions) if name.upper() == "FROM")
    return [(name.upper(), args) for name, args in instructions[last_from + 1 :]]


def image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    """The ENV the runtime stage sets."""
    env: dict[str, str] = {}
    for name, args in stage:
        if name == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    return env


def copied_sources(stage: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(source in the repository, destination under WORKDIR) of each COPY from the context."""
    pairs = []
    for name, args in stage:
        parts = shlex.split(args)
        if name == "COPY" and not any(part.startswith("--from") for part in parts):
            pairs.extend((source, parts[-1]) for source in parts[:-1])
    return pairs


def exec_form(stage: list[tuple[str, str]], name: str) -> list[str]:
    """The JSON (exec form) command of CMD, or of HEALTHCHECK's CMD, with this interpreter
    standing in for the image's `python`."""
    args = next(args for instruction, args in stage if instruction == name)
    return [sys.executable if part == "python" else part for part in json.loads(args[args.index("[") :])]


def dockerignore() -> list[str]:
    """The patterns of .dockerignore, in order."""
    text = (ROOT / ".dockerignore").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: `*` within one folder, `**/` any folders."""
    parts = re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/"))
    table = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(table.get(part, re.escape(part)) for part in parts))


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the build context.

    As Docker decides: the last pattern that matches the path or one of its folders wins, and
    a pattern starting with `!` brings what it matches back.
    """
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    left_out = False
    for pattern in patterns:
        regex = pattern_regex(pattern.removeprefix("!"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            left_out = not pattern.startswith("!")
    return left_out


def test_the_build_context_leaves_out_local_state_but_not_what_the_image_copies():
    patterns = dockerignore()
    for heavy in (
        ".git",
        ".venv",
        "var",
        "tests",
        "clients/js/node_modules",
        "media/x.wav",
        "tasks_app/__pycache__/models.cpython-311.pyc",
    ):
        assert ignored(heavy, patterns), f".dockerignore lets {heavy} into the build context"
    for source, _ in copied_sources(runtime_stage()):
        assert (ROOT / source).exists(), f"the image copies {source}, which is not in the repository"
        assert not ignored(source.rstrip("/"), patterns), f".dockerignore drops {source}"


@pytest.fixture
def container(tmp_path: Path):
    """The runtime stage laid out in a folder and its command started, on a free port."""
    stage = runtime_stage()
    app, data = tmp_path / "app", tmp_path / "data"
    data.mkdir()
    for source, destination in copied_sources(stage):
        target = app / destination if destination not in ("./", ".") else app / Path(source).name
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, target)
    assert (app / "manage.py").is_file(), "the image's WORKDIR has no manage.py"
    declared = image_env(stage)
    assert declared["DATA_DIR"] == IMAGE_DATA and f'"{IMAGE_DATA}"' in dict(stage)["VOLUME"]
    env = {
        # What `docker run` passes besides the image's own ENV: the key the image insists on.
        "DJANGO_SECRET_KEY": "container-test-" + "k" * 50,
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        **declared,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DATA_DIR": str(data),
    }
    port = free_port()
    log = open(tmp_path / "container.log", "wb")
    proc = subprocess.Popen(
        [*exec_form(stage, "CMD"), "--port", str(port)],
        cwd=app,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    health = [part.replace(":8000/", f":{port}/") for part in exec_form(stage, "HEALTHCHECK")]
    yield proc, health, env, app, port, tmp_path / "container.log"
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


def test_the_image_command_starts_in_production_mode_and_passes_its_healthcheck(container):
    proc, health, env, app, port, log = container

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()
        return subprocess.run(health, cwd=app, env=env, capture_output=True, timeout=60).returncode == 0

    wait_until(healthy, 120, "the container's HEALTHCHECK to pass", interval=0.5)
    base = f"http://127.0.0.1:{port}"
    # Production by default: plain HTTP to the API is sent to HTTPS.
    response = httpx.get(f"{base}/api/v1/tasks/", follow_redirects=False)
    assert response.status_code == 301 and response.headers["location"].startswith("https://")
    # No default credentials: no demo user unless DEMO_PASSWORD is given.
    with sqlite3.connect(Path(env["DATA_DIR"]) / "db.sqlite3") as db:
        users = db.execute("SELECT username FROM auth_user").fetchall()
    assert users == []
    # `docker stop` sends SIGTERM: the service stops cleanly.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
