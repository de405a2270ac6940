"""The one DRF exception handler: every API error becomes `{"error": {code, message, field}}`."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from project.middleware import API_POLICY

from ..exceptions import DomainError

NON_FIELD = {"non_field_errors", "detail"}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON error shape; `detail` repeats the message for DRF-style clients."""
    return {"error": {"code": code, "message": message, "field": field}, "detail": message}


def refusal(code: str, message: str, field: str | None = None) -> tuple[bytes, list[tuple[str, str]]]:
    """An error the server answers before Django sees the request: its JSON body, and the
    headers the API's middleware gives every error (`project.middleware`)."""
    body = json.dumps(error_body(code, message, field)).encode()
    return body, [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", API_POLICY),
    ]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map domain errors and DRF/Django errors to a status and the JSON error shape."""
    if isinstance(exc, DomainError):
        set_rollback()
        return Response(error_body(exc.code, exc.message, exc.field), status=exc.status_code)
    # DRF's handler sets the status, WWW-Authenticate / Retry-After and the rollback.
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django answer 500 and log it
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    code, message, field = describe(exc)  # type: ignore[arg-type]
    response.data = error_body(code, message, field)
    return response


def describe(exc: exceptions.APIException) -> tuple[str, str, str | None]:
    """Return (code, message, field) for one DRF exception, using its first error."""
    if isinstance(exc, exceptions.ValidationError):
        return first_error(exc.detail)
    if isinstance(exc, exceptions.ParseError):
        return _code(exc.detail, exc.default_code), str(exc.detail), "body"
    detail = exc.detail
    if isinstance(detail, dict):
        # simplejwt's InvalidToken: {"detail", "code", "messages": [{"message": …}]}
        messages = detail.get("messages") or []
        message = str(messages[0].get("message")) if messages else str(detail.get("detail", ""))
        code = str(detail.get("code") or exc.default_code)
        return code, message or str(exc.default_detail), None
    if isinstance(detail, list):
        return first_error(detail)
    return _code(detail, exc.default_code), str(detail), None


def first_error(detail: Any, path: tuple[str, ...] = ()) -> tuple[str, str, str | None]:
    """Walk a ValidationError's nested detail to its first message and dotted field path."""
    if isinstance(detail, dict):
        if not detail:
            return "invalid", "Invalid input.", _field(path)
        key, value = next(iter(detail.items()))
        step = () if str(key) in NON_FIELD else (str(key),)
        return first_error(value, path + step)
    if isinstance(detail, list):
        for item in detail:
            if item:
                return first_error(item, path)
        return "invalid", "Invalid input.", _field(path)
    return _code(detail, "invalid"), str(detail), _field(path)


def _code(detail: Any, default: str) -> str:
    return str(getattr(detail, "code", None) or default)


def _field(path: tuple[str, ...]) -> str | None:
    return ".".join(path) or None
