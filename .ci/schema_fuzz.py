"""Schemathesis against a live server: every generated request must get a documented answer.

    .venv/bin/python .ci/schema_fuzz.py [--max-examples 90] [-- extra schemathesis arguments]

Starts Daphne (`project.server`) and one worker on a fresh SQLite database in a temp folder,
with a free port on loopback, and seeds real data (`seed`): alice's audio files, her tasks in
every state, two of them really processed (so their files exist), and a webhook endpoint with
the deliveries those tasks owe it. The worker is then stopped, so the seeded states stay put.
Runs `schemathesis run` with every check, the examples, coverage, fuzzing and stateful (links)
phases, with the seeded ids offered for every id parameter half of the time (so each operation
reaches real objects, not only 404s); stops the service. Prints each operation's status mix
(from the HAR report), the number of generated cases and of 5xx answers, and exits with
schemathesis' status (non-zero on any failed check, a schema mismatch among them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests import live_server  # noqa: E402


def tiny_wav() -> bytes:
    """0.2 s of 8 kHz 8-bit mono WAV with every byte below 0x80, so it survives as a text value."""
    rate, samples = 8000, bytes((i * 7) % 0x60 + 0x10 for i in range(1600))
    body = (
        b"WAVE"
        + struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate, 1, 8)
        + b"data"
        + struct.pack("<I", len(samples))
        + samples
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


TINY_WAV = tiny_wav()
# Streams answer until their task ends (the all-tasks stream never does): a bounded read.
STREAM_TIMEOUT_SECONDS = 0.5


def main() -> int:
    """Start the service, run schemathesis against it, stop it; return schemathesis' status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=90, help="examples per operation in the fuzzing phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="more schemathesis arguments (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="schema-fuzz-") as tmp:
        service = live_server.start_service(Path(tmp), workers=1)
        try:
            tokens = httpx.post(
                f"{service.base_url}/api/v1/auth/token/",
                json={"username": "alice", "password": live_server.PASSWORD},
                timeout=30,
            ).json()
            token = tokens["access"]
            audio_ids, task_ids, webhook_ids, delivery_ids = seed(service, token, Path(tmp))
            config = Path(tmp) / "schemathesis.toml"
            config.write_text(
                CONFIG.format(
                    timeout=STREAM_TIMEOUT_SECONDS,
                    stream_examples=max(5, args.max_examples // 4),
                    audio_ids=json.dumps(audio_ids),
                    task_ids=json.dumps(task_ids),
                    webhook_ids=json.dumps(webhook_ids[:1]),
                    spare_webhook_ids=json.dumps(webhook_ids[1:]),
                    delivery_ids=json.dumps(delivery_ids),
                    wav=json.dumps(TINY_WAV.decode("latin-1")),  # a JSON string is a TOML string
                    password=json.dumps(live_server.PASSWORD),
                    refresh=json.dumps(tokens["refresh"]),
                    access=json.dumps(token),
                )
            )
            har = Path(tmp) / "fuzz.har"
            command = [
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(config),
                "run",
                f"{service.base_url}/api/schema/?format=json",
                "--url",
                service.base_url,
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                str(args.max_examples),
                "--seed",
                str(args.seed),
                # One worker: Python 3.11's ast.parse is not thread-safe, and Hypothesis parses
                # lambdas while drawing ("AST constructor recursion depth mismatch").
                "--workers",
                "1",
                # Every text field refuses NUL characters (DRF's CharField), which no
                # schema keyword says: generate none rather than report each as a failure.
                "--generation-allow-x00",
                "false",
                "--request-timeout",
                "20",
                "--no-color",
                "--report",
                "har",
                "--report-har-path",
                str(har),
                *args.extra,
            ]
            result = subprocess.run(
                command, cwd=REPO, text=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}
            )
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            cases = re.search(r"(\d[\d,]*) generated", result.stdout)
            server_errors = print_status_mix(har, service.base_url)
            print(
                f"schema_fuzz: {cases.group(1) if cases else '?'} generated cases, {server_errors} 5xx, "
                f"exit status {result.returncode}"
            )
            return result.returncode or int(server_errors > 0)
        finally:
            live_server.stop_service(service)


