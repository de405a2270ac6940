"""The event log: every stream event stored in order per channel, so any client can resume.

Rows live in django-eventstream's tables (`Event`, `EventCounter`). Each channel has a
counter; an append bumps it with a plain UPDATE that keeps the row locked until commit, so
per-channel ids follow commit order and a rolled-back change takes its events with it.
Events are framed for SSE once, here, and the same bytes go to every subscriber.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_eventstream.models import Event as StoredEvent
from django_eventstream.models import EventCounter

from .names import TASK_PREFIX, task_channel, task_of

logger = logging.getLogger(__name__)

# Event types a stream sends.
PROGRESS = "progress"
COMPLETE = "complete"
ERROR = "error"
DELETED = "deleted"

PAGE_SIZE = 500


def ends_stream(event_type: str, ends_on_complete: bool) -> bool:
    """Whether a stream ends after sending an event of this type: the one end-of-stream rule.

    An `error` ends every stream; `complete` ends a task's stream, not the user's, which
    follows all of that user's tasks.
    """
    return event_type == ERROR or (event_type == COMPLETE and ends_on_complete)


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One stored event: its channel, per-channel id, type and JSON text."""

    channel: str
    eid: int
    type: str
    data: str

    @property
    def event_id(self) -> str:
        """The SSE `id:` of the event, in django-eventstream's `channel:number` form."""
        return f"{self.channel}:{self.eid}"

    def frame(self) -> bytes:
        """The event as SSE bytes (JSON text never holds a raw newline)."""
        return f"event: {self.type}\nid: {self.channel}:{self.eid}\ndata: {self.data}\n\n".encode()


def encode_events(events: list[LogEvent]) -> str:
    """One Redis message carrying whole events."""
    return json.dumps([[e.channel, e.eid, e.type, e.data] for e in events])


def decode_events(message: bytes | str) -> list[LogEvent]:
    """The events of a Redis message (malformed messages carry none)."""
    try:
        return [LogEvent(str(c), int(i), str(t), str(d)) for c, i, t, d in json.loads(message)]
    except (ValueError, TypeError):
        logger.warning("Ignoring a malformed event message")
        return []


def frame(event_type: str, data: str, event_id: str | None = None) -> bytes:
    """SSE bytes of an event that is not stored (snapshots, final errors)."""
    head = f"event: {event_type}\n" + (f"id: {event_id}\n" if event_id else "")
    return f"{head}data: {data}\n\n".encode()


def append(channel: str, event_type: str, data: str) -> LogEvent:
    """Store one event on a channel; call inside the transaction of the change it reports.

    Every job's progress report and every task change pays this twice (the task's channel and
    its owner's), so it is two statements: the counter bumped and read back in one `UPDATE …
    RETURNING` (PostgreSQL, SQLite 3.35+), and the row inserted. It joins the caller's
    transaction without a savepoint of its own: if it fails, so does the change it reports.
    """
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        eid = _bump(channel, now)
        if eid is None:  # the channel's first event: its counter first, safe against a race
            ensure_channel(channel)
            eid = _bump(channel, now)
        with connection.cursor() as cursor:
            cursor.execute(_sql()["insert"], [channel, event_type, data, eid, _when(now)])
    return LogEvent(channel, eid, event_type, data)


def _bump(channel: str, now) -> int | None:
    """Add one to a channel's counter (the row stays locked until commit); its new value, or
    None when the channel has no counter yet."""
    if not connection.features.can_return_columns_from_insert:  # no UPDATE … RETURNING either
        counter = EventCounter.objects.filter(name=channel)
        if not counter.update(value=F("value") + 1, updated=now):
            return None
        return counter.values_list("value", flat=True).get()
    with connection.cursor() as cursor:
        cursor.execute(_sql()["bump"], [_when(now), channel])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def _when(now):
    return connection.ops.adapt_datetimefield_value(now)


_SQL: dict[str, dict[str, str]] = {}


