"""Every write to webhook endpoints and deliveries: the endpoint resource, the deliveries a task
change owes (written in that change's transaction), claiming due ones and recording attempts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from ..exceptions import Conflict, InvalidInput
from ..models import Task
from ..progress import task_progress
from ..selectors import task_artifact_keys
from .destinations import UnsafeDestination, check_url
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, new_secret

Event = WebhookEndpoint.Event
Status = WebhookDelivery.Status

# Final state of a task -> the event that reports it.
STATE_EVENTS = {
    Task.State.COMPLETED: Event.COMPLETED,
    Task.State.FAILED: Event.FAILED,
    Task.State.CANCELLED: Event.CANCELLED,
}
# Link name in the payload -> (URL name, artifact the link needs, or None).
LINKS = {
    "task": ("task-detail", None),
    "progress": ("task-progress", None),
    "output": ("task-output", "output"),
    "waveform_json": ("task-waveform-json", "waveform_json"),
    "waveform_png": ("task-waveform-png", "waveform_png"),
}


# ----------------------------------------------------------------- endpoints


def endpoint_create(*, owner: Any, url: str, events: list[str], description: str = "") -> WebhookEndpoint:
    """Register a URL for the owner's task events; its signing secret is made here."""
    _check_url(url)
    return WebhookEndpoint.objects.create(owner=owner, url=url, events=_clean_events(events), description=description)


def endpoint_update(*, endpoint: WebhookEndpoint, **changes: Any) -> WebhookEndpoint:
    """Change an endpoint's URL, events, description or `is_active`; re-enabling forgets past failures."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if "url" in changes:
            _check_url(changes["url"])
            endpoint.url = changes["url"]
        if "events" in changes:
            endpoint.events = _clean_events(changes["events"])
        if "description" in changes:
            endpoint.description = changes["description"]
        if "is_active" in changes:
            if changes["is_active"] and not endpoint.is_active:
                endpoint.disabled_reason = ""
                endpoint.failing_since = None
            endpoint.is_active = changes["is_active"]
        endpoint.save()
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint with its deliveries (nothing more is sent to it)."""
    endpoint.delete()


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint, now: datetime | None = None) -> WebhookEndpoint:
    """Give the endpoint a new secret; the old one still signs for WEBHOOK_SECRET_GRACE_HOURS."""
    now = now or timezone.now()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + timedelta(hours=settings.WEBHOOK_SECRET_GRACE_HOURS)
        endpoint.secret = new_secret()
        endpoint.save()
    return endpoint


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a request now: the current one, and the previous one in its grace period."""
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and now < expires:
        return [endpoint.secret, endpoint.previous_secret]
    return [endpoint.secret]


def _check_url(url: str) -> None:
    try:
        check_url(url)
    except UnsafeDestination as exc:
        raise InvalidInput(str(exc), field="url", code="unsafe_url") from None


def _clean_events(events: Iterable[str]) -> list[str]:
    chosen = set(events)
    unknown = sorted(chosen - set(Event.values))
    if unknown:
        raise InvalidInput(f"Unknown event {unknown[0]!r}.", field="events")
    if not chosen:
        raise InvalidInput("Choose at least one event.", field="events")
    return [event for event in Event.values if event in chosen]


# ----------------------------------------------- deliveries owed by task changes


def record_task_event(task: Task, *, now: datetime | None = None) -> None:
    """Owe each subscribed endpoint the event of the task's new state (inside the change's transaction).

    Progress not yet sent is skipped (and progress being sent is not retried): the final
    event carries the final TaskProgress, and would otherwise wait behind them.
    """
    event = STATE_EVENTS.get(task.state)
    if event is None:
        return
    now = now or timezone.now()
    WebhookDelivery.objects.filter(task_id=task.id, event_type=Event.PROGRESS, status=Status.PENDING).update(
        status=Status.SKIPPED, next_attempt_at=None
    )
    endpoints = _subscribed(task, event)
    if not endpoints:
        return
    body = _body(task, event, now)
    WebhookDelivery.objects.bulk_create([_delivery(endpoint, task, event, body, now, now) for endpoint in endpoints])


def record_task_progress(task: Task, *, now: datetime | None = None) -> None:
    """Owe subscribed endpoints a `task.progress`, at most one per task per WEBHOOK_PROGRESS_INTERVAL_SECONDS.

    Progress that has not gone out yet is replaced by the newest; a new one waits until the
    interval since the last one has passed, so the latest progress is always sent.
    """
    endpoints = _subscribed(task, Event.PROGRESS)
    if not endpoints:
        return
    now = now or timezone.now()
    interval = timedelta(seconds=settings.WEBHOOK_PROGRESS_INTERVAL_SECONDS)
    body = _body(task, Event.PROGRESS, now)
    for endpoint in endpoints:
        last = (
            WebhookDelivery.objects.filter(endpoint=endpoint, task_id=task.id, event_type=Event.PROGRESS)
            .order_by("-id")
            .first()
        )
        if last is not None and last.status == Status.PENDING and last.attempts == 0:
            # Guarded: a worker claiming it meanwhile sends the older body; then owe a new one.
            replaced = WebhookDelivery.objects.filter(pk=last.pk, status=Status.PENDING, attempts=0).update(body=body)
            if replaced:
                continue
        due = now if last is None else max(now, last.created_at + interval)
        _delivery(endpoint, task, Event.PROGRESS, body, now, due).save()


def _subscribed(task: Task, event: str) -> list[WebhookEndpoint]:
    # JSON containment is not on every database: the few endpoints of one owner are filtered here.
    endpoints = WebhookEndpoint.objects.filter(owner_id=task.owner_id, is_active=True)
    return [endpoint for endpoint in endpoints if event in endpoint.events]


def _delivery(
    endpoint: WebhookEndpoint, task: Task, event: str, body: str, now: datetime, due: datetime
) -> WebhookDelivery:
    return WebhookDelivery(
        endpoint=endpoint,
        task_id=task.id,
        event_type=event,
        body=body,
        created_at=now,
        next_attempt_at=due,
        retry_until=now + timedelta(hours=settings.WEBHOOK_RETRY_HOURS),
    )


def _body(task: Task, event: str, now: datetime) -> str:
    """The JSON sent: `{"type", "timestamp", "data"}`, data the TaskProgress with the task id and links."""
    artifacts = task_artifact_keys(task)
    base = settings.WEBHOOK_LINK_BASE_URL.rstrip("/")
    links = {
        name: base + reverse(url_name, kwargs={"task_id": task.id})
        for name, (url_name, artifact) in LINKS.items()
        if artifact is None or artifact in artifacts
    }
    data = {**task_progress(task), "task_id": task.id, "kind": task.kind, "links": links}
    payload = {"type": event, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}
    return json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"))


# ------------------------------------------------------------ sending them


@dataclass(frozen=True)
class Claimed:
    """One attempt a worker now owns: what to send, where, and with which secrets."""

    delivery_id: int
    attempt: int
    message_id: str
    url: str
    body: str
    secrets: list[str]


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended."""

    succeeded: bool
    status_code: int | None = None
    response_ms: int | None = None
    error: str = ""
    excerpt: str = ""


