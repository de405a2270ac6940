"""Operators' view: /healthz names what is down, /metrics is Prometheus text for allowed callers,
and production mode passes Django's deployment checks."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from django_tasks_db.models import DBTaskResult
from prometheus_client.parser import text_string_to_metric_families

from tasks_app import services
from tasks_app.audio.generate import write_tone
from tasks_app.models import Task

from .live_server import ROOT, free_port, read_events, spawn_daphne, start_service, stop_service

TOKEN = "scrape-token-for-tests"


def scrape(client: Any, **headers: str) -> dict[str, Any]:
    """GET /metrics and parse it: {sample name + labels: value}."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}", **headers})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


def samples(text: str) -> dict[str, Any]:
    """Prometheus text as {sample name + labels: value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items()))
            out[key] = sample.value
    return out


# ------------------------------------------------------------------- healthz


@pytest.mark.django_db
def test_healthz_is_200_when_database_and_queue_answer(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "up" and body["down"] == []
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "up",
        "queue": "up",
        "fanout": "up",
        "stream_hub": "up",
    }
    assert body["checks"]["fanout"]["mode"] == "database polling"


@pytest.mark.django_db
def test_healthz_is_503_naming_fanout_when_redis_is_unreachable(client: Any, settings: Any) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["fanout"]


@pytest.mark.needs_redis_server
@pytest.mark.django_db
def test_healthz_is_503_naming_fanout_while_redis_is_stopped(
    client: Any, settings: Any, own_redis: tuple[str, subprocess.Popen]
) -> None:
    url, proc = own_redis
    settings.REDIS_URL = url
    assert client.get("/healthz").status_code == 200

    proc.terminate()
    proc.wait(timeout=10)
    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["fanout"]
    assert body["checks"]["database"]["status"] == "up"
    assert "Connection" in body["checks"]["fanout"]["error"]


def test_healthz_is_503_naming_the_database_when_postgresql_is_unreachable(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "EVENTSTREAM_REDIS"}
    # A port nobody listens on: the server starts, but its database is down.
    env.update({"DATA_DIR": str(tmp_path), "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/gone"})
    daphne, base_url = spawn_daphne(tmp_path, env, "daphne-nodb")
    try:
        response = httpx.get(f"{base_url}/healthz", timeout=30)
        # Docker's HEALTHCHECK command sees the same and fails.
        check = subprocess.run(
            [sys.executable, "manage.py", "healthcheck", "--url", f"{base_url}/healthz"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        daphne.terminate()
        daphne.wait(timeout=15)
    assert response.status_code == 503
    body = response.json()
    assert "database" in body["down"] and body["checks"]["database"]["status"] == "down"
    assert body["checks"]["fanout"]["status"] == "up"
    assert check.returncode == 1 and "answered 503" in check.stderr


# ------------------------------------------------------------------- metrics


@pytest.mark.django_db
def test_metrics_refuse_anonymous_callers_and_wrong_tokens(client: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.django_db
def test_metrics_answer_an_allow_listed_address(client: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.1").status_code == 403


@pytest.mark.django_db
def test_metrics_parse_as_prometheus_text_and_move_as_tasks_run(
    client: Any, settings: Any, user: Any, make_task: Callable[..., Task], django_capture_on_commit_callbacks: Any
) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        done, _waiting = make_task(user), make_task(user)
    done.refresh_from_db()
    DBTaskResult.objects.get(pk=done.job_id).claim("worker-a")
    services.task_start(task_id=done.pk)
    services.task_complete(task_id=done.pk, attempt=1, result={"ok": True})

    after = scrape(client)

    assert after["tasks{state=completed}"] == before["tasks{state=completed}"] + 1
    assert after["tasks{state=pending}"] == before["tasks{state=pending}"] + 1
    assert after["task_duration_seconds_count"] == before["task_duration_seconds_count"] + 1
    assert after["task_queue_wait_seconds_count"] == before["task_queue_wait_seconds_count"] + 1
    assert after["job_queue_depth"] == before["job_queue_depth"] + 1, "only waiting's job"
    assert after["sse_events_published_total"] >= before["sse_events_published_total"] + 4
    assert "task_oldest_heartbeat_age_seconds" in after


@pytest.mark.django_db
def test_metrics_report_the_heartbeat_of_the_worker_running_a_task(
    client: Any, settings: Any, user: Any, make_task: Callable[..., Task], django_capture_on_commit_callbacks: Any
) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    with django_capture_on_commit_callbacks(execute=True):
        task = make_task(user)
    task.refresh_from_db()
    DBTaskResult.objects.get(pk=task.job_id).claim("worker-a")
    started = services.task_start(task_id=task.pk)

    samples = scrape(client)

    assert samples["worker_last_heartbeat_timestamp_seconds{worker=worker-a}"] == pytest.approx(
        started.heartbeat_at.timestamp()
    )


# ----------------------------------------------------------------- production


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment of a production-mode process with its own data folder."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "EVENTSTREAM_REDIS"))
    }
    env.update(
        {
            "DJANGO_PRODUCTION": "1",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "api.example.com",
            "DATA_DIR": str(tmp_path),
            **extra,
        }
    )
    return env


def test_production_mode_passes_check_deploy_without_warnings(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no issues" in run.stdout + run.stderr


def test_production_mode_trusts_the_proxy_header_named_in_the_environment(tmp_path: Path) -> None:
    script = (
        "from django.conf import settings as s; print(s.SECURE_PROXY_SSL_HEADER, "
        "s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"
    )
    run = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        capture_output=True,
        env=production_env(tmp_path, DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"),
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1].split() == [
        "('HTTP_X_FORWARDED_PROTO',",
        "'https')",
        "True",
        "True",
        "True",
    ]


@pytest.mark.django_db
def test_behind_a_tls_proxy_the_stream_cookie_is_secure(
    settings: Any, user: Any, auth_client: Callable[[Any], Any]
) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = auth_client(user)
    plain = client.post("/api/v1/auth/stream-cookie/")
    proxied = client.post("/api/v1/auth/stream-cookie/", HTTP_X_FORWARDED_PROTO="https")
    assert plain.cookies["sse_token"]["secure"] == ""
    assert proxied.cookies["sse_token"]["secure"] is True


def test_stream_metrics_move_as_a_client_streams_a_task(tmp_path: Path) -> None:
    service = start_service(tmp_path, workers=0, extra_env={"METRICS_TOKEN": TOKEN})
    try:
        wav = tmp_path / "tone.wav"
        write_tone(str(wav), 1.0)
        token = service.token("alice")
        task = service.create_task(token, service.upload(token, wav)["id"])

        def scrape_live() -> dict[str, float]:
            with httpx.Client(base_url=service.base_url) as client:
                response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 200
            return samples(response.text)

        before = scrape_live()
        url = f"/api/v1/sse/tasks/{task['id']}/progress"
        with service.client(token) as client:
            opened = {}

            def until(events: list) -> bool:
                if len(events) == 1:  # the snapshot: the stream is open now
                    opened.update(scrape_live())
                    client.post(f"/api/v1/tasks/{task['id']}/cancel/")
                return events[-1].event == "complete"

            status, _ = read_events(client, url, until=until, timeout=60)
            assert status == 200
            assert client.get("/api/v1/sse/tasks/task_nope/progress").status_code == 404
        after = scrape_live()
    finally:
        stop_service(service)
    assert opened["sse_open_streams"] == before["sse_open_streams"] + 1
    assert after["sse_stream_connects_total{status=200}"] == before.get("sse_stream_connects_total{status=200}", 0) + 1
    assert after["sse_stream_connects_total{status=404}"] == before.get("sse_stream_connects_total{status=404}", 0) + 1
    # The cancel's progress and complete reached the client; four events were stored (both channels).
    assert after["sse_events_delivered_total"] == before["sse_events_delivered_total"] + 2
    assert after["sse_events_published_total"] == before["sse_events_published_total"] + 4
