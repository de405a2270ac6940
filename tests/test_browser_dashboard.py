"""The JavaScript suites, run from pytest: Vitest (client package) and Playwright (dashboard).

Both start their own live Daphne + worker on loopback through `tests/serve_live.py`. They need
Node 20+, `npm ci` in `clients/js` and Debian's Chromium at /usr/bin/chromium (or $CHROMIUM);
without them the tests skip, unless REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "js"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def missing_tools() -> list[str]:
    """What the JavaScript suites need and this machine lacks."""
    missing = [tool for tool in ("node", "npx") if shutil.which(tool) is None]
    if not (CLIENT / "node_modules").is_dir():
        missing.append("clients/js/node_modules (run `npm ci` there)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    return missing


def run_npx(*args: str, timeout: float) -> None:
    """Run a JavaScript test runner in clients/js; fail with its output when it fails."""
    missing = missing_tools()
    if missing:
        message = "JavaScript tests need: " + ", ".join(missing)
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "PYTHON": sys.executable, "CHROMIUM": CHROMIUM, "CI": "1", "NO_COLOR": "1", "FORCE_COLOR": "0"}
    env.pop("SKIP_LIVE", None)
    done = subprocess.run(
        ["npx", "--no-install", *args], cwd=CLIENT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed:\n{done.stdout[-20000:]}\n{done.stderr[-5000:]}", pytrace=False)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_js_client_passes_its_vitest_suite_against_fakes_and_the_real_server():
    run_npx("vitest", "run", timeout=300)


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_dashboard_passes_its_playwright_suite_in_chromium():
    # Screenshots of failures land in clients/js/test-results/.
    run_npx("playwright", "test", timeout=400)