def deliveries_claim(*, now: datetime, limit: int) -> list[Claimed]:
    """Claim up to `limit` due attempts; each is claimed by one worker only."""
    return claim(due_deliveries(now=now, limit=limit), now=now)


def due_deliveries(*, now: datetime, limit: int) -> list[WebhookDelivery]:
    """Deliveries due now, oldest first (a read: `claim` decides who sends them).

    Due: pending with its time come, or sending past its claim (its worker died). A task's
    deliveries to one endpoint go in order: one waits while an earlier one is unfinished.
    """
    unfinished_earlier = WebhookDelivery.objects.filter(
        endpoint_id=OuterRef("endpoint_id"),
        task_id=OuterRef("task_id"),
        id__lt=OuterRef("id"),
        status__in=[Status.PENDING, Status.SENDING],
    )
    due = (
        WebhookDelivery.objects.filter(endpoint__is_active=True)
        .filter(Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(status=Status.SENDING, claimed_until__lt=now))
        .filter(~Exists(unfinished_earlier))
        .select_related("endpoint")
        .order_by("next_attempt_at", "id")[:limit]
    )
    return list(due)


def claim(due: list[WebhookDelivery], *, now: datetime) -> list[Claimed]:
    """Take the attempts of deliveries read as due that no other worker took since."""
    claimed = []
    claim_until = now + timedelta(seconds=settings.WEBHOOK_CLAIM_SECONDS)
    for delivery in due:
        # The guarded UPDATE is the claim: a second worker that read the same row matches nothing.
        won = WebhookDelivery.objects.filter(pk=delivery.pk, status=delivery.status, attempts=delivery.attempts).update(
            status=Status.SENDING, attempts=F("attempts") + 1, claimed_until=claim_until, last_attempt_at=now
        )
        if not won:
            continue
        endpoint = delivery.endpoint
        claimed.append(
            Claimed(
                delivery.pk,
                delivery.attempts + 1,
                delivery.message_id,
                endpoint.url,
                delivery.body,
                signing_secrets(endpoint, now),
            )
        )
    return claimed


