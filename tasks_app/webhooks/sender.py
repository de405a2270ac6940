"""What the workers run for webhooks: claim due deliveries, POST them signed, record each outcome.

Requests go out from the workers only, never from a web request or a task's own processing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor, as_completed
from datetime import datetime

import httpx
from django.conf import settings
from django.utils import timezone

from .destinations import UnsafeDestination, addresses, parse
from .services import Claimed, Outcome, deliveries_claim, delivery_record_attempt
from .signing import signature_header

logger = logging.getLogger(__name__)

USER_AGENT = "audio-tasks-webhooks/1"
EXCERPT_CHARS = 500


def make_client() -> httpx.Client:
    """The HTTP client of a worker's sender: no redirects, no proxies from the environment."""
    return httpx.Client(
        timeout=httpx.Timeout(settings.WEBHOOK_TIMEOUT_SECONDS),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


def deliver_due(
    *,
    client: httpx.Client,
    pool: Executor | None = None,
    clock: Callable[[], datetime] = timezone.now,
    limit: int | None = None,
) -> int:
    """Send the deliveries due now (in `pool` when given) and record their outcomes; return how many."""
    claimed = deliveries_claim(now=clock(), limit=limit or settings.WEBHOOK_BATCH_SIZE)
    if pool is None:
        for item in claimed:
            _finish(item, *send(client, item, clock), clock)
        return len(claimed)
    futures = {pool.submit(send, client, item, clock): item for item in claimed}
    for future in as_completed(futures):
        _finish(futures[future], *future.result(), clock)
    return len(claimed)


def _finish(item: Claimed, started_at: datetime, outcome: Outcome, clock: Callable[[], datetime]) -> None:
    if delivery_record_attempt(claimed=item, outcome=outcome, started_at=started_at, now=clock()) is None:
        logger.warning(
            "Delivery %s: attempt %d finished after its claim expired (or its endpoint was deleted)",
            item.message_id,
            item.attempt,
        )


def send(client: httpx.Client, item: Claimed, clock: Callable[[], datetime]) -> tuple[datetime, Outcome]:
    """POST one delivery to its endpoint; a 2xx within WEBHOOK_TIMEOUT_SECONDS is success."""
    started_at = clock()
    try:
        destination = parse(item.url)
        address = addresses(destination)[0]
    except UnsafeDestination as exc:
        return started_at, Outcome(False, error=f"Refused: {exc}")
    except (OSError, UnicodeError) as exc:
        return started_at, Outcome(False, error=f"The host could not be resolved: {exc}")
    body = item.body.encode()
    timestamp = int(started_at.timestamp())
    headers = {
        "content-type": "application/json",
        # Asked uncompressed, so the few bytes read are a few bytes of memory.
        "accept-encoding": "identity",
        "host": destination.host_header,
        "webhook-id": item.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(item.secrets, item.message_id, timestamp, body),
    }
    # The request goes to the address just checked; the name stays in Host and in TLS (SNI and
    # certificate check), so a second DNS answer cannot send it elsewhere.
    extensions = {} if destination.host == str(address) else {"sni_hostname": destination.host}
    request = client.build_request(
        "POST", destination.url_for(address), content=body, headers=headers, extensions=extensions
    )
    limit = settings.WEBHOOK_TIMEOUT_SECONDS
    start = time.monotonic()
    try:
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            excerpt = _read_some(response, settings.WEBHOOK_RESPONSE_MAX_BYTES)
        finally:
            response.close()
    except httpx.TimeoutException:
        return started_at, Outcome(False, error=f"No answer within {limit:g} s.", response_ms=_ms(start))
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return started_at, Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500], response_ms=_ms(start))
    except Exception:  # noqa: BLE001 - a bug here must fail this attempt, not strand the batch
        logger.exception("Delivery %s: the request could not be made", item.message_id)
        return started_at, Outcome(False, error="The request could not be made (an internal error, logged).")
    elapsed = _ms(start)
    code = response.status_code
    if elapsed > limit * 1000:
        return started_at, Outcome(False, code, elapsed, f"The answer took longer than {limit:g} s.", excerpt)
    if 200 <= code < 300:
        return started_at, Outcome(True, code, elapsed, "", excerpt)
    error = (
        f"Redirects are not followed (Location: {response.headers.get('location', '')[:200]})."
        if (300 <= code < 400)
        else f"HTTP {code}."
    )
    return started_at, Outcome(False, code, elapsed, error, excerpt)


def _read_some(response: httpx.Response, limit: int) -> str:
    """The start of a response body, reading no more than `limit` bytes of it."""
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit].decode("utf-8", "replace")[:EXCERPT_CHARS]


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
