"""Streams pass the same HTTP checks as the API: host validation and the CORS policy."""

from __future__ import annotations

import httpx
import pytest

from tasks_app.audio.generate import write_tone

from .live_server import LiveService, start_service, stop_service

ALLOWED = "https://app.example.com"


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> LiveService:
    """A service whose CORS allow-list names one origin."""
    live = start_service(tmp_path_factory.mktemp("http"), workers=0, extra_env={"CORS_ALLOWED_ORIGINS": ALLOWED})
    yield live
    stop_service(live)


@pytest.fixture(scope="module")
def task_id(service, tmp_path_factory) -> str:
    """A pending task of alice's."""
    path = tmp_path_factory.mktemp("a") / "tone.wav"
    write_tone(str(path), 1.0)
    token = service.token("alice")
    return service.create_task(token, service.upload(token, path)["id"])["id"]


def paths(task_id: str) -> list[str]:
    """A stream and an API endpoint of the same task."""
    return [f"/api/v1/sse/tasks/{task_id}/progress", f"/api/v1/tasks/{task_id}/progress/"]


@pytest.mark.parametrize("which", [0, 1], ids=["stream", "api"])
def test_a_foreign_host_gets_400_on_streams_like_on_the_api(service, task_id, which):
    token = service.token("alice")
    with service.client(token) as client:
        response = client.get(paths(task_id)[which], headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "invalid_host"


@pytest.mark.parametrize("which", [0, 1], ids=["stream", "api"])
def test_cors_preflight_from_an_allowed_origin_succeeds(service, task_id, which):
    with httpx.Client(base_url=service.base_url) as client:
        response = client.options(
            paths(task_id)[which],
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, last-event-id",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "last-event-id" in allowed


@pytest.mark.parametrize("which", [0, 1], ids=["stream", "api"])
def test_cors_from_another_origin_is_not_allowed(service, task_id, which):
    with httpx.Client(base_url=service.base_url) as client:
        response = client.options(
            paths(task_id)[which], headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        )
    assert "access-control-allow-origin" not in response.headers


def test_a_stream_opened_from_an_allowed_origin_carries_the_cors_header(service, task_id):
    token = service.token("alice")
    with (
        service.client(token) as client,
        client.stream("GET", paths(task_id)[0], headers={"Origin": ALLOWED}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ALLOWED
        assert response.headers["content-type"].startswith("text/event-stream")
