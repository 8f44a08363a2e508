"""The local Slack answers in the shapes Slack's own API description documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from tests.fakes.slack_server import SPEC, FakeSlack, documented


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


async def call(slack: FakeSlack, method: str, **args: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {slack.bot_token}"}
    async with aiohttp.ClientSession() as session:
        if SPEC[method]["http_verb"] == "GET":
            request = session.get(slack.api_url + method, params=args, headers=headers)
        else:
            request = session.post(slack.api_url + method, json=args, headers=headers)
        async with request as resp:
            return resp.status, await resp.json()


async def test_success_answers_have_every_key_the_spec_requires(slack: FakeSlack) -> None:
    general = slack.add_channel("general")
    _, posted = await call(slack, "chat.postMessage", channel=general.id, text="hi")
    answers = {
        "auth.test": (await call(slack, "auth.test"))[1],
        "chat.postMessage": posted,
        "chat.update": (
            await call(slack, "chat.update", channel=general.id, ts=posted["ts"], text="hey")
        )[1],
        "conversations.history": (await call(slack, "conversations.history", channel=general.id))[
            1
        ],
        "chat.postEphemeral": (
            await call(slack, "chat.postEphemeral", channel=general.id, user="U1", text="psst")
        )[1],
        "chat.delete": (await call(slack, "chat.delete", channel=general.id, ts=posted["ts"]))[1],
    }
    assert set(answers) == set(SPEC)
    for method, answer in answers.items():
        missing = set(SPEC[method]["success_required"]) - set(answer)
        assert not missing, f"{method} lacks {missing}"
        assert answer["ok"] is True


async def test_errors_are_shaped_like_slacks_and_documented(slack: FakeSlack) -> None:
    status, answer = await call(slack, "chat.postMessage", channel="C0NOWHERE", text="hi")
    assert (status, answer) == (
        200,
        SPEC["chat.postMessage"]["error_example"] | {"error": "channel_not_found"},
    )
    assert documented("chat.postMessage", "channel_not_found")
    assert not documented("chat.postMessage", "made_up_error")
    slack.rate_limit("auth.test", retry_after=3)
    async with (
        aiohttp.ClientSession() as session,
        session.post(slack.api_url + "auth.test", headers={"Authorization": "Bearer x"}) as resp,
    ):
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "3"
        assert await resp.json() == {"ok": False, "error": "ratelimited"}
