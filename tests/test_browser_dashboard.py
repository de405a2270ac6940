"""The JavaScript suites, run from pytest: Vitest (client package) and Playwright (dashboard, and
fresh Vite apps built from the packed package).

They start their own live Daphne + worker on loopback through `tests/serve_live.py`. They need
Node 20+, `npm ci` in `clients/js` and Debian's Chromium at /usr/bin/chromium (or $CHROMIUM);
without them the tests skip, unless REQUIRE_SERVICES=1 (CI), where they fail. The apps' test
installs their locked dependencies from the npm registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "js"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
APPS = CLIENT / "e2e" / "apps"


def missing_tools() -> list[str]:
    """What the JavaScript suites need and this machine lacks."""
    missing = [tool for tool in ("node", "npx") if shutil.which(tool) is None]
    if not (CLIENT / "node_modules").is_dir():
        missing.append("clients/js/node_modules (run `npm ci` there)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    return missing


def require_tools() -> None:
    """Skip (fail under REQUIRE_SERVICES=1) when this machine lacks what the suites need."""
    missing = missing_tools()
    if missing:
        message = "JavaScript tests need: " + ", ".join(missing)
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


def run(args: list[str], cwd: Path, timeout: float, env: dict | None = None) -> str:
    """Run a command; fail with its output when it fails; return its stdout."""
    base = {**os.environ, "PYTHON": sys.executable, "CHROMIUM": CHROMIUM, "CI": "1"}
    base.update({"NO_COLOR": "1", "FORCE_COLOR": "0"})
    base.pop("SKIP_LIVE", None)
    done = subprocess.run(args, cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed:\n{done.stdout[-20000:]}\n{done.stderr[-5000:]}", pytrace=False)
    return done.stdout


def run_npx(*args: str, timeout: float) -> None:
    """Run a JavaScript test runner in clients/js; fail with its output when it fails."""
    require_tools()
    run(["npx", "--no-install", *args], CLIENT, timeout)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_js_client_passes_its_vitest_suite_against_fakes_and_the_real_server():
    run_npx("vitest", "run", timeout=300)


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_dashboard_passes_its_playwright_suite_in_chromium():
    # Screenshots of failures land in clients/js/test-results/.
    run_npx("playwright", "test", timeout=400)


def build_app(name: str, workdir: Path) -> Path:
    """Install a fixture app from its lock (the tarball in `workdir`) and build it."""
    app = workdir / name
    local = shutil.ignore_patterns("node_modules", "dist")  # left by a developer's own try
    shutil.copytree(APPS / name, app, ignore=local)
    if name.startswith("react"):
        # The React apps share their source; each has its own React in its lock.
        shutil.copytree(APPS / "react", app, dirs_exist_ok=True, ignore=local)
    run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], app, timeout=300)
    run(["npx", "--no-install", "vite", "build", "--base", "./"], app, timeout=300)
    return app


def copies_of(package: str, app: Path) -> list[Path]:
    """Every installed copy of an npm package in an app."""
    return sorted(app.glob(f"node_modules/**/node_modules/{package}/package.json")) + sorted(
        app.glob(f"node_modules/{package}/package.json")
    )


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_fresh_vite_apps_install_the_packed_package_as_documented_and_run_in_chromium(tmp_path: Path):
    require_tools()
    packed = json.loads(run(["npm", "pack", "--json", "--pack-destination", str(tmp_path)], CLIENT, timeout=120))
    # The apps' locks name the tarball `../audio-tasks-client.tgz`, as `npm install <tarball>` does.
    (tmp_path / packed[0]["filename"]).rename(tmp_path / "audio-tasks-client.tgz")

    plain = build_app("plain", tmp_path)
    # The package root imports no React: none is installed here, yet Node 20 loads it,
    # as an ES module and through require().
    assert copies_of("react", plain) == []
    script = (
        "const m = await import('@audio-tasks/client');"
        "const c = (await import('node:module')).createRequire(import.meta.url)('@audio-tasks/client');"
        "const kinds = [m.subscribeToTask, m.createTaskStore, c.subscribeToAllTasks].map((f) => typeof f);"
        "console.log(JSON.stringify(kinds));"
    )
    out = run(["node", "--input-type=module", "-e", script], plain, timeout=60)
    assert json.loads(out.strip().splitlines()[-1]) == ["function", "function", "function"]

    for name, version in (("react18", "18.3.1"), ("react19", "19.3.1")):
        app = build_app(name, tmp_path)
        # React is a peer dependency: the app's one copy, none inside the package.
        copies = copies_of("react", app)
        assert [json.loads(p.read_text())["version"] for p in copies] == [version]
        assert not (app / "node_modules" / "@audio-tasks" / "client" / "node_modules").exists()
    # The shipped types check against React 19's own types, with the app's strict tsconfig.
    run([str(CLIENT / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.json"], tmp_path / "react19", timeout=300)

    run(
        ["npx", "--no-install", "playwright", "test", "-c", "playwright.apps.config.ts"],
        CLIENT,
        timeout=600,
        env={"APPS_DIR": str(tmp_path)},
    )
