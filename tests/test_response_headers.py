"""Header rules on every endpoint of the URLconf: nosniff, frame denial, CSP, API caching, 429."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from rest_framework.exceptions import Throttled
from rest_framework.views import APIView

from project.middleware import ResponseHeadersMiddleware
from tasks_app.api.exceptions import exception_handler

from .conftest import PASSWORD

# Sample values for the URL kwargs; ids are filled in with real objects per test.
SAMPLE_KWARGS = {"format": "json", "app_label": "tasks_app", "model_name": "task", "content_type_id": "1", "url": "x"}


def url_patterns(patterns: list[Any] | None = None, prefix: str = "") -> list[tuple[str, Any]]:
    """(route, pattern) for every endpoint in the URLconf, nested includes flattened."""
    found: list[tuple[str, Any]] = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found += url_patterns(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            found.append((route, entry))
    return found


ENDPOINTS = url_patterns()


def concrete_path(route: str, pattern: URLPattern, ids: dict[str, str]) -> str:
    """A path that `pattern` matches, with real ids where the route takes them."""
    names = dict.fromkeys([*pattern.pattern.regex.groupindex, *getattr(pattern.pattern, "converters", {})])
    kwargs = {name: ids.get(name, SAMPLE_KWARGS.get(name, "1")) for name in names}
    if "(?P<" in route or "^" in route:
        # Regex routes (the router's, the admin's) are rebuilt from their name.
        if pattern.name is None:  # the admin's catch-all
            return "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: kwargs[m[1]], route).strip("$")
        namespace = "admin:" if route.startswith("admin/") else ""
        return reverse(namespace + pattern.name, kwargs=kwargs)
    path = route
    for name, value in kwargs.items():
        for converter in ("", "str:", "int:", "path:"):
            path = path.replace(f"<{converter}{name}>", value)
    return "/" + path


def assert_header_rules(path: str, response: Any) -> None:
    """The rules every response follows."""
    where = f"{path} -> {response.status_code}"
    assert response["X-Content-Type-Options"] == "nosniff", where
    assert response["X-Frame-Options"] == "DENY", where
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"], where
    content_type = response.get("Content-Type", "")
    if content_type.startswith("text/event-stream"):
        assert response["Cache-Control"] == "no-cache", where
    elif path.startswith("/api/"):
        assert "no-store" in response["Cache-Control"], where
    if response.status_code == 429:
        assert response["Retry-After"].isdigit(), where


@pytest.fixture
def ids(staff_user: Any, make_task: Any) -> dict[str, str]:
    """Real ids for the URL kwargs: a task and its audio file, both the staff user's."""
    task = make_task(staff_user)
    return {
        "task_id": task.id,
        "id": str(task.audio_file_id),
        "pk": str(task.audio_file_id),
        "object_id": task.id,
        "user_id": str(staff_user.pk),
    }


@pytest.mark.parametrize("route,pattern", ENDPOINTS, ids=[route for route, _ in ENDPOINTS])
def test_every_endpoint_follows_the_header_rules(route, pattern, ids, staff_user):
    path = concrete_path(route, pattern, ids)
    assert resolve(path).func == pattern.callback
    anonymous = Client()
    signed_in = Client()
    signed_in.force_login(staff_user)
    for client in (anonymous, signed_in):
        response = client.get(path)
        if response.streaming:
            response.close()
        assert_header_rules(path, response)


@pytest.mark.parametrize("path", ["/api/v1/auth/token/", "/api/v1/auth/token/refresh/"])
def test_token_responses_are_not_stored(api_client, user, path):
    tokens = api_client.post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}, format="json")
    body = (
        {"username": user.username, "password": PASSWORD}
        if path.endswith("token/")
        else {"refresh": tokens.json()["refresh"]}
    )
    response = api_client.post(path, body, format="json")
    assert response.status_code == 200
    assert "access" in response.json()
    assert "no-store" in response["Cache-Control"]
    assert_header_rules(path, response)


def test_a_429_without_retry_after_gets_one():
    request = RequestFactory().get("/api/v1/sse/tasks/progress")
    middleware = ResponseHeadersMiddleware(lambda req: HttpResponse(status=429))
    response = middleware(request)
    assert response["Retry-After"] == "5"


def test_a_throttled_api_error_keeps_its_own_retry_after():
    request = RequestFactory().get("/api/v1/tasks/")
    response = exception_handler(Throttled(wait=42), {"view": APIView(), "request": request})
    assert response.status_code == 429
    assert response["Retry-After"] == "42"
    assert response.data["error"]["code"] == "throttled"
    checked = ResponseHeadersMiddleware(lambda req: response)(request)
    assert checked["Retry-After"] == "42"
