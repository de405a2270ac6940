"""`manage.py ensure_demo_user`: create (or repair) the `demo` superuser and print its login."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from tasks_app.accounts import demo_password, ensure_demo_user


class Command(BaseCommand):
    """Create the demo superuser if missing; print its credentials."""

    help = (
        "Create the `demo` staff superuser (password from DEMO_PASSWORD, default "
        "`demo-password`) if it is missing, and print its credentials. Safe to re-run."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        """Ensure the user and print the login."""
        user, created = ensure_demo_user()
        verb = "Created" if created else "Found"
        self.stdout.write(f"{verb} demo user: username={user.get_username()} password={demo_password()}")
