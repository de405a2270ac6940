"""GET /healthz: the database, the job queue, event fan-out and the stream hub, each checked quickly."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

# A health check must answer quickly even when what it checks hangs.
REDIS_TIMEOUT_SECONDS = 1.0


def check_database() -> dict[str, object]:
    """The default database answers a query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"vendor": connection.vendor}


def check_queue() -> dict[str, object]:
    """The job queue table answers; how many jobs wait."""
    from django_tasks_db.compat import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    return {"waiting": DBTaskResult.objects.filter(status=TaskResultStatus.READY).count()}


def check_fanout() -> dict[str, object]:
    """Redis answers PING when EVENTSTREAM_REDIS is set; otherwise streams poll the database."""
    if not settings.REDIS_URL:
        return {"mode": "database polling"}
    import redis

    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()
    return {"mode": "redis"}


def check_stream_hub() -> dict[str, object]:
    """Every background loop of this process's stream hub shows signs of life."""
    from .streams.hub import current_hub

    hub = current_hub()
    # A hub whose event loop has closed serves nothing here: it was started by a request run on a
    # loop of its own (a test client, a management command), not by the server, whose loop lives
    # as long as the process.
    if hub is None or not hub.loops or hub.loop is None or hub.loop.is_closed():
        return {"streams": 0, "loops": "not started"}
    stalled = hub.stalled()
    if stalled:
        quiet = ", ".join(f"{name} loop silent for {seconds} s" for name, seconds in stalled.items())
        raise RuntimeError(f"the stream hub stalled: {quiet}")
    return {"streams": hub.open_streams, "loops": sorted(hub.loops)}


CHECKS: dict[str, Callable[[], dict[str, object]]] = {
    "database": check_database,
    "queue": check_queue,
    "fanout": check_fanout,
    "stream_hub": check_stream_hub,
}


def health() -> tuple[bool, dict[str, object]]:
    """Run every check; return (all up, report)."""
    report: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        try:
            report[name] = {"status": "up", **check()}
        except Exception as exc:  # noqa: BLE001 - any failure means the component is down
            logger.warning("Health check %s failed: %s", name, exc)
            report[name] = {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
    down = [name for name, result in report.items() if result["status"] == "down"]
    return not down, {"status": "down" if down else "up", "down": down, "checks": report}


@require_safe
def healthz_view(request: HttpRequest) -> JsonResponse:
    """200 when everything is up, 503 naming what is down."""
    ok, report = health()
    return JsonResponse(report, status=200 if ok else 503)
