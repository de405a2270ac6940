"""OpenAPI additions: the bearer auth scheme name and the SSE stream endpoints."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework.views import APIView

from ..progress import TaskProgressSerializer
from ..sse import TOKEN_COOKIE
from .authentication import JWTAuthentication
from .serializers import ErrorSerializer, StreamErrorSerializer, StrictSerializer

SSE_TAG = "SSE"
BEARER = "bearerAuth"
COOKIE = "sseCookie"

EVENTS_TEXT = """\
A `text/event-stream`. Event types:

- `progress`: data is a TaskProgress. Sent first on every connect and reconnect (a snapshot of
  the current state), then on every committed change of state, progress, stage or ETA, in order,
  each with an `id:`.
- `complete`: data is the final TaskProgress (`state` tells success from failure, `error` is set
  on failure). Sent once the task reaches a terminal state; the server then ends the response.
- `error`: data is a StreamError `{"code", "message"}`, the last event before the server ends the
  response for another reason: `deleted` (the task or its audio file was deleted; a reconnect
  gets 404) or `unauthenticated` (the token expired or the user was deactivated; reconnect with
  fresh credentials and `Last-Event-ID`).
- `deleted` (all-tasks stream only): data `{"task_id"}`, a task of the caller's was deleted; the
  stream goes on.
- Comment lines (`: keep-alive`) at least every 20 s keep proxies and client heartbeats happy.

Reconnect with `Last-Event-ID` (header) or `lastEventId` (query) to receive every missed event.
Responses carry `Cache-Control: no-cache` and `X-Accel-Buffering: no`. The body is the event
stream itself (`event:`, `id:`, `data:` lines); `x-sse-events` maps each event type to the schema
of its `data`.
"""

# Event type -> component of its `data` (JSON).
EVENT_DATA = {"progress": "TaskProgress", "complete": "TaskProgress", "error": "StreamError"}

ERRORS = {
    "401": "Missing, invalid or expired token, cookie or ticket.",
    "404": "Unknown task, or a task the caller does not own.",
    "429": "Too many open streams for this user.",
}


# name -> (identity the registry knows it by, scheme); bearerAuth is the simplejwt one.
SECURITY_SCHEMES: dict[str, tuple[Any, dict[str, Any]]] = {
    BEARER: (JWTAuthentication, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
    COOKIE: (TOKEN_COOKIE, {"type": "apiKey", "in": "cookie", "name": TOKEN_COOKIE}),
}


class BearerJWTScheme(SimpleJWTScheme):
    """Name simplejwt's bearer scheme `bearerAuth`, the name the SSE docs use too."""

    target_class = "tasks_app.api.authentication.JWTAuthentication"
    name = BEARER
    priority = 1


def _parameters(per_task: bool) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    if per_task:
        params.append(
            {
                "name": "task_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "The task id (starts with `task_`).",
            }
        )
    params += [
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Id of the last event received; the stream replays what came after.",
        },
        {
            "name": "lastEventId",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "Same as the `Last-Event-ID` header (what `event-source-polyfill` sends).",
        },
        {
            "name": "ticket",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "A short-lived, single-use stream ticket instead of a bearer token "
            "(`POST /api/v1/auth/stream-ticket/`), issued for "
            f"{'this task' if per_task else 'this stream (no `task_id`)'}.",
        },
    ]
    return params


def _operation(per_task: bool) -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    what = "one task" if per_task else "every task of the caller (one connection for dashboards)"
    return {
        "operationId": "sse_task_progress" if per_task else "sse_tasks_progress",
        "summary": f"Stream the progress of {what}",
        "description": (
            "Server-Sent Events. Authenticate with `Authorization: Bearer <access JWT>`, the "
            f"`{TOKEN_COOKIE}` cookie (`POST /api/v1/auth/stream-cookie/`) or a `ticket`. "
            "Errors are answered with a JSON body before any stream starts."
        ),
        "tags": [SSE_TAG],
        "parameters": _parameters(per_task),
        "security": [{BEARER: []}, {COOKIE: []}, {}],
        "responses": {
            "200": {
                "description": EVENTS_TEXT,
                "content": {
                    "text/event-stream": {
                        "schema": event_schema(),
                        "x-sse-events": {
                            event: {"$ref": f"#/components/schemas/{name}"} for event, name in EVENT_DATA.items()
                        },
                    }
                },
            },
            "204": {"description": "The client already received `complete`: stop reconnecting."},
            **{code: {"description": text, "content": error} for code, text in ERRORS.items()},
        },
    }


