"""`manage.py get_token USER`: print a fresh JWT access token (and nothing else)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tasks_app.accounts import access_token_for, user_by_name
from tasks_app.exceptions import NotFound


class Command(BaseCommand):
    """Print an access token for a user, for `TOKEN=$(python manage.py get_token demo)`."""

    help = "Print a fresh JWT access token for USER; only the token goes to stdout."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """USER."""
        parser.add_argument("username", metavar="USER", help="Username to issue the token for.")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        """Look up the user and print the token."""
        try:
            user = user_by_name(username)
        except NotFound as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(access_token_for(user))
