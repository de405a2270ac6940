"""The dashboard page at `/`: one HTML shell; the browser talks to the REST API and the stream."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from project.middleware import DASHBOARD_POLICY, content_security_policy

from .audio.registry import processors


def kinds() -> list[dict[str, object]]:
    """Every task kind with its description and option schema, for the new-task form."""
    return [
        {
            "kind": p.kind,
            "description": p.description,
            "options": {name: option.as_dict() for name, option in p.options.items()},
        }
        for p in processors()
    ]


@require_safe
@content_security_policy(DASHBOARD_POLICY)
def dashboard(request: HttpRequest) -> HttpResponse:
    """Serve the dashboard; it signs in with JWT itself, so the page holds no user data."""
    return render(request, "tasks_app/dashboard.html", {"kinds": kinds()})