def _sql() -> dict[str, str]:
    """The append's two statements for this database, built once from the models' tables."""
    statements = _SQL.get(connection.vendor)
    if statements is None:
        quote = connection.ops.quote_name

        def column(model, name: str) -> str:
            return quote(model._meta.get_field(name).column)

        counter, event = quote(EventCounter._meta.db_table), quote(StoredEvent._meta.db_table)
        value = column(EventCounter, "value")
        names = ", ".join(column(StoredEvent, f) for f in ("channel", "type", "data", "eid", "created"))
        statements = _SQL[connection.vendor] = {
            "bump": f"UPDATE {counter} SET {value} = {value} + 1, {column(EventCounter, 'updated')} = %s "
            f"WHERE {column(EventCounter, 'name')} = %s RETURNING {value}",
            "insert": f"INSERT INTO {event} ({names}) VALUES (%s, %s, %s, %s, %s)",
        }
    return statements


def ensure_channel(channel: str) -> None:
    """Create a channel's counter if missing (in a savepoint, safe against a racing insert)."""
    try:
        with transaction.atomic():
            EventCounter.objects.get_or_create(name=channel)
    except IntegrityError:
        pass


def current_id(channel: str) -> int:
    """Id of the newest event of a channel (0 when it has none)."""
    value = EventCounter.objects.filter(name=channel).values_list("value", flat=True).first()
    return value or 0


def current_id_sql() -> str:
    """`current_id` as a scalar subquery, to read it in the same statement as something else
    (one parameter: the channel)."""
    quote = connection.ops.quote_name
    counter = EventCounter._meta
    value, name = counter.get_field("value").column, counter.get_field("name").column
    return f"(SELECT {quote(value)} FROM {quote(counter.db_table)} WHERE {quote(name)} = %s)"


def events_after(channel: str, last_id: int, *, upto: int | None = None, limit: int = PAGE_SIZE) -> list[LogEvent]:
    """Stored events of a channel with ids above `last_id` (and at most `upto`), oldest first."""
    rows = StoredEvent.objects.filter(channel=channel, eid__gt=last_id)
    if upto is not None:
        rows = rows.filter(eid__lte=upto)
    return [
        LogEvent(channel, eid, kind, data)
        for eid, kind, data in rows.order_by("eid").values_list("eid", "type", "data")[:limit]
    ]


def latest_row_id() -> int:
    """The newest row id of the whole log (a cursor for readers that follow every channel)."""
    return StoredEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def rows_after(cursor: int, also: list[int], *, limit: int = 5000) -> list[tuple[int, LogEvent]]:
    """Rows of every channel with row ids above `cursor` (or in `also`), in row-id order."""
    query = Q(id__gt=cursor)
    if also:
        query |= Q(id__in=also)
    rows = (
        StoredEvent.objects.filter(query)
        .exclude(eid=0)
        .order_by("id")
        .values_list("id", "channel", "eid", "type", "data")[:limit]
    )
    return [(row_id, LogEvent(channel, eid, kind, data)) for row_id, channel, eid, kind, data in rows]


def trim(*, older_than: timedelta, batch: int = 1000) -> int:
    """Delete events older than the retention, and counters of tasks that are gone.

    Runs as housekeeping, never inside a task's transaction; deletes in batches so no
    single statement holds the database for long. Returns how many rows went.
    """
    from ..models import Task

    cutoff = timezone.now() - older_than
    removed = 0
    while True:
        ids = list(StoredEvent.objects.filter(created__lt=cutoff).values_list("id", flat=True)[:batch])
        if not ids:
            break
        removed += StoredEvent.objects.filter(id__in=ids).delete()[0]
    # A deleted task's channel: its final events have had the retention to reach clients.
    after = 0
    while True:
        rows = list(
            EventCounter.objects.filter(name__startswith=TASK_PREFIX, updated__lt=cutoff, id__gt=after)
            .order_by("id")
            .values_list("id", "name")[:batch]
        )
        if not rows:
            break
        after = rows[-1][0]
        names = [name for _, name in rows]
        live = {task_channel(pk) for pk in Task.objects.filter(pk__in=map(task_of, names)).values_list("pk", flat=True)}
        gone = [n for n in names if n not in live]
        if gone:
            StoredEvent.objects.filter(channel__in=gone).delete()
            removed += EventCounter.objects.filter(name__in=gone).delete()[0]
    return removed
