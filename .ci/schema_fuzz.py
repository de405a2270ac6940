"""Schemathesis against a live server: every generated request must get a documented answer.

    .venv/bin/python .ci/schema_fuzz.py [--max-examples 90] [-- extra schemathesis arguments]

Starts Daphne (`project.server`) and one worker on a fresh SQLite database in a temp folder,
with a free port on loopback; signs in as a user; runs `schemathesis run` with every check,
the examples, coverage, fuzzing and stateful (links) phases; stops the service. Exits with
schemathesis' status, and prints the number of generated cases.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests import live_server  # noqa: E402

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
            token = service.token("alice")
            seed(service, token, Path(tmp))
            config = Path(tmp) / "schemathesis.toml"
            config.write_text(
                CONFIG.format(timeout=STREAM_TIMEOUT_SECONDS, stream_examples=max(5, args.max_examples // 4))
            )
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
                *args.extra,
            ]
            result = subprocess.run(
                command, cwd=REPO, text=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}
            )
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            cases = re.search(r"(\d[\d,]*) generated", result.stdout)
            print(f"schema_fuzz: {cases.group(1) if cases else '?'} generated cases, exit status {result.returncode}")
            return result.returncode
        finally:
            live_server.stop_service(service)


def seed(service: live_server.LiveService, token: str, folder: Path) -> None:
    """Give alice an audio file (id 1) and a task on it, so generated ids can hit real data."""
    from tasks_app.audio.generate import write_tone

    path = folder / "seed.wav"
    write_tone(str(path), 1.0)
    audio = service.upload(token, path)
    service.create_task(token, audio["id"])


CONFIG = """\
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

# DRF trims text fields, Python's whitespace (which counts \\x1c-\\x1f) included, so a
# whitespace-only credential or token is blank: 400, as for a missing one.
[[operations]]
include-path-regex = "^/api/v1/auth/token/"
[operations.checks.positive_data_acceptance]
expected-statuses = ["2XX", 400, 401, 403, 404, 409, 429]
"""


if __name__ == "__main__":
    sys.exit(main())
