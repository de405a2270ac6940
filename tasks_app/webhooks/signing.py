"""Signatures as the Standard Webhooks spec defines them (https://www.standardwebhooks.com/)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from .models import SECRET_PREFIX


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed by the secret's decoded bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_header(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per valid secret, space-separated."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets)
