"""End to end over real processes: upload, analyze, and watch the task's SSE stream."""

from __future__ import annotations

import httpx
import pytest

from tasks_app.audio.generate import write_tone

from .live_server import LiveService, live, payloads, read_events, wait_until  # noqa: F401

# Long enough that analysis takes well over a second on these machines (see test below).
LONG_SECONDS = 20 * 60


@pytest.fixture(scope="module")
def long_audio(live: LiveService, tmp_path_factory) -> dict:  # noqa: F811
    """A 20-minute stereo FLAC tone uploaded once by alice (about 6 s of analysis here)."""
    path = tmp_path_factory.mktemp("audio") / "long.flac"
    write_tone(str(path), LONG_SECONDS, fmt="flac", sample_rate=44100, channels=2)
    return live.upload(live.token("alice"), path)


def stream_url(task_id: str) -> str:
    """Path of a task's stream."""
    return f"/api/v1/sse/tasks/{task_id}/progress"


def event_number(event_id: str) -> int:
    """The per-channel counter in an id like `task-task_x:12`."""
    return int(event_id.rsplit(":", 1)[1])


def test_analyze_task_streams_snapshot_progress_eta_then_complete(live, long_audio):  # noqa: F811
    token = live.token("alice")
    task = live.create_task(token, long_audio["id"], kind="analyze")
    with live.client(token, timeout=120) as client:
        status, events = read_events(client, stream_url(task["id"]), timeout=180)
        assert status == 200
        assert events[0].event == "progress"  # the snapshot
        assert events[0].id, "the snapshot carries an id so a reconnect resumes after it"
        assert events[-1].event == "complete"
        final = payloads(events[-1:])[0]
        assert final["state"] == "completed" and final["progress"] == 100
        progress = payloads(events, "progress")
        values = [p["progress"] for p in progress]
        assert values == sorted(values), "progress never decreases"
        middle = {v for v in values if 0 < v < 100}
        assert len(middle) >= 3, values
        assert values[-1] == 100
        processing = [p for p in progress if p["state"] == "processing" and p["progress"] > 20]
        # The ETA appears once throughput is measured (after 0.5 s of work), so on a fast
        # machine the first processing events may carry none; later ones must.
        etas = [p["estimated_time"] for p in processing if p["estimated_time"] is not None]
        assert etas and all(isinstance(e, float | int) and e >= 0 for e in etas), processing
        ids = [event_number(e.id) for e in events[1:]]
        assert ids == list(range(ids[0], ids[0] + len(ids))), "no gaps, no repeats"

        detail = client.get(f"/api/v1/tasks/{task['id']}/").json()
        assert abs(detail["result"]["format"]["duration"] - LONG_SECONDS) < 0.010

        again, _ = read_events(client, stream_url(task["id"]), headers={"Last-Event-ID": events[-1].id})
        assert again == 204


def test_reconnect_with_last_event_id_replays_missed_events(live, long_audio):  # noqa: F811
    token = live.token("alice")
    task = live.create_task(token, long_audio["id"])
    with live.client(token, timeout=120) as client:
        _, first = read_events(
            client,
            stream_url(task["id"]),
            until=lambda evs: (
                len([e for e in evs if e.event == "progress" and 0 < payloads([e])[0]["progress"] < 100]) >= 2
            ),
        )
        last_id = first[-1].id
        # Stay away until the task has finished, so everything after last_id is "missed".
        wait_until(
            lambda: client.get(f"/api/v1/tasks/{task['id']}/progress/").json()["state"] == "completed",
            180,
            "task completion",
        )
        _, second = read_events(client, stream_url(task["id"]), headers={"Last-Event-ID": last_id})
    assert second[0].event == "progress" and second[0].id == ""  # snapshot, no id
    replayed = second[1:]
    numbers = [event_number(e.id) for e in replayed]
    assert numbers == list(range(event_number(last_id) + 1, event_number(last_id) + 1 + len(numbers)))
    states = [p["state"] for p in payloads(first[1:] + replayed)]
    assert states[-1] == "completed" and "processing" in states
    assert replayed[-1].event == "complete"


