"""Response headers every view gets: caching rules for the API, CSP, Retry-After on 429."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_cache_control
from django.utils.deprecation import MiddlewareMixin

# API answers (JSON, files, streams) never load anything, so nothing is allowed.
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
# The HTML pages (admin, Swagger UI, the browsable API) load their own scripts and styles;
# Swagger UI and the browsable API configure themselves with inline scripts.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
)
# The dashboard keeps JWTs in sessionStorage, so nothing but its own files may run: its module
# scripts and stylesheet are files, its data a JSON block (not executed), and it talks to its
# own origin only.
DASHBOARD_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

View = Callable[..., HttpResponseBase]


def content_security_policy(policy: str) -> Callable[[View], View]:
    """Serve a view under its own policy instead of the middleware's default for its type."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
            response = view(request, *args, **kwargs)
            response["Content-Security-Policy"] = policy
            return response

        return wrapped

    return decorate


class ResponseHeadersMiddleware(MiddlewareMixin):
    """Add the header rules of the API to every response, streams included.

    `X-Content-Type-Options` and `X-Frame-Options` come from Django's SecurityMiddleware and
    XFrameOptionsMiddleware; this adds `Cache-Control: no-store` to API responses that set no
    caching of their own (SSE responses keep their `no-cache`), a Content-Security-Policy, and
    `Retry-After` on a `429` that lacks one.
    """

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """Set the headers the view left out."""
        is_api = request.path.startswith("/api/")
        if is_api and not response.has_header("Cache-Control"):
            # Tokens and users' data must not stay in shared or browser caches.
            patch_cache_control(response, no_store=True)
        if not response.has_header("Content-Security-Policy"):
            html = response.get("Content-Type", "").startswith("text/html")
            response["Content-Security-Policy"] = PAGE_POLICY if html else API_POLICY
        if response.status_code == 429 and not response.has_header("Retry-After"):
            response["Retry-After"] = str(settings.RETRY_AFTER_SECONDS)
        return response
