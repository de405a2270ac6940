"""Webhook deliveries: owed with the task change, signed per Standard Webhooks, retried with back-off
for a day, in order per task, claimed by one worker, coalesced progress, endpoints disabled after
days of failure, refused destinations at send time. A fake clock and an in-memory transport: no
sleeps, no network."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tasks_app import services
from tasks_app.models import Task
from tasks_app.webhooks import destinations
from tasks_app.webhooks.models import WebhookDelivery, WebhookEndpoint
from tasks_app.webhooks.sender import deliver_due, make_client
from tasks_app.webhooks.services import (
    claim,
    deliveries_claim,
    delivery_record_attempt,
    due_deliveries,
    endpoint_rotate_secret,
)

Status = WebhookDelivery.Status
PUBLIC = "93.184.216.34"


class Clock:
    """A clock the test moves by hand; it stands still from its first reading on."""

    def __init__(self) -> None:
        self.frozen: datetime | None = None

    @property
    def now(self) -> datetime:
        """The time, read from the real clock only the first time."""
        if self.frozen is None:
            self.frozen = timezone.now()
        return self.frozen

    @now.setter
    def now(self, value: datetime) -> None:
        self.frozen = value

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move forward."""
        self.now = self.now + timedelta(**delta)


class Receiver:
    """An in-memory webhook receiver: records every request and answers what `answer` says."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answer: Callable[[httpx.Request], httpx.Response] = lambda request: httpx.Response(200, text="ok")

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.answer(request)

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON body of every request, in order."""
        return [json.loads(request.content) for request in self.requests]


@pytest.fixture(autouse=True)
def public_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Resolve names from this table (default: a public address) instead of the network."""
    table: dict[str, str] = {}
    monkeypatch.setattr(destinations, "resolve", lambda host, port: [ipaddress.ip_address(table.get(host, PUBLIC))])
    return table


@pytest.fixture
def clock() -> Clock:
    """The test's clock."""
    return Clock()


@pytest.fixture
def receiver() -> Receiver:
    """The receiving backend."""
    return Receiver()


@pytest.fixture
def send(clock: Clock, receiver: Receiver) -> Iterator[Callable[[], int]]:
    """One round of the worker's sender at the clock's time, into the receiver."""
    client = make_client()
    client._transport = httpx.MockTransport(receiver)  # the real client's settings, an in-memory wire
    yield lambda: deliver_due(client=client, clock=clock)
    client.close()


@pytest.fixture
def endpoint(user: Any) -> WebhookEndpoint:
    """An endpoint of `user` for the three final events."""
    return WebhookEndpoint.objects.create(
        owner=user,
        url="https://hooks.example.com/audio?x=1",
        events=["task.completed", "task.failed", "task.cancelled"],
    )


def complete(task: Task) -> Task:
    """Run a task through start and completion with the services the worker uses."""
    started = services.task_start(task_id=task.id)
    assert started is not None
    done = services.task_complete(task_id=task.id, attempt=started.attempts, result={"ok": True})
    assert done is not None
    return done


def test_a_completed_task_owes_its_subscribed_endpoint_one_delivery(endpoint, user, make_task):
    task = complete(make_task(user))
    delivery = WebhookDelivery.objects.get()
    assert (delivery.endpoint_id, delivery.task_id, delivery.event_type) == (endpoint.pk, task.id, "task.completed")
    assert delivery.status == Status.PENDING


def test_a_rolled_back_change_owes_nothing(endpoint, user, make_task):
    task = make_task(user)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.task_cancel(task_id=task.id)
        assert WebhookDelivery.objects.count() == 1
        raise RuntimeError("the change fails after the transition")
    assert WebhookDelivery.objects.count() == 0
    assert Task.objects.get(pk=task.id).state == Task.State.PENDING


def test_only_the_owners_active_subscribed_endpoints_are_owed(endpoint, user, other_user, make_task):
    WebhookEndpoint.objects.create(owner=other_user, url="https://b.example.com/", events=["task.completed"])
    WebhookEndpoint.objects.create(owner=user, url="https://c.example.com/", events=["task.failed"])
    WebhookEndpoint.objects.create(owner=user, url="https://d.example.com/", events=["task.completed"], is_active=False)
    complete(make_task(user))
    assert list(WebhookDelivery.objects.values_list("endpoint_id", flat=True)) == [endpoint.pk]


