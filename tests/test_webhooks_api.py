"""Webhook endpoints as a resource: create (with its secret), list, show, change, delete, owner-only,
refused destinations, secret rotation, the admin pages and the OpenAPI document."""

from __future__ import annotations

import base64
import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tasks_app.webhooks import destinations
from tasks_app.webhooks.models import WebhookEndpoint

ROOT = Path(__file__).resolve().parent.parent
URL = "https://hooks.example.com/audio"


@pytest.fixture(autouse=True)
def public_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Resolve names from this table (default: a public address) instead of the network."""
    table: dict[str, str] = {}
    monkeypatch.setattr(
        destinations, "resolve", lambda host, port: [ipaddress.ip_address(table.get(host, "93.184.216.34"))]
    )
    return table


def create(client: Any, **body: Any) -> Any:
    """POST /api/v1/webhooks/ as JSON."""
    return client.post("/api/v1/webhooks/", {"url": URL, "events": ["task.completed"], **body}, format="json")


def test_create_returns_201_with_a_whsec_secret(auth_client, user):
    response = create(auth_client(user), events=["task.completed", "task.failed"])
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("wh_")
    assert body["url"] == URL
    assert body["events"] == ["task.completed", "task.failed"]
    assert body["is_active"] is True
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"), validate=True)) >= 24


def test_secret_is_shown_only_at_creation(auth_client, user):
    client = auth_client(user)
    endpoint = create(client).json()
    assert "secret" not in client.get(f"/api/v1/webhooks/{endpoint['id']}/").json()
    assert all("secret" not in item for item in client.get("/api/v1/webhooks/").json()["results"])


def test_list_detail_update_delete(auth_client, user):
    client = auth_client(user)
    endpoint = create(client).json()
    listed = client.get("/api/v1/webhooks/").json()
    assert [item["id"] for item in listed["results"]] == [endpoint["id"]]
    changed = client.patch(
        f"/api/v1/webhooks/{endpoint['id']}/",
        {"events": ["task.progress", "task.cancelled"], "url": "https://other.example.com/x"},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["events"] == ["task.cancelled", "task.progress"]
    assert client.get(f"/api/v1/webhooks/{endpoint['id']}/").json()["url"] == "https://other.example.com/x"
    assert client.delete(f"/api/v1/webhooks/{endpoint['id']}/").status_code == 204
    assert client.get(f"/api/v1/webhooks/{endpoint['id']}/").status_code == 404


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("patch", ""), ("delete", ""), ("get", "deliveries/"), ("post", "rotate-secret/")],
)
def test_other_users_endpoint_is_404(auth_client, user, other_user, method, suffix):
    endpoint = create(auth_client(user)).json()
    response = getattr(auth_client(other_user), method)(
        f"/api/v1/webhooks/{endpoint['id']}/{suffix}", {}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert WebhookEndpoint.objects.filter(pk=endpoint["id"], url=URL).exists()


def test_other_users_endpoints_are_not_listed(auth_client, user, other_user):
    create(auth_client(user))
    assert auth_client(other_user).get("/api/v1/webhooks/").json()["results"] == []


def test_anonymous_callers_are_401(api_client):
    assert api_client.get("/api/v1/webhooks/").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["task.exploded"]}, "events.0"),
        ({"events": []}, "events"),
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://hooks.example.com/"}, "url"),
        ({"color": "red"}, "color"),
    ],
)
def test_bad_input_is_400_naming_the_field(auth_client, user, body, field):
    response = create(auth_client(user), **body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost.test/hook",  # resolves to loopback (see the table)
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://224.0.0.251/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_private_destinations_are_refused(auth_client, user, public_dns, settings, url):
    public_dns["localhost.test"] = "127.0.0.1"
    response = create(auth_client(user), url=url)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "unsafe_url"
    assert response.json()["error"]["field"] == "url"
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    assert create(auth_client(user), url=url).status_code == 201


def test_changing_the_url_to_a_private_one_is_refused(auth_client, user):
    client = auth_client(user)
    endpoint = create(client).json()
    response = client.patch(f"/api/v1/webhooks/{endpoint['id']}/", {"url": "http://10.0.0.1/"}, format="json")
    assert response.status_code == 400
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).url == URL


def test_https_is_required_when_required(auth_client, user, settings):
    assert create(auth_client(user), url="http://hooks.example.com/").status_code == 201
    settings.WEBHOOK_REQUIRE_HTTPS = True
    response = create(auth_client(user), url="http://hooks.example.com/")
    assert response.status_code == 400
    assert "https://" in response.json()["error"]["message"]


def test_production_mode_requires_https(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "WEBHOOK_"))}
    script = "from django.conf import settings; print(settings.WEBHOOK_REQUIRE_HTTPS)"
    run = [sys.executable, "-c", f"import django; django.setup(); {script}"]
    base = {**env, "DJANGO_SETTINGS_MODULE": "project.settings", "DATA_DIR": str(tmp_path)}
    production = {**base, "DJANGO_PRODUCTION": "1", "DJANGO_SECRET_KEY": "k" * 50, "WEBHOOK_REQUIRE_HTTPS": "0"}
    assert subprocess.run(run, cwd=ROOT, env=base, capture_output=True, text=True).stdout.strip() == "False"
    assert subprocess.run(run, cwd=ROOT, env=production, capture_output=True, text=True).stdout.strip() == "True"


def test_rotating_the_secret_returns_a_new_one_and_keeps_the_old_for_the_grace_period(auth_client, user):
    client = auth_client(user)
    endpoint = create(client).json()
    rotated = client.post(f"/api/v1/webhooks/{endpoint['id']}/rotate-secret/")
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != endpoint["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None
    stored = WebhookEndpoint.objects.get(pk=endpoint["id"])
    assert stored.previous_secret == endpoint["secret"]


def test_admin_lists_endpoints_and_deliveries(client, staff_user, user):
    WebhookEndpoint.objects.create(owner=user, url=URL, events=["task.completed"])
    client.force_login(staff_user)
    for page in ("webhookendpoint", "webhookdelivery"):
        response = client.get(f"/admin/tasks_app/{page}/")
        assert response.status_code == 200
    assert URL in client.get("/admin/tasks_app/webhookendpoint/").content.decode()


def test_schema_documents_the_webhook_endpoints(api_client, db):
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/webhooks/"])
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/webhooks/{id}/"])
    assert "get" in paths["/api/v1/webhooks/{id}/deliveries/"]
    assert "post" in paths["/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver/"]
    created = paths["/api/v1/webhooks/"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    component = schema["components"]["schemas"][created["$ref"].rsplit("/", 1)[1]]
    assert {"id", "url", "events", "is_active", "secret"} <= set(component["properties"])
    links = paths["/api/v1/webhooks/"]["post"]["responses"]["201"]["links"]
    assert links["webhooks_deliveries_list"]["parameters"] == {"id": "$response.body#/id"}
    assert schema["components"]["schemas"]["WebhookEndpointCreateRequest"]["additionalProperties"] is False
    assert "/api/v1/tasks/{task_id}/webhook-deliveries/" in paths


@pytest.mark.parametrize("value", ["true", 1, "yes", None])
def test_is_active_takes_a_json_boolean_only(auth_client, user, value):
    client = auth_client(user)
    endpoint = create(client).json()
    response = client.patch(f"/api/v1/webhooks/{endpoint['id']}/", {"is_active": value}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "is_active"


def test_a_blank_task_filter_lists_every_delivery(auth_client, user):
    client = auth_client(user)
    endpoint = create(client).json()
    response = client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries/?task_id=")
    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_description_takes_a_json_string_only(auth_client, user):
    response = create(auth_client(user), description=0)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "description"


def test_endpoints_take_json_bodies_only(auth_client, user):
    client = auth_client(user)
    endpoint = create(client).json()
    response = client.patch(f"/api/v1/webhooks/{endpoint['id']}/", {"url": ""}, format="multipart")
    assert response.status_code == 415
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).url == URL
