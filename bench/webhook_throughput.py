"""Webhook deliveries one worker sends per second, and the time they add to a task's completion.

    .venv/bin/python bench/webhook_throughput.py [--deliveries 2000] [--threads 8 1]

For each `--threads` value (WEBHOOK_SEND_THREADS), starts the service with one worker and a
receiver on loopback (aiohttp, answering 204 at once), stores `--deliveries` deliveries due a few
seconds later in one transaction, and times the receiver's first to last request. Then, in a
Django shell of the same service, times `task_complete` on tasks whose owner has 0 and then 5
subscribed endpoints: the deliveries are rows written in the completion's transaction, nothing
is sent from it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests import live_server  # noqa: E402

INSERT = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from tasks_app.webhooks.models import WebhookDelivery, WebhookEndpoint
endpoint = WebhookEndpoint.objects.create(owner=get_user_model().objects.get(username="alice"),
    url="http://127.0.0.1:{port}/hook", events=["task.completed"])
due = timezone.now() + timedelta(seconds=3)
with transaction.atomic():
    WebhookDelivery.objects.bulk_create([WebhookDelivery(endpoint=endpoint, task_id=f"task_bench_{{i}}",
        event_type="task.completed", body='{{"type":"task.completed"}}', created_at=due, next_attempt_at=due,
        retry_until=due + timedelta(hours=24)) for i in range({count})], batch_size=500)
"""

COMPLETE = """
import statistics, time
from django.contrib.auth import get_user_model
from tasks_app import services
from tasks_app.models import AudioFile, Task
from tasks_app.webhooks.models import WebhookEndpoint
owner = get_user_model().objects.create_user("bench-{endpoints}")
for i in range({endpoints}):
    WebhookEndpoint.objects.create(owner=owner, url=f"http://127.0.0.1:9/{{i}}", events=["task.completed"])
audio = AudioFile.objects.create(owner=owner, file="x.wav", original_name="x.wav", size=1, format="wav",
    duration=1.0, sample_rate=8000, channels=1)
times = []
for _ in range({tasks}):
    task = Task.objects.create(owner=owner, audio_file=audio, state="processing", attempts=1)
    start = time.perf_counter()
    services.task_complete(task_id=task.id, attempt=1, result={{}})
    times.append((time.perf_counter() - start) * 1000)
times.sort()
print(f"{endpoints} {{statistics.median(times):.2f}} {{times[int(len(times) * 0.95)]:.2f}}")
"""


class Receiver:
    """An aiohttp receiver on its own thread that notes the time of every request."""

    def __init__(self) -> None:
        self.port = live_server.free_port()
        self.times: list[float] = []
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        async def hook(request: web.Request) -> web.Response:
            await request.read()
            self.times.append(time.monotonic())
            return web.Response(status=204)

        async def main() -> None:
            app = web.Application()
            app.router.add_post("/hook", hook)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            ready.set()
            await asyncio.Event().wait()

        asyncio.run(main())


def throughput(count: int, threads: int) -> None:
    """Deliveries per second of one worker with `threads` sending threads."""
    receiver = Receiver()
    env = {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1", "WEBHOOK_POLL_SECONDS": "0.1", "WEBHOOK_SEND_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        service = live_server.start_service(Path(tmp), workers=1, extra_env=env)
        try:
            service.shell(INSERT.format(port=receiver.port, count=count))
            live_server.wait_until(lambda: len(receiver.times) >= count, 600, "every delivery", interval=0.2)
            span = receiver.times[count - 1] - receiver.times[0]
            print(f"threads {threads}: {count} deliveries in {span:.1f} s = {(count - 1) / span:.0f}/s", flush=True)
            if threads == 1:
                return
            for endpoints in (0, 5):
                line = service.shell(COMPLETE.format(endpoints=endpoints, tasks=200)).split()
                print(f"task_complete with {line[0]} endpoints: median {line[1]} ms, p95 {line[2]} ms", flush=True)
        finally:
            live_server.stop_service(service)


def main() -> None:
    """Parse arguments and measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--threads", type=int, nargs="+", default=[8, 1])
    args = parser.parse_args()
    print(f"load: {os.getloadavg()}", flush=True)
    for threads in args.threads:
        throughput(args.deliveries, threads)
    print(f"load: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