def test_delivery_is_signed_as_standard_webhooks_says(endpoint, user, make_task, send, receiver):
    task = complete(make_task(user))
    assert send() == 1
    [request] = receiver.requests
    # An independent verifier: the Standard Webhooks reference library.
    payload = Webhook(endpoint.secret).verify(request.content, dict(request.headers))
    assert payload["type"] == "task.completed"
    assert payload["data"]["task_id"] == task.id
    assert payload["data"]["state"] == "completed"
    assert payload["data"]["progress"] == 100.0
    assert payload["data"]["links"]["task"] == f"/api/v1/tasks/{task.id}/"
    assert datetime.fromisoformat(payload["timestamp"])
    assert request.headers["webhook-id"] == WebhookDelivery.objects.get().message_id
    assert abs(int(request.headers["webhook-timestamp"]) - timezone.now().timestamp()) < 60
    assert request.headers["content-type"] == "application/json"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(request.content, dict(request.headers))
    assert WebhookDelivery.objects.get().status == Status.SUCCEEDED


def test_the_request_goes_to_the_checked_address_with_the_host_name_kept(endpoint, user, make_task, send, receiver):
    complete(make_task(user))
    send()
    [request] = receiver.requests
    assert request.url.host == PUBLIC
    assert request.url.raw_path == b"/audio?x=1"
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"


def test_after_rotation_both_secrets_sign_until_the_grace_period_ends(
    endpoint, user, make_task, send, receiver, clock, settings
):
    old = endpoint.secret
    endpoint = endpoint_rotate_secret(endpoint=endpoint)
    complete(make_task(user))
    send()
    request = receiver.requests[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, endpoint.secret):
        Webhook(secret).verify(request.content, dict(request.headers))
    clock.advance(hours=settings.WEBHOOK_SECRET_GRACE_HOURS, seconds=1)
    complete(make_task(user))
    send()
    assert len(receiver.requests[-1].headers["webhook-signature"].split(" ")) == 1


def test_failures_are_retried_with_doubling_delays_for_a_day_then_failed(
    endpoint, user, make_task, send, receiver, clock, settings
):
    receiver.answer = lambda request: httpx.Response(500, text="down")
    complete(make_task(user))
    delivery = WebhookDelivery.objects.get()
    times = []
    while True:
        assert send() == 1
        times.append(clock.now)
        delivery.refresh_from_db()
        if delivery.status != Status.PENDING:
            break
        assert delivery.next_attempt_at > clock.now
        assert send() == 0  # nothing is due before its time
        clock.now = delivery.next_attempt_at
    assert delivery.status == Status.FAILED
    assert delivery.last_status_code == 500
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    base, cap = settings.WEBHOOK_RETRY_BASE_SECONDS, settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS
    assert gaps[:3] == [base, base * 2, base * 4]
    assert max(gaps) == cap
    assert all(later >= earlier for earlier, later in zip(gaps, gaps[1:]))
    assert times[-1] - delivery.created_at >= timedelta(hours=24)
    assert times[-2] - delivery.created_at < timedelta(hours=24)
    assert {request.headers["webhook-id"] for request in receiver.requests} == {delivery.message_id}
    assert len({request.content for request in receiver.requests}) == 1
    assert delivery.attempt_log.count() == len(times)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (lambda request: httpx.Response(302, headers={"location": "http://10.0.0.1/"}), "Redirects are not followed"),
        (lambda request: httpx.Response(404), "HTTP 404"),
        (lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=request)), "No answer within 10 s"),
        (lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused", request=request)), "ConnectError"),
    ],
)
def test_anything_but_a_2xx_is_a_failed_attempt(endpoint, user, make_task, send, receiver, answer, error):
    receiver.answer = answer
    complete(make_task(user))
    send()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.PENDING
    assert error in delivery.last_error
    assert delivery.next_attempt_at is not None
    assert len(receiver.requests) == 1  # no redirect followed