def event_schema() -> dict[str, Any]:
    """One event of the stream (`event`, `id`, `data`), its `data` JSON typed by event type.

    Before Open API 3.2 a `text/event-stream` schema describes each event; `data` is a string
    whose JSON the `contentMediaType` / `contentSchema` keywords describe.
    """

    def variant(events: list[str], component: str) -> dict[str, Any]:
        return {
            "properties": {
                "event": {"type": "string", "enum": events},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": f"#/components/schemas/{component}"},
                },
            }
        }

    by_component: dict[str, list[str]] = {}
    for event, component in EVENT_DATA.items():
        by_component.setdefault(component, []).append(event)
    return {
        "type": "object",
        "description": "One Server-Sent Event; see `x-sse-events` for the data of each type.",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": list(EVENT_DATA)},
            "id": {"type": "string", "description": "Present on every stored event."},
            "data": {"type": "string", "description": "JSON."},
        },
        "oneOf": [variant(events, component) for component, events in by_component.items()],
    }


def _register(generator: Any, serializer: type) -> None:
    """Put a serializer's component (and those it nests) in the registry, as REST views do."""
    view = APIView()
    view.request = None
    view.kwargs = {}
    auto = AutoSchema()
    auto.registry = generator.registry
    auto.method = "GET"
    auto.path = ""
    auto.view = view
    auto.resolve_serializer(serializer, "response")


def add_sse_endpoints(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: document the SSE routes, which live outside Django's URLconf."""
    # Components go through the registry: the enum hook rebuilds `components` from it.
    # The REST endpoints normally registered the schemas already; then this is a no-op.
    for serializer in (TaskProgressSerializer, ErrorSerializer, StreamErrorSerializer):
        _register(generator, serializer)
    for name, (identity, scheme) in SECURITY_SCHEMES.items():
        generator.registry.register_on_missing(
            ResolvedComponent(name=name, type=ResolvedComponent.SECURITY_SCHEMA, object=identity, schema=scheme)
        )
    components = result.setdefault("components", {})
    for kind, entries in generator.registry.build({}).items():
        for name, schema in entries.items():
            components.setdefault(kind, {}).setdefault(name, schema)
    paths = result.setdefault("paths", {})
    per_task = reverse("sse_task_progress", kwargs={"task_id": "TASK_ID"}).replace("TASK_ID", "{task_id}")
    paths[per_task] = {"get": _operation(per_task=True)}
    paths[reverse("sse_tasks_progress")] = {"get": _operation(per_task=False)}
    tags = result.setdefault("tags", [])
    if not any(tag.get("name") == SSE_TAG for tag in tags):
        tags.append({"name": SSE_TAG, "description": "Live task progress (Server-Sent Events)."})
    return result


def forbid_unknown_fields(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: request bodies of strict serializers allow no other properties.

    Also turns drf-spectacular's `oneOf: [{}, {"type": "null"}]` for a nullable JSONField,
    which no value satisfies once (null matches both), into "any value".
    """
    schemas = result.get("components", {}).get("schemas", {})
    for schema in schemas.values():
        for prop in schema.get("properties", {}).values():
            if {} in prop.get("oneOf", []):
                del prop["oneOf"]
    for serializer in _subclasses(StrictSerializer):
        name = serializer.__name__.removesuffix("Serializer") + "Request"
        if name in schemas:
            schemas[name]["additionalProperties"] = False
    return result


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


# Creating POST -> (response body field, the path parameter it fills, paths that take it).
LINK_SOURCES = {
    "/api/v1/tasks/": ("id", "task_id", "/api/v1/"),  # the REST task paths and its stream
    "/api/v1/audio/": ("id", "id", "/api/v1/audio/"),
    "/api/v1/webhooks/": ("id", "id", "/api/v1/webhooks/"),
}


def add_links(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: link each create's `201` to the operations on what it created."""
    paths = result.get("paths", {})
    for source, (field, parameter, prefix) in LINK_SOURCES.items():
        created = paths.get(source, {}).get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        links = created.setdefault("links", {})
        for path, operations in paths.items():
            if not path.startswith(prefix) or f"{{{parameter}}}" not in path:
                continue
            for operation in operations.values():
                operation_id = operation["operationId"]
                links[operation_id] = {
                    "operationId": operation_id,
                    "parameters": {parameter: f"$response.body#/{field}"},
                    "description": f"`{field}` of the created object is `{parameter}` here.",
                }
    return result
