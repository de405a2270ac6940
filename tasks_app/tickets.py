"""Short-lived, single-task, single-use stream tickets for clients that cannot send headers."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from .exceptions import Unauthenticated
from .models import StreamTicket


def issue_ticket(*, user: Any, task_id: str | None) -> StreamTicket:
    """Create a ticket valid for SSE_TICKET_SECONDS for one task ('' = the user's stream)."""
    now = timezone.now()
    StreamTicket.objects.filter(expires_at__lt=now).delete()
    return StreamTicket.objects.create(
        key=secrets.token_urlsafe(32),
        user=user,
        task_id=task_id or "",
        expires_at=now + timedelta(seconds=settings.SSE_TICKET_SECONDS),
    )


def redeem_ticket(key: str, *, task_id: str | None) -> Any:
    """Spend a ticket and return its user; raise Unauthenticated when unusable."""
    now = timezone.now()
    # A guarded update: of two requests racing with one ticket, only one spends it.
    spent = StreamTicket.objects.filter(
        key=key,
        used_at__isnull=True,
        expires_at__gte=now,
        task_id=task_id or "",
        user__is_active=True,
    ).update(used_at=now)
    if not spent:
        raise Unauthenticated(
            "Stream ticket is invalid, expired or already used, or its user is inactive.", code="ticket_not_valid"
        )
    return StreamTicket.objects.select_related("user").get(key=key).user