def test_a_slow_2xx_is_a_failure(endpoint, user, make_task, receiver, clock, settings):
    # The answer counts only if it came within the limit: a clock that jumps past it while sending.
    class SlowClient(httpx.Client):
        def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            import time

            response = super().send(request, **kwargs)
            monotonic = time.monotonic

            def late() -> float:
                return monotonic() + settings.WEBHOOK_TIMEOUT_SECONDS + 1

            time.monotonic = late  # restored right after the sender's measurement
            self.restore = (time, monotonic)
            return response

    client = SlowClient(transport=httpx.MockTransport(receiver))
    complete(make_task(user))
    try:
        deliver_due(client=client, clock=clock)
    finally:
        time_module, original = client.restore
        time_module.monotonic = original
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.PENDING
    assert "longer than 10 s" in delivery.last_error


def test_a_response_body_is_read_only_up_to_the_limit(endpoint, user, make_task, send, receiver, settings):
    pulled = []

    def endless() -> Iterator[bytes]:
        while True:
            pulled.append(1024)
            yield b"x" * 1024

    receiver.answer = lambda request: httpx.Response(200, stream=_Stream(endless()))
    complete(make_task(user))
    send()
    assert WebhookDelivery.objects.get().status == Status.SUCCEEDED
    assert sum(pulled) <= settings.WEBHOOK_RESPONSE_MAX_BYTES + 1024