def seed(
    service: live_server.LiveService, token: str, folder: Path
) -> tuple[list[int], list[str], list[str], list[str]]:
    """Give alice audio files, tasks in every state and a webhook endpoint with deliveries.

    A completed `analyze` and `normalize` task (processed by the worker, so their waveform and
    output exist), then, with the worker stopped, a webhook endpoint (made in the shell: its
    address is a public name, which the API would resolve) and a pending, a processing, a failed
    and a cancelled task, set through the services as a worker and a user would, which owe the
    endpoint its deliveries, and a spare endpoint for the fuzz to delete. Returns (audio ids, task
    ids, endpoint ids: the one with deliveries first, delivery ids).
    """
    from tasks_app.audio.generate import write_tone

    audio_ids = []
    for name, seconds in (("seed.wav", 1.0), ("other.wav", 2.0), ("spare.wav", 1.0)):
        write_tone(str(folder / name), seconds)
        audio_ids.append(service.upload(token, folder / name)["id"])
    done = [
        service.create_task(token, audio_ids[0])["id"],
        service.create_task(token, audio_ids[0], kind="normalize", options={"output_format": "mp3"})["id"],
    ]
    with service.client(token) as client:
        live_server.wait_until(
            lambda: all(client.get(f"/api/v1/tasks/{t}/").json()["state"] == "completed" for t in done),
            300,
            "the seeded tasks to complete",
            interval=0.5,
        )
    for worker in service.workers:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    states = service.shell(
        "from django.contrib.auth import get_user_model\n"
        "from tasks_app import services\n"
        "from tasks_app.webhooks.models import WebhookDelivery, WebhookEndpoint\n"
        "alice = get_user_model().objects.get(username='alice')\n"
        "hook = WebhookEndpoint.objects.create(owner=alice, url='https://hooks.example.com/fuzz',\n"
        "    events=['task.completed', 'task.failed', 'task.cancelled', 'task.progress'])\n"
        "spare = WebhookEndpoint.objects.create(owner=alice, url='https://hooks.example.com/spare')\n"
        f"audio = {audio_ids[1]}\n"
        "pending = services.task_create(owner=alice, audio_file_id=audio)\n"
        "processing = services.task_create(owner=alice, audio_file_id=audio)\n"
        "services.task_start(task_id=processing.id)\n"
        "failed = services.task_create(owner=alice, audio_file_id=audio)\n"
        "services.task_start(task_id=failed.id)\n"
        "services.task_fail(task_id=failed.id, error='Seeded failure.')\n"
        "cancelled = services.task_create(owner=alice, audio_file_id=audio)\n"
        "services.task_cancel(task_id=cancelled.id)\n"
        "print(pending.id, processing.id, failed.id, cancelled.id)\n"
        "print(hook.id, spare.id)\n"
        "print(*WebhookDelivery.objects.filter(endpoint=hook).values_list('message_id', flat=True))\n"
    )
    tasks, hooks, deliveries = states.strip().splitlines()[-3:]
    assert deliveries.split(), "the seeded failure and cancellation owe the endpoint deliveries"
    return audio_ids, done + tasks.split(), hooks.split(), deliveries.split()


def operation_of(method: str, path: str, templates: list[tuple[str, re.Pattern]]) -> str:
    """`METHOD /path/{param}/` for a concrete request path (or the path itself when none matches)."""
    for template, pattern in templates:
        if pattern.fullmatch(path):
            return f"{method} {template}"
    return f"{method} {path}"


def print_status_mix(har: Path, base_url: str) -> int:
    """Print how many answers of each status every operation got; return the number of 5xx."""
    paths = httpx.get(f"{base_url}/api/schema/?format=json", timeout=30).json()["paths"]
    templates = [(t, re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)))) for t in paths]
    mix: dict[str, Counter] = defaultdict(Counter)
    for entry in json.loads(har.read_text())["log"]["entries"]:
        request = entry["request"]
        mix[operation_of(request["method"], urlsplit(request["url"]).path, templates)][entry["response"]["status"]] += 1
    documented = {f"{method.upper()} {path}" for path, item in paths.items() for method in item}
    undocumented: Counter = Counter()
    print("schema_fuzz: status mix per operation")
    for operation in sorted(mix):
        if operation not in documented:
            undocumented.update(mix[operation])
            continue
        counts = ", ".join(f"{status}: {n}" for status, n in sorted(mix[operation].items()))
        print(f"  {operation:<48} {counts}")
    counts = ", ".join(f"{status}: {n}" for status, n in sorted(undocumented.items()))
    print(f"  {'(methods the schema does not list)':<48} {counts}")
    return sum(n for counts in mix.values() for status, n in counts.items() if status >= 500)


