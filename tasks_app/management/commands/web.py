"""`manage.py web`: the web process of the scaled shape (the bounded Daphne of project.server)."""

from __future__ import annotations

import os
import socket
import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError


def check_port_free(host: str, port: int) -> None:
    """Raise CommandError, naming the address, when host:port cannot be listened on (e.g. in use).

    Checked before anything starts: Daphne would only log the failure after its start-up.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            # As Twisted binds: a port left in TIME_WAIT by a stopped server is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CommandError(f"Cannot listen on {host}:{port}: {reason} (pick another --port).") from exc


class Command(BaseCommand):
    """Replace this process with Daphne on the given address."""

    help = (
        "Run the web process for the scaled shape: Daphne with bounded request bodies and header "
        "deadlines (`python -m project.server -b HOST -p PORT project.asgi:application`). "
        "Run `worker` processes next to it."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """--host, --port."""
        parser.add_argument("--host", default="127.0.0.1", help="Bind address (%(default)s).")
        parser.add_argument("--port", type=int, default=8000, help="Port (%(default)s).")

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        """exec Daphne, so signals reach it directly (no extra process in between)."""
        check_port_free(host, port)
        argv = [sys.executable, "-m", "project.server", "-b", host, "-p", str(port), "project.asgi:application"]
        self.stdout.write(f"Starting Daphne on {host}:{port}")
        self.stdout.flush()
        os.execv(sys.executable, argv)
