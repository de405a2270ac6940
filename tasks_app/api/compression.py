"""Gzip for the API's JSON, never for a response that carries a secret (BREACH).

BREACH recovers a secret from a compressed response's length when the attacker can also put
text of their own in that response. The answers that hold credentials (tokens, stream tickets,
the stream cookie) are therefore never compressed, whatever the client accepts; nor are HTML
pages (forms there carry CSRF tokens). Streams compress themselves (`wire_gzip`), one event at
a time, and are left alone here.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase
from django.middleware.gzip import GZipMiddleware
from django.utils.cache import patch_vary_headers

# The views whose answers carry a credential (`tasks_app/api/urls.py`).
SECRET_URL_NAMES = frozenset({"token_obtain_pair", "token_refresh", "token_verify", "stream_cookie", "stream_ticket"})
COMPRESSED_TYPES = ("application/json", "application/vnd.oai.openapi")


def carries_secret(request: HttpRequest) -> bool:
    """Whether the request went to a view whose answer holds a credential."""
    match = getattr(request, "resolver_match", None)
    return match is not None and match.url_name in SECRET_URL_NAMES


class ApiGZipMiddleware(GZipMiddleware):
    """Django's GZipMiddleware for JSON and the schema only, and never for a secret."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """Compress the response if it is JSON without secrets and the client accepts gzip."""
        if response.streaming or not response.get("Content-Type", "").startswith(COMPRESSED_TYPES):
            return response
        if carries_secret(request):
            # The answer does not depend on Accept-Encoding, but say so for caches anyway.
            patch_vary_headers(response, ("Accept-Encoding",))
            return response
        return super().process_response(request, response)
