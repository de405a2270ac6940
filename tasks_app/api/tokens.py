"""simplejwt's token views, with the errors they answer documented in the schema."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework_simplejwt import views
from rest_framework_simplejwt.serializers import (
    TokenObtainPairSerializer,
    TokenRefreshSerializer,
    TokenVerifySerializer,
)

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


@extend_schema_view(
    post=extend_schema(
        responses={
            200: TokenRefreshSerializer,
            400: BAD_REQUEST,
            401: _unauthorized("The refresh token is invalid, expired or of the wrong type."),
        }
    )
)
class TokenRefreshView(views.TokenRefreshView):
    """A refresh token in, a new `access` token out."""


@extend_schema_view(
    post=extend_schema(
        responses={200: TokenVerifySerializer, 400: BAD_REQUEST, 401: _unauthorized("The token is invalid or expired.")}
    )
)
class TokenVerifyView(views.TokenVerifyView):
    """Answers 200 with `{}` when the token is valid."""
