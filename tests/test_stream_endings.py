"""Every stream ends honestly: old finished tasks, deletions, long gaps, expired credentials."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from httpx_sse import ServerSentEvent

from tasks_app.audio.generate import write_tone

from .live_server import PASSWORD, LiveService, payloads, read_events, start_service, stop_service


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> LiveService:
    """A service with no worker: tasks move only when a test moves them."""
    live = start_service(tmp_path_factory.mktemp("endings"), workers=0, extra_env={"SSE_KEEPALIVE_SECONDS": "1"})
    yield live
    stop_service(live)


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    """A short WAV to upload."""
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    write_tone(str(path), 1.0)
    return path


def stream(task_id: str) -> str:
    """Path of a task's stream."""
    return f"/api/v1/sse/tasks/{task_id}/progress"


def number(event_id: str) -> int:
    """The per-channel counter in an id like `task-task_x:12`."""
    return int(event_id.rsplit(":", 1)[1])


def with_ids(events: list) -> list:
    """The events that carry an id (not keep-alives, not the snapshot of a resume)."""
    return [e for e in events if e.id and e.data]


def start_processing(service: LiveService, task_id: str) -> None:
    """Claim a task as a worker would (attempt 1)."""
    service.shell(f"from tasks_app import services; services.task_start(task_id='{task_id}')")


def read_in_background(
    pool: ThreadPoolExecutor, service: LiveService, token: str, url: str, stop=lambda events: False
) -> tuple[threading.Event, Future]:
    """Read a stream on a thread until it ends or `stop(events)`.

    The returned event is set once the response has started (the stream is subscribed by
    then). Keep-alives (1 s here) let the reader notice its deadline even when idle.
    """
    opened = threading.Event()

    def read() -> tuple[int, list[ServerSentEvent]]:
        events: list[ServerSentEvent] = []
        deadline = time.monotonic() + 60
        with (
            service.client(token, timeout=60) as client,
            client.stream("GET", url, headers={"Accept": "text/event-stream"}) as response,
        ):
            opened.set()
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                assert time.monotonic() < deadline, "stream did not finish in time"
                if line:
                    name, _, value = line.partition(":")
                    if name:
                        fields[name] = value.removeprefix(" ")
                    continue
                if "data" in fields:
                    events.append(ServerSentEvent(fields.get("event", "message"), fields["data"], fields.get("id", "")))
                    if stop(events):
                        break
                fields = {}
            return response.status_code, events

    return opened, pool.submit(read)


def test_finished_task_whose_events_were_trimmed_still_ends_with_complete(service, wav):
    token = service.token("alice")
    task = service.create_task(token, service.upload(token, wav)["id"])
    with service.client(token) as api:
        assert api.post(f"/api/v1/tasks/{task['id']}/cancel/").status_code == 200
    trimmed = service.shell(
        "from datetime import timedelta; from tasks_app.streams.log import trim; "
        "from django_eventstream.models import Event; trim(older_than=timedelta(0)); "
        f"print(Event.objects.filter(channel='task-{task['id']}').count())"
    )
    assert trimmed.strip() == "0"
    with service.client(token) as client:
        status, events = read_events(client, stream(task["id"]), timeout=30)
        assert status == 200
        assert [e.event for e in events if e.data] == ["progress", "complete"]
        final = events[-1]
        assert payloads([final])[0]["state"] == "cancelled" and final.id
        again, _ = read_events(client, stream(task["id"]), headers={"Last-Event-ID": final.id})
        assert again == 204


def test_deleting_a_task_ends_its_streams_with_a_final_deleted_error(service, wav):
    token = service.token("alice")
    task = service.create_task(token, service.upload(token, wav)["id"])
    with ThreadPoolExecutor(2) as pool:
        task_open, task_stream = read_in_background(pool, service, token, stream(task["id"]))
        user_open, user_stream = read_in_background(
            pool, service, token, "/api/v1/sse/tasks/progress", stop=lambda events: events[-1].event == "deleted"
        )
        assert task_open.wait(30) and user_open.wait(30)
        with service.client(token) as api:
            assert api.delete(f"/api/v1/tasks/{task['id']}/").status_code == 204
            status, events = task_stream.result(timeout=60)
            assert status == 200
            assert events[-1].event == "error"
            assert json.loads(events[-1].data)["code"] == "deleted"
            assert api.get(stream(task["id"])).status_code == 404
        # The all-tasks stream goes on; it says which task went.
        _, user_events = user_stream.result(timeout=60)
    assert json.loads(user_events[-1].data) == {"task_id": task["id"]}


def test_deleting_an_audio_file_tells_the_owner_stream_which_tasks_went(service, wav):
    token = service.token("alice")
    audio = service.upload(token, wav)
    task = service.create_task(token, audio["id"])
    with service.client(token) as api:
        api.post(f"/api/v1/tasks/{task['id']}/cancel/")  # an audio in use cannot go
    with ThreadPoolExecutor(1) as pool:
        user_open, user_stream = read_in_background(
            pool, service, token, "/api/v1/sse/tasks/progress", stop=lambda events: events[-1].event == "deleted"
        )
        assert user_open.wait(30)
        with service.client(token) as api:
            assert api.delete(f"/api/v1/audio/{audio['id']}/").status_code == 204
            assert api.get(stream(task["id"])).status_code == 404
        _, user_events = user_stream.result(timeout=60)
    assert json.loads(user_events[-1].data) == {"task_id": task["id"]}


