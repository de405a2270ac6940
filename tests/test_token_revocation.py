"""Tokens can be revoked: refresh tokens rotate on use; sign-out, a password change and
deactivation revoke every refresh token of the user."""

from __future__ import annotations

import pytest

from .conftest import obtain_tokens

pytestmark = pytest.mark.django_db

REFRESH_URL = "/api/v1/auth/token/refresh/"
LOGOUT_URL = "/api/v1/auth/logout/"
TASKS_URL = "/api/v1/tasks/"


def refresh(api_client, token: str):
    return api_client.post(REFRESH_URL, {"refresh": token}, format="json")


def assert_401_json(response) -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "token_not_valid"


def test_a_refresh_rotates_the_refresh_token_and_a_used_one_gets_401(api_client, user):
    first = obtain_tokens(api_client, "alice")["refresh"]
    response = refresh(api_client, first)
    assert response.status_code == 200
    second = response.json()["refresh"]
    assert second != first
    assert_401_json(refresh(api_client, first))
    assert refresh(api_client, second).status_code == 200


def test_logout_revokes_every_refresh_token_of_the_caller_only(api_client, user, other_user):
    phone, laptop = obtain_tokens(api_client, "alice"), obtain_tokens(api_client, "alice")
    bobs = obtain_tokens(api_client, "bob")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {phone['access']}")
    assert api_client.post(LOGOUT_URL).status_code == 204
    api_client.credentials()
    assert_401_json(refresh(api_client, phone["refresh"]))
    assert_401_json(refresh(api_client, laptop["refresh"]))
    assert refresh(api_client, bobs["refresh"]).status_code == 200


def test_logout_without_a_token_is_401_json(api_client):
    response = api_client.post(LOGOUT_URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_password_change_revokes_refresh_and_access_tokens(api_client, user):
    tokens = obtain_tokens(api_client, "alice")
    user.set_password("a-new-password-1")
    user.save()
    assert_401_json(refresh(api_client, tokens["refresh"]))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert api_client.get(TASKS_URL).status_code == 401


def test_saving_a_user_without_a_new_password_revokes_nothing(api_client, user):
    tokens = obtain_tokens(api_client, "alice")
    user.first_name = "Alice"
    user.save()
    assert refresh(api_client, tokens["refresh"]).status_code == 200


def test_deactivation_revokes_refresh_tokens(api_client, user):
    tokens = obtain_tokens(api_client, "alice")
    user.is_active = False
    user.save()
    response = refresh(api_client, tokens["refresh"])
    assert response.status_code == 401, response.content
    user.is_active = True
    user.save()
    assert_401_json(refresh(api_client, tokens["refresh"]))
