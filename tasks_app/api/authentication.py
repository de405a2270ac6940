"""JWT authentication whose malformed claims are a 401, never a server error."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import Token


class JWTAuthentication(authentication.JWTAuthentication):
    """simplejwt's bearer authentication, refusing a user id claim the database cannot look up.

    A token signed with the real key can still carry `user_id: "1 OR 1=1"` or a list; simplejwt
    hands it to the ORM, whose field conversion raises (ValueError, TypeError, ...) and would
    answer 500.
    """

    def get_user(self, validated_token: Token) -> Any:
        """The token's user, or InvalidToken (401) when its user id claim is malformed."""
        try:
            return super().get_user(validated_token)
        except (ValueError, TypeError, OverflowError, ValidationError) as exc:
            raise InvalidToken("Token contained no recognizable user identification") from exc
