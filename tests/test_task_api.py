"""Task API: create, list, show, cancel, retry, delete and poll progress, scoped to the owner."""

from __future__ import annotations

import pytest
from django_tasks import default_task_backend

from tasks_app.audio.registry import get_processor
from tasks_app.models import Task

from .test_auth import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/v1/tasks/"
PROGRESS_KEYS = {"task_id", "state", "progress", "estimated_time", "updated_at", "stage", "error"}


def test_create_returns_201_with_task_id_and_default_kind(auth_client, user, make_audio):
    audio = make_audio(user)
    response = auth_client(user).post(URL, {"audio_file": audio.pk}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("task_")
    assert body["kind"] == "analyze"
    assert body["state"] == "pending"
    assert body["progress"] == 0
    assert body["audio_file"] == audio.pk
    # Options come back validated, with the processor's defaults filled in.
    assert set(body["options"]) == set(get_processor("analyze").options)
    assert body["progress_url"].endswith(f"/api/v1/tasks/{body['id']}/progress/")
    assert body["stream_url"].endswith(f"/api/v1/sse/tasks/{body['id']}/progress")
    task = Task.objects.get(pk=body["id"])
    assert task.owner == user


def test_create_enqueues_the_job_once_committed(auth_client, user, make_audio, django_capture_on_commit_callbacks):
    audio = make_audio(user)
    with django_capture_on_commit_callbacks(execute=True):
        body = auth_client(user).post(URL, {"audio_file": audio.pk}, format="json").json()
    assert [result.args for result in default_task_backend.results] == [[body["id"]]]
    assert Task.objects.get(pk=body["id"]).job_id


def test_create_with_options_keeps_them(auth_client, user, make_audio):
    audio = make_audio(user)
    response = auth_client(user).post(
        URL, {"audio_file": audio.pk, "kind": "analyze", "options": {"silence_threshold_db": -40}}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["options"]["silence_threshold_db"] == -40


@pytest.mark.parametrize(
    "payload, field, code",
    [
        ({"kind": "transmogrify"}, "kind", "invalid_choice"),
        ({"options": {"silence_threshold_db": "loud"}}, "options.silence_threshold_db", "invalid"),
        ({"options": {"silence_threshold_db": 5}}, "options.silence_threshold_db", "invalid"),
        ({"options": {"bogus": 1}}, "options.bogus", "invalid"),
        ({"options": [1, 2]}, "options", "not_a_dict"),
        ({"colour": "red"}, "colour", "unknown_field"),
        ({"audio_file": "abc"}, "audio_file", "invalid"),
    ],
)
def test_bad_create_input_is_400_naming_the_field(auth_client, user, make_audio, payload, field, code):
    data = {"audio_file": make_audio(user).pk, **payload}
    error = assert_error(auth_client(user).post(URL, data, format="json"), 400, code)
    assert error["field"] == field
    assert not Task.objects.exists()


def test_create_without_audio_file_names_it(auth_client, user):
    error = assert_error(auth_client(user).post(URL, {}, format="json"), 400, "required")
    assert error["field"] == "audio_file"


def test_malformed_json_is_400_parse_error(auth_client, user):
    response = auth_client(user).post(URL, '{"audio_file": 1,', content_type="application/json")
    error = assert_error(response, 400, "parse_error")
    assert "JSON" in error["message"]


def test_create_on_other_users_audio_is_404(auth_client, user, other_user, make_audio):
    audio = make_audio(other_user)
    response = auth_client(user).post(URL, {"audio_file": audio.pk}, format="json")
    assert assert_error(response, 404, "not_found")["field"] == "audio_file"
    assert not Task.objects.exists()


def test_list_is_paginated_newest_first_and_own_only(auth_client, user, other_user, make_task):
    mine = [make_task(user).pk for _ in range(3)]
    make_task(other_user)
    client = auth_client(user)
    first = client.get(URL, {"page_size": 2}).json()
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == 3
    second = client.get(first["next"]).json()
    ids = [t["id"] for t in first["results"] + second["results"]]
    assert ids == list(reversed(mine))


def test_list_filters_by_state(auth_client, user, make_task):
    failed = make_task(user, state="failed")
    make_task(user)
    body = auth_client(user).get(URL, {"state": "failed"}).json()
    assert [t["id"] for t in body["results"]] == [failed.pk]


def test_list_with_invalid_state_is_400(auth_client, user):
    error = assert_error(auth_client(user).get(URL, {"state": "sleeping"}), 400, "invalid_choice")
    assert error["field"] == "state"


@pytest.mark.parametrize(
    "method, suffix",
    [
        ("get", ""),
        ("get", "progress/"),
        ("post", "cancel/"),
        ("post", "retry/"),
        ("delete", ""),
    ],
)
def test_other_users_task_is_404_everywhere(auth_client, user, other_user, make_task, method, suffix):
    task = make_task(other_user, state="failed")
    response = getattr(auth_client(user), method)(f"{URL}{task.pk}/{suffix}")
    assert_error(response, 404, "not_found")
    assert Task.objects.get(pk=task.pk).state == "failed"


def test_unknown_task_id_is_404(auth_client, user):
    assert_error(auth_client(user).get(f"{URL}task_nope/"), 404, "not_found")


def test_other_users_tasks_are_not_listed(auth_client, user, other_user, make_task):
    make_task(other_user)
    assert auth_client(user).get(URL).json()["count"] == 0


def test_staff_can_read_any_task(auth_client, staff_user, user, make_task):
    task = make_task(user)
    client = auth_client(staff_user)
    assert client.get(f"{URL}{task.pk}/").json()["id"] == task.pk
    assert client.get(f"{URL}{task.pk}/progress/").json()["task_id"] == task.pk
    assert task.pk in [t["id"] for t in client.get(URL).json()["results"]]


def test_cancel_pending_task(auth_client, user, make_task):
    task = make_task(user)
    response = auth_client(user).post(f"{URL}{task.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert Task.objects.get(pk=task.pk).state == "cancelled"


def test_cancel_processing_task(auth_client, user, make_task):
    task = make_task(user, state="processing")
    assert auth_client(user).post(f"{URL}{task.pk}/cancel/").json()["state"] == "cancelled"


def test_cancel_completed_task_is_409(auth_client, user, make_task):
    task = make_task(user, state="completed")
    error = assert_error(auth_client(user).post(f"{URL}{task.pk}/cancel/"), 409, "illegal_transition")
    assert "completed" in error["message"]
    assert Task.objects.get(pk=task.pk).state == "completed"


@pytest.mark.parametrize("state", ["failed", "cancelled"])
def test_retry_failed_or_cancelled_task_goes_back_to_pending(auth_client, user, make_task, state):
    task = make_task(user, state=state)
    Task.objects.filter(pk=task.pk).update(error="boom", progress=40.0)
    body = auth_client(user).post(f"{URL}{task.pk}/retry/").json()
    assert body["state"] == "pending"
    assert body["progress"] == 0
    assert body["error"] is None


@pytest.mark.parametrize("state", ["pending", "processing", "completed"])
def test_retry_of_unfinished_or_completed_task_is_409(auth_client, user, make_task, state):
    task = make_task(user, state=state)
    assert_error(auth_client(user).post(f"{URL}{task.pk}/retry/"), 409, "illegal_transition")
    assert Task.objects.get(pk=task.pk).state == state


def test_progress_endpoint_returns_task_progress(auth_client, user, make_task):
    task = make_task(user, state="processing")
    Task.objects.filter(pk=task.pk).update(progress=42.5, stage="decoding", estimated_time=12.3)
    body = auth_client(user).get(f"{URL}{task.pk}/progress/").json()
    assert set(body) >= PROGRESS_KEYS
    assert body["task_id"] == task.pk
    assert body["state"] == "processing"
    assert body["progress"] == 42.5
    assert body["stage"] == "decoding"
    assert body["estimated_time"] == 12.3
    assert body["updated_at"].endswith("Z")
    assert body["error"] is None


def test_delete_own_task(auth_client, user, make_task):
    task = make_task(user, state="completed")
    assert auth_client(user).delete(f"{URL}{task.pk}/").status_code == 204
    assert not Task.objects.filter(pk=task.pk).exists()


def test_task_endpoints_render_in_the_browsable_api(auth_client, user, make_task):
    task = make_task(user)
    response = auth_client(user).get(f"{URL}{task.pk}/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert task.pk in response.content.decode()
