"""Every answer on an API path is JSON: requests refused before a view, and malformed tokens."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

pytestmark = pytest.mark.django_db

TASKS_URL = "/api/v1/tasks/"


def assert_json_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code


def test_a_foreign_host_on_an_api_path_gets_a_json_400():
    assert_json_error(Client().get(TASKS_URL, HTTP_HOST="evil.example"), 400, "invalid_host")


def test_a_foreign_host_elsewhere_keeps_djangos_page():
    response = Client().get("/admin/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert not response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("user_id", ["1 OR 1=1", [1], {"a": 1}, ""], ids=repr)
def test_a_validly_signed_token_with_a_malformed_user_id_is_401(api_client, user, user_id):
    token = AccessToken.for_user(user)
    token["user_id"] = user_id
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert_json_error(api_client.get(TASKS_URL), 401, "token_not_valid")


@pytest.mark.parametrize("user_id", ["1 OR 1=1", [1], 10**30, 999999], ids=repr)
def test_a_refresh_token_with_a_malformed_or_unknown_user_id_is_401(api_client, user, user_id):
    token = RefreshToken.for_user(user)
    token["user_id"] = user_id
    response = api_client.post("/api/v1/auth/token/refresh/", {"refresh": str(token)}, format="json")
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/json"


def test_a_stream_with_a_malformed_user_id_token_is_401(user):
    token = AccessToken.for_user(user)
    token["user_id"] = "1 OR 1=1"
    response = Client().get("/api/v1/sse/tasks/progress", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert_json_error(response, 401, "token_not_valid")