def test_polyfill_last_event_id_query_parameter_resumes_too(live, long_audio):  # noqa: F811
    token = live.token("alice")
    task = live.create_task(token, long_audio["id"])
    with live.client(token, timeout=120) as client:
        _, events = read_events(client, stream_url(task["id"]), timeout=180)
        middle = events[len(events) // 2]
        _, resumed = read_events(client, stream_url(task["id"]) + f"?lastEventId={middle.id}")
    expected = [e.id for e in events[events.index(middle) + 1 :]]
    assert [e.id for e in resumed[1:]] == expected


def test_cancel_during_processing_ends_stream_with_cancelled(live, long_audio):  # noqa: F811
    token = live.token("alice")
    task = live.create_task(token, long_audio["id"])
    with live.client(token, timeout=60) as client:

        def processing(evs) -> bool:
            return any(p["state"] == "processing" and p["progress"] > 0 for p in payloads(evs, "progress"))

        with httpx.Client(base_url=live.base_url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as streamer:
            _, seen = read_events(streamer, stream_url(task["id"]), until=processing)
            resp = client.post(f"/api/v1/tasks/{task['id']}/cancel/")
            assert resp.status_code == 200, resp.text
            _, rest = read_events(streamer, stream_url(task["id"]), headers={"Last-Event-ID": seen[-1].id})
        assert rest[-1].event == "complete"
        assert payloads(rest[-1:])[0]["state"] == "cancelled"
        assert client.get(f"/api/v1/tasks/{task['id']}/").json()["state"] == "cancelled"


def test_stream_auth_errors_are_real_statuses_with_json(live, long_audio):  # noqa: F811
    alice = live.token("alice")
    task = live.create_task(alice, long_audio["id"])
    url = stream_url(task["id"])
    with httpx.Client(base_url=live.base_url, timeout=30) as anon:
        resp = anon.get(url)
        assert resp.status_code == 401 and resp.json()["error"]["code"]
        resp = anon.get(url, headers={"Authorization": "Bearer not-a-token"})
        assert resp.status_code == 401
        resp = anon.get(url, headers={"Authorization": f"Bearer {expired_token()}"})
        assert resp.status_code == 401
        assert (
            "expired" in resp.json()["error"]["message"].lower() or "invalid" in resp.json()["error"]["message"].lower()
        )
    with live.client(live.token("bob")) as bob:
        assert bob.get(url).status_code == 404
        assert bob.get(stream_url("task_doesnotexist")).status_code == 404
        assert bob.get(f"/api/v1/tasks/{task['id']}/").status_code == 404
    with live.client(live.token("root"), timeout=60) as staff:
        status, events = read_events(staff, url, until=lambda evs: True)
        assert status == 200 and events[0].event == "progress"


def expired_token() -> str:
    """An access token signed with the service's key whose lifetime is over."""
    from datetime import timedelta

    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken()
    token["user_id"] = "1"
    token.set_exp(lifetime=-timedelta(minutes=5))
    return str(token)


def test_finished_task_stream_sends_snapshot_and_complete_then_closes(live, tmp_path):  # noqa: F811
    path = tmp_path / "short.wav"
    write_tone(str(path), 3, fmt="wav")
    token = live.token("alice")
    audio = live.upload(token, path)
    task = live.create_task(token, audio["id"])
    with live.client(token, timeout=60) as client:
        wait_until(
            lambda: client.get(f"/api/v1/tasks/{task['id']}/progress/").json()["state"] == "completed",
            60,
            "task completion",
        )
        resp = client.get(stream_url(task["id"]))
        assert resp.headers["cache-control"] == "no-cache"
        assert resp.headers["x-accel-buffering"] == "no"
        _, events = read_events(client, stream_url(task["id"]))
        # Every event has an id to resume from; resuming after the snapshot still gets `complete`.
        assert all(e.id for e in events), [e.id for e in events]
        _, resumed = read_events(client, stream_url(task["id"]), headers={"Last-Event-ID": events[0].id})
    assert [e.event for e in events] == ["progress", "complete"]
    assert payloads(events)[0]["state"] == "completed"
    assert [e.event for e in resumed] == ["progress", "complete"]


def test_docs_admin_and_their_static_files_are_served_by_daphne(live):  # noqa: F811
    with live.client() as client:
        docs = client.get("/docs")
        assert docs.status_code == 200
        bundle = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and len(bundle.content) > 100_000
        assert client.get("/admin/login/").status_code == 200
        assert client.get("/static/admin/css/base.css").status_code == 200
