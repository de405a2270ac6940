"""Prometheus metrics: stream counters kept in-process, task and queue figures read at scrape."""

from __future__ import annotations

import gc
import ipaddress
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Min, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from .models import Task
from .streams.collector import collector
from .webhooks.metrics import WebhookCollector

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

# Stream metrics, counted by the process that serves the streams (one Daphne instance).
SSE_OPEN_STREAMS = Gauge("sse_open_streams", "SSE streams open on this server process.", registry=REGISTRY)
SSE_EVENTS_PUBLISHED = Counter("sse_events_published", "Events published to SSE channels.", registry=REGISTRY)
SSE_EVENTS_DELIVERED = Counter("sse_events_delivered", "Events written to SSE clients.", registry=REGISTRY)
SSE_STREAM_CONNECTS = Counter(
    "sse_stream_connects", "Stream open attempts, by HTTP status.", ["status"], registry=REGISTRY
)
# Objects frozen out of the collector's sight (only the start-up heap: nothing freezes later).
GC_FROZEN = Gauge("python_gc_frozen_objects", "Objects in the collector's permanent generation.", registry=REGISTRY)
GC_FROZEN.set_function(gc.get_freeze_count)
# The collector's freezes and what holds them back: it freezes only with no request in flight.
HTTP_IN_FLIGHT = Gauge("http_requests_in_flight", "Non-stream requests being served now.", registry=REGISTRY)
HTTP_IN_FLIGHT.set_function(lambda: collector.in_flight)
GC_FREEZES = Gauge("python_gc_freezes", "Times the collector froze the live heap.", registry=REGISTRY)
GC_FREEZES.set_function(lambda: collector.freezes)
HTTP_SHED = Gauge(
    "http_requests_shed", "Requests answered 503 because WEB_MAX_REQUESTS_IN_FLIGHT were in flight.", registry=REGISTRY
)
HTTP_SHED.set_function(lambda: collector.shed)

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)
WAIT_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 3600)


def _histogram(
    name: str, doc: str, field: str, since: str, buckets: tuple[float, ...], **where: object
) -> HistogramMetricFamily:
    """A histogram of `field - since` over the tasks matching `where`, counted in one query."""
    span = ExpressionWrapper(F(field) - F(since), output_field=DurationField())
    rows = (
        Task.objects.filter(**where)
        .exclude(**{f"{field}__isnull": True})
        .exclude(**{f"{since}__isnull": True})
        .annotate(span=span)
    )
    counts = rows.aggregate(
        total=Count("pk"),
        seconds=Sum("span"),
        **{f"le{i}": Count("pk", filter=Q(span__lte=timedelta(seconds=b))) for i, b in enumerate(buckets)},
    )
    cumulative = [(str(float(b)), counts[f"le{i}"]) for i, b in enumerate(buckets)]
    cumulative.append(("+Inf", counts["total"]))
    total = counts["seconds"].total_seconds() if counts["seconds"] else 0.0
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=total)


class DatabaseCollector:
    """Task, queue and worker figures read from the database at scrape time.

    Every worker and server shares the database, so any instance reports the whole system.
    """

    def describe(self) -> list[Metric]:
        """Nothing up front: collecting needs the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families."""
        by_state = GaugeMetricFamily("tasks", "Tasks by state.", labels=["state"])
        counts = dict(Task.objects.order_by().values_list("state").annotate(n=Count("pk")))
        for state in Task.State.values:
            by_state.add_metric([state], counts.get(state, 0))
        yield by_state
        yield _histogram(
            "task_duration_seconds",
            "Time from start to end of the last attempt of finished tasks.",
            "finished_at",
            "started_at",
            DURATION_BUCKETS,
            state=Task.State.COMPLETED,
        )
        yield _histogram(
            "task_queue_wait_seconds",
            "Time from creation until a worker started the task.",
            "started_at",
            "created_at",
            WAIT_BUCKETS,
        )
        yield from _queue_metrics()
        yield from _worker_metrics()


def _queue_metrics() -> Iterator[Metric]:
    """Depth of the job queue and age of its oldest waiting job."""
    from django_tasks_db.compat import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    ready = DBTaskResult.objects.filter(status=TaskResultStatus.READY).aggregate(
        depth=Count("pk"), oldest=Min("enqueued_at")
    )
    yield GaugeMetricFamily("job_queue_depth", "Jobs waiting for a worker.", value=ready["depth"])
    age = (timezone.now() - ready["oldest"]).total_seconds() if ready["oldest"] else 0.0
    yield GaugeMetricFamily("job_queue_oldest_seconds", "Age of the oldest waiting job.", value=age)


def _worker_metrics() -> Iterator[Metric]:
    """Last heartbeat of each worker running a task, and the oldest heartbeat of any task."""
    from django_tasks_db.models import DBTaskResult

    processing = Task.objects.filter(state=Task.State.PROCESSING)
    beats = dict(processing.exclude(job_id="").values_list("job_id", "heartbeat_at"))
    family = GaugeMetricFamily(
        "worker_last_heartbeat_timestamp_seconds",
        "Unix time of the last heartbeat of a task each worker is running.",
        labels=["worker"],
    )
    latest: dict[str, float] = {}
    for job_id, claimers in DBTaskResult.objects.filter(pk__in=[j for j in beats if _is_uuid(j)]).values_list(
        "pk", "worker_ids"
    ):
        beat = beats.get(str(job_id))
        if claimers and beat is not None:
            worker = str(claimers[-1])
            latest[worker] = max(latest.get(worker, 0.0), beat.timestamp())
    for worker, stamp in sorted(latest.items()):
        family.add_metric([worker], stamp)
    yield family
    oldest = processing.aggregate(oldest=Min("heartbeat_at"), newest=Max("heartbeat_at"))
    age = (timezone.now() - oldest["oldest"]).total_seconds() if oldest["oldest"] else 0.0
    yield GaugeMetricFamily(
        "task_oldest_heartbeat_age_seconds",
        "Seconds since the least recent heartbeat of a processing task "
        "(above TASK_STALE_SECONDS the task is recovered).",
        value=age,
    )


def _is_uuid(value: str) -> bool:
    """Whether a job id looks like a database-backend job id."""
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


REGISTRY.register(DatabaseCollector())
REGISTRY.register(WebhookCollector())


def scrape_allowed(request: HttpRequest) -> bool:
    """Whether the caller shows METRICS_TOKEN or comes from an allow-listed address."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and constant_time_compare(header, f"Bearer {token}"):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_IPS)


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: Prometheus text format, for allow-listed addresses or the token only."""
    if not scrape_allowed(request):
        return JsonResponse(
            {
                "error": {
                    "code": "forbidden",
                    "field": None,
                    "message": (
                        "Metrics need `Authorization: Bearer <METRICS_TOKEN>` or a caller address in "
                        "METRICS_ALLOWED_IPS."
                    ),
                }
            },
            status=403,
        )
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
