"""Bad input found by fuzzing the live API: every case gets a clean 4xx JSON error, never a 5xx."""

from __future__ import annotations

import httpx
import pytest

from tasks_app.audio.generate import write_tone

from .live_server import LiveService, payloads, read_events, start_service, stop_service

DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


def assert_error(response, status: int, field: str | None = None) -> dict:
    """The response is `status` with the project's JSON error body (naming `field`)."""
    assert response.status_code == status, response.content[:500]
    error = response.json()["error"]
    assert error["code"] and error["message"]
    if field is not None:
        assert error["field"] == field, error
    return error


# ------------------------------------------------------------------ REST (in-process)


@pytest.mark.parametrize("raw_id", ["²", "١٢", "１２"])
@pytest.mark.parametrize("method", ["get", "delete"])
def test_unicode_digit_audio_id_is_404(auth_client, user, make_audio, method, raw_id):
    make_audio(user)
    response = getattr(auth_client(user), method)(f"/api/v1/audio/{raw_id}/")
    assert_error(response, 404, "id")


@pytest.mark.parametrize("path", ["/api/v1/tasks/", "/api/v1/auth/stream-ticket/"])
def test_deeply_nested_json_is_400(auth_client, user, path):
    response = auth_client(user).generic("POST", path, DEEP_JSON, content_type="application/json")
    assert_error(response, 400, "body")


@pytest.mark.parametrize("path", ["/api/v1/auth/token/", "/api/v1/auth/token/refresh/", "/api/v1/auth/token/verify/"])
def test_deeply_nested_json_on_token_endpoints_is_400(api_client, db, path):
    response = api_client.generic("POST", path, DEEP_JSON, content_type="application/json")
    assert_error(response, 400, "body")


@pytest.mark.parametrize("path", ["/api/v1/audio/", "/api/v1/tasks/", "/api/v1/auth/token/"])
def test_multipart_without_boundary_is_json_400(auth_client, user, path):
    response = auth_client(user).generic("POST", path, b"zzz", content_type="multipart/form-data")
    assert_error(response, 400, "body")


@pytest.mark.parametrize("value", ["0", "-1", "abc", "101", "1.5", "²", ""])
@pytest.mark.parametrize("path", ["/api/v1/audio/", "/api/v1/tasks/"])
def test_invalid_page_size_is_400(auth_client, user, path, value):
    response = auth_client(user).get(path, {"page_size": value})
    assert_error(response, 400, "page_size")


def test_valid_page_size_is_used(auth_client, user, make_task):
    make_task(user), make_task(user)
    body = auth_client(user).get("/api/v1/tasks/", {"page_size": "1"}).json()
    assert body["count"] == 2 and len(body["results"]) == 1


@pytest.mark.parametrize("query", ["page=9", "page=", "page=x", "page=1&page=2", "page=²"])
def test_a_page_that_does_not_exist_is_json_404(auth_client, user, query):
    assert_error(auth_client(user).get(f"/api/v1/tasks/?{query}"), 404)


@pytest.mark.parametrize("query", ["state=", "state=failed&state=completed", "page_size=5&page_size=6"])
def test_blank_or_repeated_list_parameters_are_400(auth_client, user, query):
    assert_error(auth_client(user).get(f"/api/v1/tasks/?{query}"), 400, query.split("=")[0])


def test_blank_ticket_task_id_means_the_all_tasks_stream(auth_client, user):
    response = auth_client(user).post("/api/v1/auth/stream-ticket/", {"task_id": ""}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["task_id"] is None


@pytest.mark.parametrize("format", ["multipart", "json-less"])
def test_ticket_requests_are_json_only(auth_client, user, format):
    client = auth_client(user)
    if format == "multipart":
        response = client.post("/api/v1/auth/stream-ticket/", {"task_id": ""}, format=format)
    else:
        response = client.generic(
            "POST", "/api/v1/auth/stream-ticket/", b"task_id=", content_type="application/x-www-form-urlencoded"
        )
    assert_error(response, 415)


# ------------------------------------------------------------------ SSE (live service)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> LiveService:
    """A service with no worker (tasks stay pending) and quick keep-alives."""
    live = start_service(tmp_path_factory.mktemp("badinput"), workers=0, extra_env={"SSE_KEEPALIVE_SECONDS": "1"})
    yield live
    stop_service(live)


@pytest.fixture(scope="module")
def task_id(service, tmp_path_factory) -> str:
    """A pending task of alice's."""
    path = tmp_path_factory.mktemp("a") / "tone.wav"
    write_tone(str(path), 1.0)
    token = service.token("alice")
    return service.create_task(token, service.upload(token, path)["id"])["id"]


def stream_path(which: str, task_id: str) -> str:
    """The per-task stream of `task_id`, or the caller's all-tasks stream."""
    if which == "task":
        return f"/api/v1/sse/tasks/{task_id}/progress"
    return "/api/v1/sse/tasks/progress"


@pytest.mark.parametrize("value", ["²", "١٢", "user-1:²", "task-x:²"])
@pytest.mark.parametrize("which", ["task", "user"])
def test_unicode_digit_last_event_id_is_ignored(service, task_id, which, value):
    url = stream_path(which, task_id)
    with service.client(service.token("alice"), timeout=10) as client:
        status, events = read_events(
            client, f"{url}?{httpx.QueryParams(lastEventId=value)}", until=lambda evs: True, timeout=10
        )
    assert status == 200
    assert payloads(events)[0]["task_id"] == task_id


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("which", ["task", "user"])
def test_stream_endpoints_refuse_other_methods(service, task_id, which, method):
    url = stream_path(which, task_id)
    with service.client(service.token("alice"), timeout=10) as client:
        response = client.request(method, url)
    assert_error(response, 405)
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize("path,status", [("/api/v1/audio/", 400), ("/api/v1/auth/stream-ticket/", 201)])
def test_empty_multipart_body_is_answered_by_the_api_from_the_live_server(service, path, status):
    # Plain Daphne's Twisted parsed multipart bodies itself and answered an empty one with a
    # bare 400. Now the API answers: no `file` is a JSON 400; no body at all asks the ticket
    # endpoint for the all-tasks stream, as a POST without a body does.
    with service.client(service.token("alice"), timeout=10) as client:
        response = client.post(path, content=b"", headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert response.status_code == status, response.content
    if status == 400:
        assert response.json()["error"]["field"] == "file"
    else:
        assert response.json()["task_id"] is None
