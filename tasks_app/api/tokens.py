"""simplejwt's token views, with refresh tokens spent on use, and signing out."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import serializers, views
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenVerifySerializer
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from ..accounts import revoke_tokens
from .authentication import JWTAuthentication
from .serializers import ErrorSerializer

BAD_REQUEST = OpenApiResponse(ErrorSerializer, description="A field is missing or malformed.")


def _unauthorized(what: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=what)


@extend_schema_view(
    post=extend_schema(
        responses={
            200: TokenObtainPairSerializer,
            400: BAD_REQUEST,
            401: _unauthorized("Wrong username or password, or an inactive user."),
        }
    )
)
class TokenObtainPairView(views.TokenObtainPairView):
    """Username and password in, `access` and `refresh` tokens out."""


class TokenRefreshSerializer(serializers.TokenRefreshSerializer):
    """A refresh token in, a new access and refresh token out; the one given is spent."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        """Spend the refresh token (once: two racing requests cannot both use it), then rotate it."""
        refresh = self.token_class(attrs["refresh"])  # TokenError (401): invalid, expired, spent
        # The same user checks as for an access token: unknown, malformed, inactive, password changed.
        JWTAuthentication().get_user(refresh)
        outstanding, _ = refresh.outstand()
        try:
            with transaction.atomic():
                BlacklistedToken.objects.create(token=outstanding)
        except IntegrityError:
            raise InvalidToken("Token is blacklisted") from None
        data = {"access": str(refresh.access_token)}
        refresh.set_jti()
        refresh.set_exp()
        refresh.set_iat()
        refresh.outstand()
        data["refresh"] = str(refresh)
        return data


@extend_schema_view(
    post=extend_schema(
        responses={
            200: TokenRefreshSerializer,
            400: BAD_REQUEST,
            401: _unauthorized(
                "The refresh token is invalid, expired, of the wrong type, already used or revoked "
                "(sign-out, password change, deactivation)."
            ),
        }
    )
)
class TokenRefreshView(views.TokenRefreshView):
    """A refresh token in, a new `access` and `refresh` token out; the one sent is spent."""

    serializer_class = TokenRefreshSerializer


@extend_schema_view(
    post=extend_schema(
        responses={200: TokenVerifySerializer, 400: BAD_REQUEST, 401: _unauthorized("The token is invalid or expired.")}
    )
)
class TokenVerifyView(views.TokenVerifyView):
    """Answers 200 with `{}` when the token is valid."""


class LogoutView(APIView):
    """Sign out everywhere: revoke every refresh token of the caller and end their streams."""

    authentication_classes = [JWTAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Sign out: revoke all of your refresh tokens",
        description=(
            "Every refresh token of the caller stops working (`401` on refresh) and the caller's "
            "open streams end with the `error` event `unauthenticated`. Access tokens already "
            "issued stay valid until they expire (`JWT_ACCESS_MINUTES`); drop them on the client."
        ),
        request=None,
        responses={
            204: OpenApiResponse(description="Signed out."),
            401: _unauthorized("Missing, invalid or expired token."),
        },
    )
    def post(self, request: Request) -> Response:
        """Revoke the caller's refresh tokens; 204."""
        revoke_tokens(user_id=request.user.pk, reason="The user signed out. Sign in again.")
        return Response(status=status.HTTP_204_NO_CONTENT)
