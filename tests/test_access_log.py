"""Stream tickets and tokens never reach the access log: query strings are redacted."""

from __future__ import annotations

import pytest

from project.access_log import REDACTED, redact_details, redact_path
from tasks_app.audio.generate import write_tone

from .live_server import LiveService, start_service, stop_service, wait_until


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/api/v1/tasks/", "/api/v1/tasks/"),
        ("/a?ticket=s3cret", f"/a?ticket={REDACTED}"),
        ("/a?ticket=s3cret&lastEventId=task-x:3", f"/a?ticket={REDACTED}&lastEventId={REDACTED}"),
        ("/a?s3cret", f"/a?s3cret={REDACTED}"),
        ("/a?", "/a?"),
    ],
)
def test_query_values_are_redacted(uri, expected):
    assert redact_path(uri) == expected


def test_details_without_a_query_are_passed_as_they_are():
    details = {"path": "/healthz", "status": 200}
    assert redact_details(details) is details


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> LiveService:
    """A service without a worker, logging as it does in production (access log on stdout)."""
    live = start_service(tmp_path_factory.mktemp("access-log"), workers=0)
    yield live
    stop_service(live)


def test_stream_tickets_and_tokens_in_urls_never_reach_the_access_log(service, tmp_path):
    wav = tmp_path / "tone.wav"
    write_tone(str(wav), 1.0)
    token = service.token("alice")
    task_id = service.create_task(token, service.upload(token, wav)["id"])["id"]
    with service.client(token) as api:
        ticket = api.post("/api/v1/auth/stream-ticket/", json={}).json()["ticket"]
    with service.client() as anon:
        # A ticket for the all-tasks stream does not open a task's stream: a quick 401.
        refused = anon.get(f"/api/v1/sse/tasks/{task_id}/progress?ticket={ticket}&lastEventId=1")
        assert refused.status_code == 401
        assert anon.get(f"/api/v1/tasks/?access_token={token}").status_code == 401
    log = service.data_dir / "daphne.log"
    wait_until(lambda: log.read_text().count(f"ticket={REDACTED}") == 1, 30, "the stream's access log line")
    wait_until(lambda: f"access_token={REDACTED}" in log.read_text(), 30, "the API's access log line")
    text = log.read_text()
    assert ticket not in text
    assert token not in text
