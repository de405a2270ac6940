"""JWT authentication of the REST API: token endpoints, 401 JSON errors, the SSE cookie."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from tasks_app.exceptions import Unauthenticated
from tasks_app.sse import Credentials, authenticate

from .conftest import PASSWORD, obtain_tokens

pytestmark = pytest.mark.django_db

TASKS_URL = "/api/v1/tasks/"


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The response has `status` and the JSON error shape; return its `error`."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def test_request_without_token_is_401_json(api_client):
    response = api_client.get(TASKS_URL)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_request_with_garbage_token_is_401_json(api_client, user):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
    error = assert_error(api_client.get(TASKS_URL), 401, "token_not_valid")
    assert "invalid" in error["message"].lower()


def test_request_with_expired_token_is_401_json(api_client, user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    error = assert_error(api_client.get(TASKS_URL), 401, "token_not_valid")
    assert "expired" in error["message"].lower()


@pytest.mark.parametrize("problem", ["expired", "garbage", "deleted user"])
def test_the_stream_refuses_a_token_with_the_apis_code_and_message(api_client, user, problem: str) -> None:
    token = AccessToken.for_user(user)
    if problem == "expired":
        token.set_exp(lifetime=-timedelta(seconds=1))
    raw = "not-a-jwt" if problem == "garbage" else str(token)
    if problem == "deleted user":
        user.delete()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    api = assert_error(api_client.get(TASKS_URL), 401)

    with pytest.raises(Unauthenticated) as refused:
        authenticate(Credentials(bearer=raw), task_id=None)

    assert (refused.value.code, refused.value.message) == (api["code"], api["message"])


def test_token_obtain_returns_access_and_refresh_that_authenticate(api_client, user):
    tokens = obtain_tokens(api_client, "alice")
    assert set(tokens) >= {"access", "refresh"}
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert api_client.get(TASKS_URL).status_code == 200


def test_token_obtain_with_wrong_password_is_401_json(api_client, user):
    response = api_client.post("/api/v1/auth/token/", {"username": "alice", "password": "wrong"}, format="json")
    assert_error(response, 401)


def test_token_obtain_without_password_names_the_field(api_client, user):
    response = api_client.post("/api/v1/auth/token/", {"username": "alice"}, format="json")
    assert assert_error(response, 400, "required")["field"] == "password"


def test_token_refresh_issues_a_working_access_token(api_client, user):
    refresh = obtain_tokens(api_client, "alice")["refresh"]
    response = api_client.post("/api/v1/auth/token/refresh/", {"refresh": refresh}, format="json")
    assert response.status_code == 200
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert api_client.get(TASKS_URL).status_code == 200


def test_token_refresh_with_an_access_token_is_401(api_client, user):
    access = obtain_tokens(api_client, "alice")["access"]
    response = api_client.post("/api/v1/auth/token/refresh/", {"refresh": access}, format="json")
    assert_error(response, 401, "token_not_valid")


def test_token_verify_accepts_valid_and_refuses_invalid(api_client, user):
    access = obtain_tokens(api_client, "alice")["access"]
    ok = api_client.post("/api/v1/auth/token/verify/", {"token": access}, format="json")
    assert ok.status_code == 200
    bad = api_client.post("/api/v1/auth/token/verify/", {"token": access[:-4] + "AAAA"}, format="json")
    assert_error(bad, 401, "token_not_valid")


def test_stream_cookie_holds_the_access_token_httponly_strict_and_sse_scoped(api_client, user):
    access = obtain_tokens(api_client, "alice")["access"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    response = api_client.post("/api/v1/auth/stream-cookie/")
    assert response.status_code == 204
    cookie = response.cookies["sse_token"]
    assert cookie.value == access
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/api/v1/sse/"
    lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()
    assert 0 < int(cookie["max-age"]) <= lifetime


def test_stream_cookie_needs_a_bearer_token_not_a_session(api_client, user):
    assert_error(api_client.post("/api/v1/auth/stream-cookie/"), 401)
    api_client.login(username="alice", password=PASSWORD)
    assert_error(api_client.post("/api/v1/auth/stream-cookie/"), 401)


def test_unknown_api_url_is_404_json(auth_client, user):
    assert_error(auth_client(user).get("/api/v1/nothing-here/"), 404, "not_found")


def test_stream_ticket_for_own_task_opens_that_stream_once(auth_client, user, make_task):
    from tasks_app.exceptions import Unauthenticated
    from tasks_app.tickets import redeem_ticket

    task = make_task(user)
    response = auth_client(user).post("/api/v1/auth/stream-ticket/", {"task_id": task.pk}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["task_id"] == task.pk
    with pytest.raises(Unauthenticated):
        redeem_ticket(body["ticket"], task_id="task_other")
    assert redeem_ticket(body["ticket"], task_id=task.pk) == user
    with pytest.raises(Unauthenticated):
        redeem_ticket(body["ticket"], task_id=task.pk)


def test_stream_ticket_without_task_is_for_the_users_stream(auth_client, user):
    from tasks_app.tickets import redeem_ticket

    response = auth_client(user).post("/api/v1/auth/stream-ticket/", {}, format="json")
    assert response.status_code == 201
    assert redeem_ticket(response.json()["ticket"], task_id=None) == user


def test_stream_ticket_for_other_users_task_is_404(auth_client, user, other_user, make_task):
    task = make_task(other_user)
    response = auth_client(user).post("/api/v1/auth/stream-ticket/", {"task_id": task.pk}, format="json")
    assert_error(response, 404, "not_found")


def test_stream_ticket_needs_authentication(api_client):
    assert_error(api_client.post("/api/v1/auth/stream-ticket/", {}, format="json"), 401)
