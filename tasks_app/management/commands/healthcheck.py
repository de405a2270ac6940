"""`manage.py healthcheck`: ask the local web process's /healthz; exit 1 unless it answers 200."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def host_header() -> str | None:
    """A host name the server accepts (the first non-wildcard ALLOWED_HOSTS entry)."""
    for host in settings.ALLOWED_HOSTS:
        if host and "*" not in host and not host.startswith("."):
            return host
    return None


class Command(BaseCommand):
    """For Docker's HEALTHCHECK: print the /healthz answer, fail when it is not 200."""

    help = "GET /healthz on the local web process; exit status 1 unless it answers 200."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """--url."""
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000/healthz", help="Health URL to ask (default: %(default)s)."
        )

    def handle(self, *args: Any, url: str, **options: Any) -> None:
        """Ask once, with a short timeout."""
        host = host_header()
        headers = {"Host": host} if host else {}
        try:
            response = httpx.get(url, headers=headers, timeout=5)
        except httpx.HTTPError as exc:
            raise CommandError(f"{url} did not answer: {exc}") from exc
        self.stdout.write(response.text)
        if response.status_code != 200:
            raise CommandError(f"{url} answered {response.status_code}")