CONFIG = """\
# The seeded ids, offered for every id parameter half of the time (the other half is generated,
# so unknown ids are still tried).
[dictionaries]
audio = {{ values = {audio_ids} }}
tasks = {{ values = {task_ids} }}
webhooks = {{ values = {webhook_ids} }}
spare_webhooks = {{ values = {spare_webhook_ids} }}
deliveries = {{ values = {delivery_ids} }}

# An upload that decodes (the tiny WAV below), and real credentials and tokens, so the upload
# and the token endpoints answer 2xx too, not only 400/401. Schemathesis still warns of a
# "validation mismatch" on the upload: its own binary placeholder (a 1-pixel PNG) is refused
# as not audio, which no schema keyword can say.
upload = {{ values = [{wav}] }}
usernames = {{ values = ["alice"] }}
passwords = {{ values = [{password}] }}
refresh = {{ values = [{refresh}] }}
jwt = {{ values = [{access}, {refresh}] }}

[parameters]
"body.file" = {{ dictionary = "upload", probability = 0.8 }}
"body.username" = {{ dictionary = "usernames", probability = 0.5 }}
"body.password" = {{ dictionary = "passwords", probability = 0.5 }}
"body.refresh" = {{ dictionary = "refresh", probability = 0.5 }}
"body.token" = {{ dictionary = "jwt", probability = 0.5 }}
"path.id" = {{ dictionary = "audio", probability = 0.5 }}
"path.task_id" = {{ dictionary = "tasks", probability = 0.5 }}
"body.audio_file" = {{ dictionary = "audio", probability = 0.5 }}
"body.task_id" = {{ dictionary = "tasks", probability = 0.5 }}

# A webhook's `id` is an endpoint id, not an audio file's. Deleting is offered a spare endpoint
# only: deleting the one with deliveries would leave redelivering nothing but 404s.
[[operations]]
include-path-regex = "^/api/v1/webhooks/"
exclude-method = "DELETE"
[operations.parameters]
"path.id" = {{ dictionary = "webhooks", probability = 0.5 }}
"path.delivery_id" = {{ dictionary = "deliveries", probability = 0.5 }}

[[operations]]
include-name = "DELETE /api/v1/webhooks/{{id}}/"
[operations.parameters]
"path.id" = {{ dictionary = "spare_webhooks", probability = 0.5 }}

# A stream is read until it ends or for {timeout} s (the snapshot comes at once, the all-tasks
# stream never ends); schemathesis checks the events read by then.
[[operations]]
include-path-regex = "^/api/v1/sse/"
request-timeout = {timeout}
[operations.generation]
max-examples = {stream_examples}

# Beyond what a schema can say: an upload must decode as audio, and a task's options are
# checked against its processor's options. Schema-valid bodies may get a 400 there.
[[operations]]
include-name = "POST /api/v1/audio/"
[operations.checks.positive_data_acceptance]
expected-statuses = ["2XX", 400, 401, 403, 404, 409, 413, 429]

[[operations]]
include-name = "POST /api/v1/tasks/"
[operations.checks.positive_data_acceptance]
expected-statuses = ["2XX", 400, 401, 403, 404, 409, 429]

# A webhook URL must be a public http(s) address (it is resolved and checked), which no schema
# keyword can say: schema-valid URLs may get a 400 there.
[[operations]]
include-name = "POST /api/v1/webhooks/"
[operations.checks.positive_data_acceptance]
expected-statuses = ["2XX", 400, 401, 403, 404, 409, 429]

[[operations]]
include-name = "PATCH /api/v1/webhooks/{{id}}/"
[operations.checks.positive_data_acceptance]
expected-statuses = ["2XX", 400, 401, 403, 404, 409, 429]

# DRF trims text fields, Python's whitespace (which counts \\x1c-\\x1f) included, so a
# whitespace-only credential or token is blank: 400, as for a missing one.
[[operations]]
include-path-regex = "^/api/v1/auth/token/"
[operations.checks.positive_data_acceptance]
expected-statuses = ["2XX", 400, 401, 403, 404, 409, 429]
"""


if __name__ == "__main__":
    sys.exit(main())
