"""Webhooks end to end: a real receiver on loopback, a real server and worker. The receiver fails,
goes away and comes back, the worker is killed mid-retry and the server restarted; every event
still arrives, signed, each `webhook-id` until acknowledged, in order per task."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tasks_app.audio.generate import write_tone

from .live_server import LiveService, free_port, spawn_worker, start_service, stop_service, wait_until

pytestmark = pytest.mark.slow

FINAL = {"task.completed", "task.failed", "task.cancelled"}


class Receiver:
    """A webhook receiver on 127.0.0.1 that verifies every request; it can fail, stop and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status = 500
        self.secret = ""
        self.lock = threading.Lock()
        # (webhook-id, type, task id, status answered) per request, in arrival order.
        self.log: list[tuple[str, str, str, int]] = []
        self.unsigned: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        """Listen (again) on the same port."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    payload = Webhook(receiver.secret).verify(body, dict(self.headers))
                except Exception as exc:  # noqa: BLE001 - any failure is a finding
                    receiver.unsigned.append(repr(exc))
                    payload = json.loads(body)
                with receiver.lock:
                    status = receiver.status
                    receiver.log.append(
                        (self.headers["webhook-id"], payload["type"], payload["data"]["task_id"], status)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: the next attempts find the port closed."""
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    def acknowledged(self) -> dict[str, list[str]]:
        """Per task, the webhook-ids answered 2xx, in order of their first acknowledgement."""
        seen: dict[str, list[str]] = {}
        with self.lock:
            for message_id, _, task_id, status in self.log:
                if status < 300 and message_id not in seen.setdefault(task_id, []):
                    seen[task_id].append(message_id)
        return seen


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running receiver, stopped after the test."""
    receiver = Receiver()
    receiver.start()
    yield receiver
    if receiver.server is not None:
        receiver.stop()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LiveService]:
    """Server and one worker with fast retries, allowed to send to loopback."""
    service = start_service(
        tmp_path,
        extra_env={
            "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1",
            "WEBHOOK_RETRY_BASE_SECONDS": "0.2",
            "WEBHOOK_RETRY_MAX_DELAY_SECONDS": "1",
            "WEBHOOK_POLL_SECONDS": "0.1",
            "WEBHOOK_CLAIM_SECONDS": "5",
            "WEBHOOK_PROGRESS_INTERVAL_SECONDS": "0.2",
            "TASK_PROGRESS_INTERVAL": "0.05",
        },
    )
    yield service
    stop_service(service)


def deliveries(service: LiveService, token: str, endpoint_id: str) -> list[dict[str, Any]]:
    """Every delivery of the endpoint, oldest first, through the API."""
    with service.client(token) as client:
        response = client.get(f"/api/v1/webhooks/{endpoint_id}/deliveries/", params={"page_size": 100})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["results"]))


def test_every_event_arrives_signed_and_in_order_through_failures_and_restarts(
    service: LiveService, receiver: Receiver, tmp_path: Path
) -> None:
    token = service.token("alice")
    with service.client(token) as client:
        created = client.post(
            "/api/v1/webhooks/",
            json={"url": f"http://127.0.0.1:{receiver.port}/hooks", "events": [*sorted(FINAL), "task.progress"]},
        )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    receiver.secret = endpoint["secret"]
    audio = tmp_path / "tone.wav"
    write_tone(str(audio), 3.0)
    audio_id = service.upload(token, audio)["id"]
    tasks = [service.create_task(token, audio_id)["id"] for _ in range(3)]

    # 1. The receiver answers 500 while every task runs to its end: all final events are owed.
    def finals_owed() -> bool:
        owed = [d for d in deliveries(service, token, endpoint["id"]) if d["type"] in FINAL]
        return len(owed) == len(tasks) and all(d["attempts"] >= 1 for d in owed)

    wait_until(finals_owed, 120, "every task's final event to be tried at least once")
    assert receiver.acknowledged() == {}

    # 2. The receiver goes away and the worker is killed in the middle of its retries.
    receiver.stop()
    os.killpg(service.workers[0].pid, signal.SIGKILL)
    service.workers[0].wait()
    service.restart_daphne()
    spawn_worker(service)
    wait_until(
        lambda: any("ConnectError" in d["last_error"] for d in deliveries(service, token, endpoint["id"])),
        60,
        "an attempt to find the receiver gone",
    )

    # 3. The receiver comes back answering 200: everything owed arrives.
    receiver.status = 200
    receiver.start()

    def all_sent() -> list[dict[str, Any]] | None:
        found = deliveries(service, token, endpoint["id"])
        finished = all(d["status"] in {"succeeded", "skipped"} for d in found)
        return found if finished and sum(d["type"] in FINAL for d in found) == len(tasks) else None

    found = wait_until(all_sent, 120, "every delivery to be acknowledged")
    assert receiver.unsigned == []
    acknowledged = receiver.acknowledged()
    for task_id in tasks:
        owed = [d["id"] for d in found if d["task_id"] == task_id and d["status"] == "succeeded"]
        assert acknowledged[task_id] == owed, f"{task_id}: acknowledged out of order or not at all"
        assert [d["type"] for d in found if d["id"] == owed[-1]] == ["task.completed"]
    # Each webhook-id was sent until acknowledged, and not after.
    with receiver.lock:
        log = list(receiver.log)
    for message_id in {d["id"] for d in found if d["status"] == "succeeded"}:
        answers = [status for mid, _, _, status in log if mid == message_id]
        assert answers[-1] == 200 and answers.count(200) == 1, (message_id, answers)