@pytest.mark.slow
def test_a_client_5000_events_behind_catches_up_in_pages_then_continues_live(service, wav):
    token = service.token("alice")
    task = service.create_task(token, service.upload(token, wav)["id"])
    start_processing(service, task["id"])
    with service.client(token) as client:
        _, first = read_events(client, stream(task["id"]), until=lambda events: True)
    seen = number(first[0].id)
    service.shell(
        "from tasks_app import services\n"
        "for i in range(5000):\n"
        f"    services.task_report_progress(task_id='{task['id']}', attempt=1,"
        " progress=i / 60, stage=f's{i}', estimated_time=None)\n"
    )

    def until(events: list) -> bool:
        real = with_ids(events[1:])
        if len(real) == 5000:
            # Caught up: what happens now must arrive live on the same connection.
            with service.client(token) as api:
                api.post(f"/api/v1/tasks/{task['id']}/cancel/")
        return bool(real) and real[-1].event == "complete"

    with service.client(token) as client:
        status, events = read_events(
            client, stream(task["id"]), until=until, timeout=120, headers={"Last-Event-ID": first[0].id}
        )
    assert status == 200 and events[0].id == ""  # a resume starts with a snapshot, no id
    real = with_ids(events[1:])
    ids = [number(e.id) for e in real]
    assert ids == list(range(seen + 1, seen + 1 + len(ids)))
    assert len(ids) == 5000 + 2  # every missed event, then the cancel's progress + complete
    progress = [p["progress"] for p in payloads(real)]
    assert progress == sorted(progress)
    assert real[-1].event == "complete" and payloads(real)[-1]["state"] == "cancelled"


def mint_token(service: LiveService, username: str, seconds: int) -> str:
    """An access token of `username` that expires in `seconds`."""
    return service.shell(
        "from datetime import timedelta; from django.contrib.auth import get_user_model; "
        "from rest_framework_simplejwt.tokens import AccessToken; "
        f"t = AccessToken.for_user(get_user_model().objects.get(username='{username}')); "
        f"t.set_exp(lifetime=timedelta(seconds={seconds})); print(t)"
    ).strip()


def test_a_stream_ends_when_its_token_expires_and_resumes_with_a_fresh_one(service, wav):
    token = service.token("alice")
    task = service.create_task(token, service.upload(token, wav)["id"])
    short = mint_token(service, "alice", 8)
    with service.client(short) as client:
        status, events = read_events(client, stream(task["id"]), timeout=60)
    assert status == 200
    final = events[-1]
    assert final.event == "error" and json.loads(final.data)["code"] == "unauthenticated"
    last_id = with_ids(events)[-1].id
    with service.client(token) as client:
        status, resumed = read_events(
            client, stream(task["id"]), until=lambda e: True, headers={"Last-Event-ID": last_id}
        )
    assert status == 200 and resumed[0].event == "progress"


def test_deactivating_a_user_ends_their_streams_and_refuses_their_tickets(service, wav):
    service.shell(
        "from django.contrib.auth import get_user_model\n"
        "u = get_user_model().objects.create_user('carol')\n"
        f"u.set_password('{PASSWORD}'); u.save()\n"
    )
    token = service.token("carol")
    task = service.create_task(token, service.upload(token, wav)["id"])
    with service.client(token) as api:
        ticket = api.post("/api/v1/auth/stream-ticket/", json={"task_id": task["id"]}).json()
    with ThreadPoolExecutor(2) as pool:
        task_open, task_stream = read_in_background(pool, service, token, stream(task["id"]))
        user_open, user_stream = read_in_background(pool, service, token, "/api/v1/sse/tasks/progress")
        assert task_open.wait(30) and user_open.wait(30)
        service.shell(
            "from django.contrib.auth import get_user_model; "
            "u = get_user_model().objects.get(username='carol'); "
            "u.is_active = False; u.save()"
        )
        for future in (task_stream, user_stream):
            status, events = future.result(timeout=60)
            assert status == 200
            assert events[-1].event == "error"
            assert json.loads(events[-1].data)["code"] == "unauthenticated"
    with httpx.Client(base_url=service.base_url) as anon:
        refused = anon.get(stream(task["id"]) + f"?ticket={ticket['ticket']}")
    assert refused.status_code == 401


@pytest.mark.parametrize("revoke", ["logout", "password"])
def test_signing_out_or_a_password_change_ends_the_users_streams(service, wav, revoke):
    name = f"dave_{revoke}"
    service.shell(
        "from django.contrib.auth import get_user_model\n"
        f"u = get_user_model().objects.create_user('{name}')\n"
        f"u.set_password('{PASSWORD}'); u.save()\n"
    )
    token = service.token(name)
    task = service.create_task(token, service.upload(token, wav)["id"])
    with ThreadPoolExecutor(2) as pool:
        task_open, task_stream = read_in_background(pool, service, token, stream(task["id"]))
        user_open, user_stream = read_in_background(pool, service, token, "/api/v1/sse/tasks/progress")
        assert task_open.wait(30) and user_open.wait(30)
        if revoke == "logout":
            with service.client(token) as api:
                assert api.post("/api/v1/auth/logout/").status_code == 204
        else:
            service.shell(
                "from django.contrib.auth import get_user_model; "
                f"u = get_user_model().objects.get(username='{name}'); "
                "u.set_password('another-password-2'); u.save()"
            )
        for future in (task_stream, user_stream):
            status, events = future.result(timeout=60)
            assert status == 200
            assert events[-1].event == "error"
            assert json.loads(events[-1].data)["code"] == "unauthenticated"
