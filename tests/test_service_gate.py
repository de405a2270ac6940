"""The service gate in conftest.py: skip with a way to enable, or fail when REQUIRE_SERVICES=1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from . import conftest
from .live_server import free_port


class Item:
    """The part of a pytest item the gate reads: its markers."""

    def __init__(self, *markers: str) -> None:
        self.markers = set(markers)

    def get_closest_marker(self, name: str) -> str | None:
        return name if name in self.markers else None


def gate(item: Item) -> tuple[str | None, str]:
    """What the gate does to a test: ("skip" or "fail", its message), or (None, "")."""
    try:
        conftest.pytest_runtest_setup(item)
    except pytest.skip.Exception as exc:
        return "skip", str(exc)
    except pytest.fail.Exception as exc:
        return "fail", str(exc)
    return None, ""


@pytest.fixture
def redis_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis as a machine without it reports it."""
    monkeypatch.setattr(conftest, "REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setitem(conftest.SERVICE_CHECKS, "needs_redis", conftest.redis_missing.__wrapped__)


def test_a_missing_service_skips_its_test_saying_how_to_enable_it(redis_gone, monkeypatch):
    monkeypatch.delenv("REQUIRE_SERVICES", raising=False)
    outcome, reason = gate(Item("needs_redis"))
    assert outcome == "skip"
    assert "does not answer" in reason and "apt-get install redis-server" in reason
    assert "REQUIRE_SERVICES=1 makes this a failure" in reason


def test_with_require_services_a_missing_service_fails_its_test(redis_gone, monkeypatch):
    monkeypatch.setenv("REQUIRE_SERVICES", "1")
    outcome, message = gate(Item("needs_redis"))
    assert outcome == "fail" and message.startswith("REQUIRE_SERVICES=1 but Redis at")


def test_a_test_without_service_markers_is_left_alone(redis_gone, monkeypatch):
    monkeypatch.setenv("REQUIRE_SERVICES", "1")
    assert gate(Item("slow")) == (None, "")


def test_postgresql_and_programs_report_what_is_missing(monkeypatch):
    monkeypatch.setattr(conftest, "POSTGRES_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    assert "apt-get install postgresql" in conftest.postgres_missing.__wrapped__()
    missing = conftest.programs_missing("no-such-program-here")
    assert missing.startswith("no-such-program-here not on PATH")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert conftest.programs_missing(Path(sys.executable).name) is None
