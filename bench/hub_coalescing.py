"""Settings for the bench's other way to coalesce progress: in the hub instead of at the source.

    .venv/bin/python bench/wire_cost.py --rows idle,sse,sse-gzip \
        --env DJANGO_SETTINGS_MODULE=bench.hub_coalescing --env PROGRESS_EVENT_INTERVAL_SECONDS=0

The service coalesces at the source: a job writes an update that only moves `progress` or
`estimated_time` at most once per `PROGRESS_EVENT_INTERVAL_SECONDS` (`tasks_app/jobs.py`), so
the log stores, and every process's hub reads and sends, only those. This module builds the
other design the wire issue asked to weigh, to measure it in the same bench: the job writes every
check-in (`PROGRESS_EVENT_INTERVAL_SECONDS=0`), and the web process's hub holds a channel's
progress-only events back and sends each of its streams only the newest one, at most once per
`HUB_COALESCE_SECONDS` per channel; any other event (a new state or stage, `complete`, `error`)
goes out at once with what was held. Streams reading storage (catching up, `Last-Event-ID`)
get every stored event. It is an experiment, not a product path: only this bench uses it.
"""

from __future__ import annotations

import json
import math
import os
import time
from functools import lru_cache

from django.apps import AppConfig

from project.settings import *  # noqa: F401,F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.hub_coalescing.HubCoalescing"]
HUB_COALESCE_SECONDS = float(os.environ.get("HUB_COALESCE_SECONDS", "1.0"))


@lru_cache(maxsize=8192)
def what_it_shows(frame: bytes) -> tuple | None:
    """For a progress event, (task, state, stage): what a newer progress event must share to
    supersede it; None for any other event."""
    if not frame.startswith(b"event: progress\n"):
        return None
    data = json.loads(frame.split(b"\ndata: ", 1)[1])
    return data.get("task_id"), data.get("state"), data.get("stage")


class HubCoalescing(AppConfig):
    """Makes the process's hub a coalescing one."""

    name = "bench.hub_coalescing"
    label = "bench_hub_coalescing"

    def ready(self) -> None:
        from django.conf import settings

        from tasks_app.streams import hub as hub_module

        class CoalescingHub(hub_module.Hub):
            """A hub that feeds a channel's progress-only events at most once per interval."""

            def __init__(self) -> None:
                super().__init__()
                self.interval = settings.HUB_COALESCE_SECONDS
                self.fed_at: dict[str, float] = {}
                self.fed_upto: dict[str, int] = {}
                self.later: dict[str, object] = {}

            def _feed(self, channel: hub_module.Channel) -> None:
                now = time.monotonic()
                due = self.fed_at.get(channel.name, -math.inf) + self.interval
                if now < due and self._only_progress(channel):
                    if channel.name not in self.later:
                        self.later[channel.name] = self.loop.call_later(due - now, self._due, channel)
                    return
                handle = self.later.pop(channel.name, None)
                if handle is not None:
                    handle.cancel()
                self.fed_at[channel.name] = now
                self.fed_upto[channel.name] = channel.last or 0
                super()._feed(channel)

            def _due(self, channel: hub_module.Channel) -> None:
                self.later.pop(channel.name, None)
                if self.channels.get(channel.name) is channel:
                    self._feed(channel)

            def _only_progress(self, channel: hub_module.Channel) -> bool:
                """Whether every event not yet fed only moves a task's progress (or ETA)."""
                upto = self.fed_upto.get(channel.name, 0)
                new = [entry for entry in channel.ring if entry[0] > upto]
                if not new or len(new) == len(channel.ring):
                    return False  # nothing to compare with: feed it
                before = [entry for entry in channel.ring if entry[0] <= upto]
                shown = {what_it_shows(frame) for _, _, frame in before[-8:]}
                return all(what_it_shows(frame) in shown and what_it_shows(frame) is not None for _, _, frame in new)

            def take(self, sub: hub_module.Subscription, most: int = hub_module.BATCH) -> hub_module.Batch | None:
                batch = super().take(sub, most)
                if batch is None or batch.count < 2:
                    return batch
                # Of a run of progress events showing the same task, state and stage, only the
                # newest is written; the stream's position still moves past all of them.
                start = sub.last_id + 1 - sub.channel.ring[0][0]
                entries = list(sub.channel.ring)[start : start + batch.count]
                kept = [
                    frame
                    for i, (_, _, frame) in enumerate(entries)
                    if what_it_shows(frame) is None
                    or i + 1 == len(entries)
                    or what_it_shows(entries[i + 1][2]) != what_it_shows(frame)
                ]
                return hub_module.Batch(b"".join(kept), len(kept), batch.upto, batch.ended)

        hub_module.Hub = CoalescingHub
