"""The event log's append: ids in commit order per channel, two statements, gone with a rollback."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django_eventstream.models import Event as StoredEvent
from django_eventstream.models import EventCounter

from tasks_app.streams import log

pytestmark = pytest.mark.django_db(transaction=True)


def stored(channel: str) -> list[tuple[int, str, str]]:
    return [(e.eid, e.type, e.data) for e in log.events_after(channel, 0)]


def test_ids_count_up_per_channel_and_rows_match():
    for i in range(3):
        for channel in ("task-a", "user-1"):
            event = log.append(channel, log.PROGRESS, f'{{"i": {i}}}')
            assert (event.channel, event.eid) == (channel, i + 1)
    assert stored("task-a") == [(i + 1, "progress", f'{{"i": {i}}}') for i in range(3)]
    assert log.current_id("user-1") == 3
    row = StoredEvent.objects.get(channel="task-a", eid=1)
    assert row.created is not None  # housekeeping trims by it


def test_an_append_is_two_statements_inside_the_callers_transaction():
    log.append("task-b", log.PROGRESS, "{}")  # the channel's counter exists from here on
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        log.append("task-b", log.PROGRESS, "{}")
        log.append("task-b", log.COMPLETE, "{}")
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    # No savepoint of its own: what the two writes cost is what every progress report pays twice.
    assert [s for s in statements if s not in ("BEGIN", "COMMIT")] == ["UPDATE", "INSERT"] * 2
    assert [e.eid for e in log.events_after("task-b", 0)] == [1, 2, 3]


def test_a_rolled_back_change_takes_its_events_and_their_ids():
    log.append("task-c", log.PROGRESS, "{}")
    with pytest.raises(RuntimeError), transaction.atomic():
        log.append("task-c", log.PROGRESS, '"gone"')
        raise RuntimeError("the change failed")
    assert log.current_id("task-c") == 1
    assert log.append("task-c", log.PROGRESS, '"next"').eid == 2
    assert stored("task-c") == [(1, "progress", "{}"), (2, "progress", '"next"')]


def test_without_update_returning_the_orm_path_gives_the_same_ids(monkeypatch):
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", False)
    assert [log.append("task-d", log.PROGRESS, "{}").eid for _ in range(3)] == [1, 2, 3]
    assert EventCounter.objects.get(name="task-d").value == 3


def test_a_first_append_racing_another_counts_on_from_its_counter(monkeypatch):
    # Another process created the channel's counter between this append's bump and its insert.
    EventCounter.objects.create(name="task-e", value=4)
    real, calls = log._bump, []

    def bump(channel, now):
        calls.append(channel)
        return None if len(calls) == 1 else real(channel, now)

    monkeypatch.setattr(log, "_bump", bump)
    with transaction.atomic():
        event = log.append("task-e", log.PROGRESS, "{}")
    assert event.eid == 5 and len(calls) == 2
    assert stored("task-e") == [(5, "progress", "{}")]