class _Stream(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks


def test_a_host_that_now_resolves_to_a_private_address_is_not_sent_to(
    endpoint, user, make_task, send, receiver, public_dns
):
    complete(make_task(user))
    public_dns["hooks.example.com"] = "127.0.0.1"  # DNS rebinding after the endpoint was checked
    send()
    delivery = WebhookDelivery.objects.get()
    assert receiver.requests == []
    assert delivery.status == Status.PENDING
    assert "loopback, private" in delivery.last_error


def test_a_tasks_deliveries_go_in_order(endpoint, user, make_task, send, receiver, clock):
    task = make_task(user)
    services.task_cancel(task_id=task.id)
    services.task_retry(task_id=task.id)
    complete(task)
    other = complete(make_task(user))
    receiver.answer = lambda request: httpx.Response(503)
    assert send() == 2  # the first of each task; the later one of `task` waits
    receiver.answer = lambda request: httpx.Response(200)
    clock.advance(hours=1)
    send()
    send()
    sent = [(body["data"]["task_id"], body["type"]) for body in receiver.bodies()[2:]]
    assert [item for item in sent if item[0] == task.id] == [(task.id, "task.cancelled"), (task.id, "task.completed")]
    assert (other.id, "task.completed") in sent
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {Status.SUCCEEDED}


def test_two_workers_never_send_the_same_attempt(endpoint, user, make_task, clock, settings):
    complete(make_task(user))
    # Both workers read the delivery as due; only the first guarded UPDATE wins it.
    read_by_one, read_by_other = due_deliveries(now=clock.now, limit=10), due_deliveries(now=clock.now, limit=10)
    [first] = claim(read_by_one, now=clock.now)
    assert claim(read_by_other, now=clock.now) == []
    assert deliveries_claim(now=clock.now, limit=10) == []
    # The first worker died mid-request: past its claim another worker takes the delivery over ...
    clock.advance(seconds=settings.WEBHOOK_CLAIM_SECONDS + 1)
    [second] = deliveries_claim(now=clock.now, limit=10)
    assert (second.delivery_id, second.attempt) == (first.delivery_id, first.attempt + 1)
    assert second.message_id == first.message_id
    # ... and a late answer to the first claim changes nothing.
    from tasks_app.webhooks.services import Outcome

    assert (
        delivery_record_attempt(claimed=first, outcome=Outcome(True, 200), started_at=clock.now, now=clock.now) is None
    )
    assert WebhookDelivery.objects.get().status == Status.SENDING


def test_progress_is_coalesced_to_one_per_task_per_interval(user, make_task, send, receiver, clock, settings):
    WebhookEndpoint.objects.create(owner=user, url="https://hooks.example.com/", events=["task.progress"])
    task = make_task(user)
    attempt = services.task_start(task_id=task.id).attempts
    for percent in (10, 20, 30):
        services.task_report_progress(
            task_id=task.id, attempt=attempt, progress=percent, stage="x", estimated_time=None
        )
    assert WebhookDelivery.objects.count() == 1  # three updates, one delivery holding the newest
    send()
    assert [body["data"]["progress"] for body in receiver.bodies()] == [30.0]
    services.task_report_progress(task_id=task.id, attempt=attempt, progress=40, stage="x", estimated_time=None)
    services.task_report_progress(task_id=task.id, attempt=attempt, progress=50, stage="x", estimated_time=None)
    assert send() == 0  # the next one waits out the interval since the last
    clock.advance(seconds=settings.WEBHOOK_PROGRESS_INTERVAL_SECONDS)
    assert send() == 1
    assert [body["data"]["progress"] for body in receiver.bodies()] == [30.0, 50.0]


def test_final_event_skips_progress_not_yet_sent(endpoint, user, make_task, send, receiver):
    endpoint.events = [*endpoint.events, "task.progress"]
    endpoint.save()
    task = make_task(user)
    attempt = services.task_start(task_id=task.id).attempts
    services.task_report_progress(task_id=task.id, attempt=attempt, progress=50, stage="x", estimated_time=None)
    services.task_complete(task_id=task.id, attempt=attempt, result={})
    send()
    assert [body["type"] for body in receiver.bodies()] == ["task.completed"]
    assert WebhookDelivery.objects.filter(status=Status.SKIPPED).count() == 1


def test_an_endpoint_failing_for_five_days_is_disabled_and_says_why(
    endpoint, user, make_task, send, receiver, clock, settings, auth_client
):
    settings.WEBHOOK_RETRY_HOURS = 24 * 10
    receiver.answer = lambda request: httpx.Response(500)
    complete(make_task(user))
    while WebhookEndpoint.objects.get(pk=endpoint.pk).is_active:
        assert clock.now - WebhookDelivery.objects.get().created_at <= timedelta(days=5, hours=1)
        send()
        clock.now = max(clock.now, WebhookDelivery.objects.get().next_attempt_at)
    shown = auth_client(user).get(f"/api/v1/webhooks/{endpoint.pk}/").json()
    assert shown["is_active"] is False
    assert "failed for more than 5" in shown["disabled_reason"]
    assert "HTTP 500" in shown["disabled_reason"]
    requests = len(receiver.requests)
    clock.advance(days=1)
    assert send() == 0
    # Re-enabled by its owner: the reason goes, the waiting delivery is sent.
    receiver.answer = lambda request: httpx.Response(204)
    enabled = auth_client(user).patch(f"/api/v1/webhooks/{endpoint.pk}/", {"is_active": True}, format="json").json()
    assert (enabled["is_active"], enabled["disabled_reason"]) == (True, "")
    assert send() == 1
    assert len(receiver.requests) == requests + 1
    assert WebhookDelivery.objects.get().status == Status.SUCCEEDED


def test_a_success_brings_the_endpoints_waiting_retries_forward(endpoint, user, make_task, send, receiver, clock):
    receiver.answer = lambda request: httpx.Response(500)
    complete(make_task(user))
    send()
    waiting = WebhookDelivery.objects.get()
    receiver.answer = lambda request: httpx.Response(200)
    complete(make_task(user))
    clock.advance(seconds=1)
    send()
    waiting.refresh_from_db()
    assert waiting.next_attempt_at == clock.now
    send()
    assert WebhookDelivery.objects.filter(status=Status.SUCCEEDED).count() == 2


def test_deliveries_list_shows_attempts_and_redeliver_sends_again(
    endpoint, user, other_user, make_task, send, receiver, auth_client, clock
):
    receiver.answer = lambda request: httpx.Response(500)
    task = complete(make_task(user))
    send()
    receiver.answer = lambda request: httpx.Response(200)
    client = auth_client(user)
    listed = client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/", {"task_id": task.id}).json()
    [item] = listed["results"]
    assert item["type"] == "task.completed"
    assert item["status"] == "pending"
    assert item["last_status_code"] == 500
    assert item["next_attempt_at"] is not None
    [attempt] = item["attempt_log"]
    assert attempt["status_code"] == 500
    assert attempt["response_ms"] is not None
    assert attempt["succeeded"] is False
    url = f"/api/v1/webhooks/{endpoint.pk}/deliveries/{item['id']}/redeliver/"
    assert auth_client(other_user).post(url).status_code == 404
    assert client.post(url).status_code == 202
    clock.now = timezone.now()
    send()
    assert [r.headers["webhook-id"] for r in receiver.requests] == [item["id"], item["id"]]
    # A succeeded delivery can be sent once more too.
    assert client.post(url).status_code == 202
    clock.now = timezone.now()
    send()
    assert len(receiver.requests) == 3
    assert client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/").json()["results"][0]["status"] == "succeeded"


def test_metrics_count_deliveries_and_attempts_by_outcome(
    endpoint, user, make_task, send, receiver, client, settings, clock
):
    settings.METRICS_TOKEN = "t"
    receiver.answer = lambda request: httpx.Response(500)
    complete(make_task(user))
    send()
    receiver.answer = lambda request: httpx.Response(200)
    complete(make_task(user))
    clock.advance(seconds=1)
    send()
    text = client.get("/metrics", headers={"Authorization": "Bearer t"}).content.decode()
    assert 'webhook_delivery_attempts_total{outcome="failed"} 1.0' in text
    assert 'webhook_delivery_attempts_total{outcome="succeeded"} 1.0' in text
    assert 'webhook_deliveries{status="pending"} 1.0' in text
    assert 'webhook_deliveries{status="succeeded"} 1.0' in text


def test_progress_failing_while_the_final_event_is_owed_is_not_retried(
    endpoint, user, make_task, clock, send, receiver
):
    endpoint.events = [*endpoint.events, "task.progress"]
    endpoint.save()
    task = make_task(user)
    attempt = services.task_start(task_id=task.id).attempts
    services.task_report_progress(task_id=task.id, attempt=attempt, progress=50, stage="x", estimated_time=None)
    [in_flight] = deliveries_claim(now=clock.now, limit=10)
    services.task_complete(task_id=task.id, attempt=attempt, result={})  # while the progress is being sent
    from tasks_app.webhooks.services import Outcome

    delivery_record_attempt(claimed=in_flight, outcome=Outcome(False, 500), started_at=clock.now, now=clock.now)
    assert WebhookDelivery.objects.get(pk=in_flight.delivery_id).status == Status.SKIPPED
    clock.advance(seconds=1)
    send()
    assert [body["type"] for body in receiver.bodies()] == ["task.completed"]


def test_a_tasks_deliveries_are_listed_for_its_owner_only(
    endpoint, user, other_user, make_task, send, receiver, auth_client
):
    task = complete(make_task(user))
    complete(make_task(user))
    send()
    listed = auth_client(user).get(f"/api/v1/tasks/{task.id}/webhook-deliveries/")
    assert listed.status_code == 200
    [item] = listed.json()["results"]
    assert (item["task_id"], item["endpoint"], item["endpoint_url"]) == (task.id, endpoint.pk, endpoint.url)
    assert item["status"] == "succeeded"
    assert item["attempt_log"][0]["status_code"] == 200
    assert auth_client(other_user).get(f"/api/v1/tasks/{task.id}/webhook-deliveries/").status_code == 404


def test_the_dashboard_loads_the_task_deliveries_module(client, db):
    assert "tasks_app/webhook-deliveries.js" in client.get("/").content.decode()


def test_an_unexpected_error_fails_its_attempt_and_the_rest_of_the_batch_is_recorded(
    endpoint, user, make_task, receiver, clock
):
    from concurrent.futures import ThreadPoolExecutor

    def answer(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["data"]["task_id"] == broken.id:
            raise RuntimeError("a bug in the sending path")
        return httpx.Response(200)

    receiver.answer = answer
    broken = complete(make_task(user))
    fine = complete(make_task(user))
    with make_client() as client, ThreadPoolExecutor(2) as pool:
        client._transport = httpx.MockTransport(receiver)
        assert deliver_due(client=client, pool=pool, clock=clock) == 2
    statuses = dict(WebhookDelivery.objects.values_list("task_id", "status"))
    assert statuses == {broken.id: Status.PENDING, fine.id: Status.SUCCEEDED}
    assert "internal error" in WebhookDelivery.objects.get(task_id=broken.id).last_error
