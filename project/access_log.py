"""Daphne's access log without secrets: query string values are redacted before logging.

Stream tickets (`?ticket=`) and any token a client puts in a URL would otherwise be written
to the access log in full; the parameter names stay, so the log still tells requests apart.
"""

from __future__ import annotations

from typing import Any

REDACTED = "[redacted]"


def redact_path(uri: str) -> str:
    """`uri` with every query parameter's value replaced by REDACTED."""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    names = (part.partition("=")[0] for part in query.split("&") if part)
    return f"{path}?" + "&".join(f"{name}={REDACTED}" for name in names)


def redact_details(details: dict[str, Any]) -> dict[str, Any]:
    """A copy of Daphne's action-log `details` whose `path` carries no query values."""
    path = details.get("path")
    if not isinstance(path, str) or "?" not in path:
        return details
    return {**details, "path": redact_path(path)}
