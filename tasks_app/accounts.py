"""Account helpers for operators and scripts: the demo user, users by name, access tokens."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from .exceptions import NotFound
from .sse import publish_user_revoked

DEMO_USERNAME = "demo"
DEFAULT_DEMO_PASSWORD = "demo-password"


def demo_password() -> str:
    """The demo user's password: DEMO_PASSWORD, or a fixed default for a laptop."""
    return os.environ.get("DEMO_PASSWORD") or DEFAULT_DEMO_PASSWORD


def ensure_demo_user(*, password: str | None = None) -> tuple[Any, bool]:
    """Make sure the `demo` superuser exists with the demo password; return (user, created)."""
    password = password or demo_password()
    User = get_user_model()  # noqa: N806 - Django's name for the user model
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=DEMO_USERNAME, defaults={"email": "demo@example.com"})
        # Idempotent: re-running brings the account back to a usable state with the
        # configured password, so the printed credentials are always the working ones.
        changed = created or not (user.is_staff and user.is_superuser and user.is_active)
        if not user.check_password(password):
            user.set_password(password)
            changed = True
        if changed:
            user.is_staff = user.is_superuser = user.is_active = True
            user.save()
    return user, created


def user_by_name(username: str, *, create: bool = False) -> Any:
    """Return the user called `username`; create it (no usable password) when asked.

    The demo user is created through ensure_demo_user so it can also log in to the admin.
    """
    User = get_user_model()  # noqa: N806 - Django's name for the user model
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user
    if not create:
        raise NotFound(f"User {username!r} not found.", field="username")
    if username == DEMO_USERNAME:
        return ensure_demo_user()[0]
    user = User(username=username)
    user.set_unusable_password()
    user.save()
    return user


def access_token_for(user: Any) -> str:
    """A fresh simplejwt access token for `user`."""
    return str(RefreshToken.for_user(user).access_token)


def revoke_tokens(*, user_id: int, reason: str) -> int:
    """Revoke every refresh token of a user and end their open streams; return how many were revoked.

    `reason` is the message of the streams' final `unauthenticated` event.
    """
    with transaction.atomic():
        live = OutstandingToken.objects.filter(
            user_id=user_id, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
        )
        revoked = BlacklistedToken.objects.bulk_create(
            [BlacklistedToken(token=token) for token in live], ignore_conflicts=True
        )
        publish_user_revoked(user_id, reason)
    return len(revoked)