def retry_delay(attempt: int) -> timedelta:
    """Wait after failed attempt number `attempt`: doubling from WEBHOOK_RETRY_BASE_SECONDS up to a cap."""
    seconds = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** min(attempt - 1, 30)
    return timedelta(seconds=min(seconds, settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS))


def delivery_record_attempt(
    *, claimed: Claimed, outcome: Outcome, started_at: datetime, now: datetime
) -> WebhookDelivery | None:
    """Store an attempt's outcome and decide what comes next; None if the claim was lost meanwhile."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update()
            .filter(pk=claimed.delivery_id, status=Status.SENDING, attempts=claimed.attempt)
            .first()
        )
        if delivery is None:
            return None  # past its claim another worker took it over; that attempt is the record
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=claimed.attempt,
            started_at=started_at,
            succeeded=outcome.succeeded,
            status_code=outcome.status_code,
            response_ms=outcome.response_ms,
            error=outcome.error[:2000],
            response_excerpt=outcome.excerpt,
        )
        delivery.last_status_code = outcome.status_code
        delivery.last_response_ms = outcome.response_ms
        delivery.last_error = outcome.error[:2000]
        delivery.claimed_until = None
        if outcome.succeeded:
            delivery.status = Status.SUCCEEDED
            delivery.next_attempt_at = None
            _endpoint_succeeded(delivery.endpoint_id, now)
        elif _overtaken(delivery):
            delivery.status = Status.SKIPPED
            delivery.next_attempt_at = None
            _endpoint_failed(delivery.endpoint_id, outcome, now)
        elif now >= delivery.retry_until:
            delivery.status = Status.FAILED
            delivery.next_attempt_at = None
            _endpoint_failed(delivery.endpoint_id, outcome, now)
        else:
            delivery.status = Status.PENDING
            delivery.next_attempt_at = now + retry_delay(claimed.attempt)
            _endpoint_failed(delivery.endpoint_id, outcome, now)
        delivery.save()
    return delivery


def _overtaken(delivery: WebhookDelivery) -> bool:
    """Whether a failed progress event is no longer worth retrying: the task's final event is owed."""
    return (
        delivery.event_type == Event.PROGRESS
        and WebhookDelivery.objects.filter(
            endpoint_id=delivery.endpoint_id,
            task_id=delivery.task_id,
            id__gt=delivery.pk,
            event_type__in=STATE_EVENTS.values(),
        ).exists()
    )


def _endpoint_succeeded(endpoint_id: str, now: datetime) -> None:
    """The endpoint answers again: forget its failures and send its waiting retries now."""
    failing = WebhookEndpoint.objects.filter(pk=endpoint_id, failing_since__isnull=False).update(failing_since=None)
    if failing:
        WebhookDelivery.objects.filter(
            endpoint_id=endpoint_id, status=Status.PENDING, attempts__gt=0, next_attempt_at__gt=now
        ).update(next_attempt_at=now)


def _endpoint_failed(endpoint_id: str, outcome: Outcome, now: datetime) -> None:
    """Note the start of a run of failures; disable the endpoint once it has lasted too long."""
    WebhookEndpoint.objects.filter(pk=endpoint_id, failing_since__isnull=True).update(failing_since=now)
    since = now - timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS)
    last = f"HTTP {outcome.status_code}" if outcome.status_code is not None else outcome.error
    reason = (
        f"Disabled at {now:%Y-%m-%d %H:%M} UTC: every delivery failed for more than "
        f"{settings.WEBHOOK_DISABLE_AFTER_DAYS} days (last: {last}). "
        "Fix the receiver, then set is_active to true; waiting deliveries are then sent."
    )
    WebhookEndpoint.objects.filter(pk=endpoint_id, is_active=True, failing_since__lte=since).update(
        is_active=False, disabled_reason=reason[:2000]
    )


def delivery_redeliver(*, delivery: WebhookDelivery, now: datetime | None = None) -> WebhookDelivery:
    """Send a delivery again (same `webhook-id`, same body) as soon as a worker is free."""
    now = now or timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery.pk)
        if delivery.status == Status.SENDING:
            raise Conflict("The delivery is being sent right now.", field="id", code="sending")
        if not delivery.endpoint.is_active:
            raise Conflict("The endpoint is disabled; enable it first.", field="id", code="endpoint_disabled")
        delivery.status = Status.PENDING
        delivery.next_attempt_at = now
        delivery.retry_until = max(delivery.retry_until, now + timedelta(hours=settings.WEBHOOK_RETRY_HOURS))
        delivery.save()
    return delivery
