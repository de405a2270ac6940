"""Stream access without headers (cookie, ticket), the per-user stream, and the stream limit."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tasks_app.audio.generate import write_tone

from .live_server import LiveService, payloads, read_events, start_service, stop_service

LIMIT = 4


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> LiveService:
    """A service with no worker (tasks stay pending) and a small per-user stream limit."""
    live = start_service(
        tmp_path_factory.mktemp("access"),
        workers=0,
        extra_env={"SSE_MAX_STREAMS_PER_USER": str(LIMIT), "SSE_KEEPALIVE_SECONDS": "1"},
    )
    yield live
    stop_service(live)


@pytest.fixture(scope="module")
def audio_id(service, tmp_path_factory) -> int:
    """One short file of alice's."""
    path = tmp_path_factory.mktemp("a") / "tone.wav"
    write_tone(str(path), 2.0)
    return service.upload(service.token("alice"), path)["id"]


def stream(task_id: str) -> str:
    """Path of a task's stream."""
    return f"/api/v1/sse/tasks/{task_id}/progress"


def first_event(client: httpx.Client, url: str, **kw) -> tuple[int, list]:
    """Open a stream and read only its first event."""
    return read_events(client, url, until=lambda evs: True, **kw)


def test_single_use_ticket_opens_one_stream_once(service, audio_id):
    token = service.token("alice")
    task = service.create_task(token, audio_id)
    other = service.create_task(token, audio_id)
    with service.client(token) as api:
        ticket = api.post("/api/v1/auth/stream-ticket/", json={"task_id": task["id"]}).json()
        wrong = api.post("/api/v1/auth/stream-ticket/", json={"task_id": task["id"]}).json()
    with service.client() as anon:  # no Authorization header, like native EventSource
        status, events = first_event(anon, stream(task["id"]) + f"?ticket={ticket['ticket']}")
        assert status == 200 and payloads(events)[0]["task_id"] == task["id"]
        reused = anon.get(stream(task["id"]) + f"?ticket={ticket['ticket']}")
        assert reused.status_code == 401 and reused.json()["error"]["code"]
        elsewhere = anon.get(stream(other["id"]) + f"?ticket={wrong['ticket']}")
        assert elsewhere.status_code == 401


def test_http_only_cookie_authenticates_the_stream(service, audio_id):
    token = service.token("alice")
    task = service.create_task(token, audio_id)
    with service.client(token) as api:
        resp = api.post("/api/v1/auth/stream-cookie/")
        assert resp.status_code == 204
        cookie = resp.headers["set-cookie"]
        assert "HttpOnly" in cookie and "sse_token=" in cookie
        value = resp.cookies["sse_token"]
    with service.client() as anon:
        status, events = first_event(anon, stream(task["id"]), headers={"Cookie": f"sse_token={value}"})
        assert status == 200 and events[0].event == "progress"
        bob_cookie = service.client(service.token("bob")).post("/api/v1/auth/stream-cookie/")
        resp = anon.get(stream(task["id"]), headers={"Cookie": f"sse_token={bob_cookie.cookies['sse_token']}"})
        assert resp.status_code == 404


def test_user_stream_carries_every_task_of_the_caller_only(service, audio_id):
    alice = service.token("alice")
    existing = service.create_task(alice, audio_id)
    bob_task_seen: list[str] = []

    def new_task_arrived(events) -> bool:
        if len(events) == 1:
            # The snapshot is in; make changes now, one of bob's and one of alice's.
            bob = service.token("bob")
            bob_audio = service.upload(bob, _short_file(service))
            bob_task_seen.append(service.create_task(bob, bob_audio["id"])["id"])
            with service.client(alice) as api:
                assert api.post(f"/api/v1/tasks/{existing['id']}/cancel/").status_code == 200
        return any(e.event == "complete" for e in events)

    with service.client(alice, timeout=30) as client:
        status, events = read_events(client, "/api/v1/sse/tasks/progress", until=new_task_arrived)
    assert status == 200
    assert events[0].event == "progress"
    # The task was only ever pending before the stream opened, so its pending state can only
    # have come from the snapshot; the cancel made while streaming came live.
    existing_states = [p["state"] for p in payloads(events) if p["task_id"] == existing["id"]]
    assert existing_states[0] == "pending" and existing_states[-1] == "cancelled"
    seen = {p["task_id"] for p in payloads(events)}
    assert existing["id"] in seen and bob_task_seen[0] not in seen
    assert payloads(events[-1:])[0]["state"] == "cancelled"


def _short_file(service: LiveService):
    path = service.data_dir / "bob.wav"
    if not path.exists():
        write_tone(str(path), 2.0)
    return path


def test_too_many_open_streams_for_one_user_gets_429(service, audio_id):
    token = service.token("alice")

    async def scenario() -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=service.base_url, headers=headers, timeout=30) as client:
            opened: asyncio.Queue = asyncio.Queue()
            release = asyncio.Event()

            async def hold() -> None:
                # Keep reading (keep-alives come every second) so the connection stays up.
                async with client.stream("GET", "/api/v1/sse/tasks/progress") as resp:
                    assert resp.status_code == 200
                    signalled = False
                    async for _line in resp.aiter_lines():
                        if not signalled:
                            opened.put_nowait(True)
                            signalled = True
                        if release.is_set():
                            break

            holders = [asyncio.create_task(hold()) for _ in range(LIMIT)]
            for _ in range(LIMIT):
                await asyncio.wait_for(opened.get(), timeout=30)
            async with client.stream("GET", "/api/v1/sse/tasks/progress") as over:
                body = json.loads(await over.aread())
            release.set()
            await asyncio.gather(*holders)
            # Closed streams free their slots again.
            async with client.stream("GET", "/api/v1/sse/tasks/progress") as again:
                return over.status_code, body, again.status_code

    status, body, later = asyncio.run(scenario())
    assert status == 429
    assert body["error"]["code"] == "too_many_streams"
    assert later == 200


def test_idle_stream_gets_keep_alives(service, audio_id):
    token = service.token("alice")
    task = service.create_task(token, audio_id)
    lines: list[str] = []
    with service.client(token, timeout=30) as client, client.stream("GET", stream(task["id"])) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            lines.append(line)
            if line.startswith(": keep-alive"):
                break
    assert lines[0] == "event: progress"
    assert lines[-1] == ": keep-alive"


def test_the_stream_reader_does_not_take_a_keep_alive_for_an_event():
    body = b'event: progress\nid: user-1:1\ndata: {"task_id": "t"}\n\n: keep-alive\n\n'
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, content=body, headers={"Content-Type": "text/event-stream"})
    )
    with httpx.Client(transport=transport, base_url="http://test") as client:
        status, events = read_events(client, "/stream")
    assert status == 200
    assert [(e.event, e.id) for e in events] == [("progress", "user-1:1")]
    assert payloads(events) == [{"task_id": "t"}]
