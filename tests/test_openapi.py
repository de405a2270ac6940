"""OpenAPI document and docs: valid schema, SSE endpoints under tag SSE, Swagger UI served."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from tasks_app.audio.registry import processors

pytestmark = pytest.mark.django_db

SSE_PATHS = ["/api/v1/sse/tasks/{task_id}/progress", "/api/v1/sse/tasks/progress"]


@pytest.fixture
def schema(api_client) -> dict:
    """The OpenAPI document as served, parsed from JSON."""
    response = api_client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_schema_is_a_valid_openapi_document(schema):
    validate(schema)
    assert schema["openapi"].startswith("3.")


def test_schema_lists_every_rest_endpoint(schema):
    expected = {
        "/api/v1/auth/token/",
        "/api/v1/auth/token/refresh/",
        "/api/v1/auth/token/verify/",
        "/api/v1/auth/stream-cookie/",
        "/api/v1/auth/stream-ticket/",
        "/api/v1/audio/",
        "/api/v1/audio/{id}/",
        "/api/v1/tasks/",
        "/api/v1/tasks/{task_id}/",
        "/api/v1/tasks/{task_id}/cancel/",
        "/api/v1/tasks/{task_id}/retry/",
        "/api/v1/tasks/{task_id}/progress/",
    }
    assert expected <= set(schema["paths"])


@pytest.mark.parametrize("path", SSE_PATHS)
def test_sse_endpoints_are_documented_under_tag_sse(schema, path):
    operation = schema["paths"][path]["get"]
    assert operation["tags"] == ["SSE"]
    ok = operation["responses"]["200"]
    stream = ok["content"]["text/event-stream"]
    event = stream["schema"]
    assert event["required"] == ["event", "data"]
    assert set(event["properties"]["event"]["enum"]) == {"progress", "complete", "error"}
    payloads = {
        tuple(v["properties"]["event"]["enum"]): v["properties"]["data"]["contentSchema"] for v in event["oneOf"]
    }
    assert payloads == {
        ("progress", "complete"): {"$ref": "#/components/schemas/TaskProgress"},
        ("error",): {"$ref": "#/components/schemas/StreamError"},
    }
    assert stream["x-sse-events"] == {
        "progress": {"$ref": "#/components/schemas/TaskProgress"},
        "complete": {"$ref": "#/components/schemas/TaskProgress"},
        "error": {"$ref": "#/components/schemas/StreamError"},
    }
    for event in ("progress", "complete", "error", "deleted", "unauthenticated", "keep-alive"):
        assert event in ok["description"]
    assert {"204", "401", "404", "429"} <= set(operation["responses"])
    for status in ("401", "404", "429"):
        body = operation["responses"][status]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/Error"}
    params = {(p["in"], p["name"]) for p in operation["parameters"]}
    assert {("query", "lastEventId"), ("query", "ticket"), ("header", "Last-Event-ID")} <= params
    assert {"bearerAuth": []} in operation["security"]
    assert "bearerAuth" in schema["components"]["securitySchemes"]


def test_error_component_requires_only_the_error_object(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = schema["components"]["schemas"][error["properties"]["error"]["$ref"].split("/")[-1]]
    assert set(detail["required"]) == {"code", "message", "field"}
    stream_error = schema["components"]["schemas"]["StreamError"]
    assert set(stream_error["required"]) == {"code", "message"}


@pytest.mark.parametrize("path", ["/api/v1/auth/token/", "/api/v1/auth/token/refresh/", "/api/v1/auth/token/verify/"])
def test_token_endpoints_document_their_errors(schema, path):
    responses = schema["paths"][path]["post"]["responses"]
    assert {"200", "400", "401"} <= set(responses)
    assert responses["401"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


@pytest.mark.parametrize("path", ["/api/v1/audio/", "/api/v1/tasks/"])
def test_lists_document_the_404_of_a_bad_page_and_the_page_size_range(schema, path):
    operation = schema["paths"][path]["get"]
    assert {"400", "401", "404"} <= set(operation["responses"])
    page_size = next(p for p in operation["parameters"] if p["name"] == "page_size")
    assert page_size["schema"] == {"type": "integer", "minimum": 1, "maximum": 100}


def test_task_progress_component_matches_the_serializer(schema):
    properties = schema["components"]["schemas"]["TaskProgress"]["properties"]
    assert {"task_id", "state", "progress", "estimated_time", "updated_at", "stage", "error"} <= set(properties)


def test_polling_endpoint_shares_the_task_progress_schema(schema):
    ok = schema["paths"]["/api/v1/tasks/{task_id}/progress/"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TaskProgress"}


def test_task_options_are_documented_per_kind(schema):
    create = schema["components"]["schemas"]["TaskCreateRequest"]["properties"]
    description = create["options"]["description"]
    for processor in processors():
        assert f"**{processor.kind}**" in description
        for name in processor.options:
            assert f"`{name}`" in description
    assert create["kind"]["default"] == "analyze"


@pytest.mark.parametrize("url", ["/docs", "/docs/"])
def test_docs_serve_swagger_ui(api_client, url):
    response = api_client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger" in response.content.lower()
    # Swagger UI's assets come from this server, not a CDN: the service runs offline.
    assert b"cdn.jsdelivr" not in response.content
    assert b"/static/drf_spectacular_sidecar/" in response.content


def test_docs_assets_are_served_by_the_app(api_client):
    from django.contrib.staticfiles import finders

    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


def test_creates_link_to_the_operations_on_what_they_created(schema):
    task_links = schema["paths"]["/api/v1/tasks/"]["post"]["responses"]["201"]["links"]
    assert {"tasks_retrieve", "tasks_cancel_create", "tasks_retry_create", "tasks_destroy", "sse_task_progress"} <= set(
        task_links
    )
    assert task_links["tasks_retrieve"]["parameters"] == {"task_id": "$response.body#/id"}
    audio_links = schema["paths"]["/api/v1/audio/"]["post"]["responses"]["201"]["links"]
    assert set(audio_links) == {"audio_retrieve", "audio_destroy"}


def test_strict_request_bodies_forbid_unknown_fields(schema):
    for name in ("AudioUploadRequest", "TaskCreateRequest", "StreamTicketRequestRequest"):
        assert schema["components"]["schemas"][name]["additionalProperties"] is False
