"""The stream consumer in-process: it always answers, even when something breaks inside."""

from __future__ import annotations

import asyncio
import json

from channels.testing import HttpCommunicator

from tasks_app import consumers


def test_an_unexpected_error_before_the_stream_starts_is_a_json_response(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(consumers, "open_user_stream", broken)
    app = consumers.UserProgressConsumer.as_asgi()

    async def scenario() -> dict:
        communicator = HttpCommunicator(app, "GET", "/api/v1/sse/tasks/progress",
                                        headers=[(b"authorization", b"Bearer x")])
        return await communicator.get_response(timeout=5)

    response = asyncio.run(scenario())
    assert response["status"] == 500
    assert json.loads(response["body"])["error"]["code"] == "internal_error"
