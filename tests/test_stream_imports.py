"""Publishing imports no server: the worker, the admin and a shell run without Twisted or Daphne."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_services_jobs_and_publishing_load_neither_twisted_nor_daphne() -> None:
    script = (
        "import json, sys, django; django.setup()\n"
        "import tasks_app.services, tasks_app.jobs, tasks_app.sse, tasks_app.admin, tasks_app.streams.publish\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('twisted', 'daphne', 'channels'))))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
