"""The local Slack enforces Slack's standing limits on its own when asked to.

Driven with the real slack-sdk client: chat.postMessage allows about one message
per second per channel with a short burst, every other method its tier per
workspace and minute, each 429 with a Retry-After.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_server import TIERS_PER_MIN, FakeSlack


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(enforce_limits=True) as server:
        yield server


def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=slack.bot_token, base_url=slack.api_url, retry_handlers=[])


async def test_posting_faster_than_one_per_second_in_a_channel_is_refused_after_a_burst(
    slack: FakeSlack,
) -> None:
    general, random = slack.add_channel("general"), slack.add_channel("random")
    web = client(slack)
    for n in range(2):  # the burst
        await web.chat_postMessage(channel=general.id, text=f"quick {n}")
    with pytest.raises(SlackApiError) as refused:
        await web.chat_postMessage(channel=general.id, text="one too many")
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"] == "1"
    await web.chat_postMessage(channel=random.id, text="another channel is its own")
    assert [m["text"] for m in general.bot_messages()] == ["quick 0", "quick 1"]
    assert len(random.bot_messages()) == 1
    assert slack.limits is not None
    assert slack.limits.rate_limited["chat.postMessage"] == 1


async def test_a_tier_3_method_allows_fifty_calls_a_minute_per_workspace(
    slack: FakeSlack,
) -> None:
    general = slack.add_channel("general")
    web = client(slack)
    for _ in range(TIERS_PER_MIN[3]):
        await web.conversations_history(channel=general.id, limit=1)
    with pytest.raises(SlackApiError) as refused:
        await web.conversations_history(channel=general.id, limit=1)
    assert refused.value.response.status_code == 429
    assert int(refused.value.response.headers["Retry-After"]) >= 59


async def test_without_enforce_limits_the_fake_stays_unlimited() -> None:
    async with FakeSlack() as server:
        general = server.add_channel("general")
        web = client(server)
        for n in range(5):
            await web.chat_postMessage(channel=general.id, text=f"n{n}")
        assert len(general.bot_messages()) == 5
        assert server.limits is None
