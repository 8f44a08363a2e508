"""Posting back to Mastodon: idempotent posts, replies, quotes, warnings, deletes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.clock import SystemClock
from bot.errors import Outcome, UpstreamError, UserError
from bot.health import HealthBook
from bot.protocols import Draft, PluginContext, Preparer, Publisher
from plugins.mastodon import MastodonNetwork, create
from plugins.mastodon.publisher import MastodonPublisher
from tests.conftest import StartBot
from tests.fakes.mastodon_server import MastodonFake, plugin_config, plugin_env


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[MastodonFake]:
    async with MastodonFake() as server:
        yield server


@pytest_asyncio.fixture
async def net(fake: MastodonFake, tmp_path: Path) -> AsyncIterator[MastodonNetwork]:
    config = plugin_config(fake, timeout_s=0.5)
    ctx = PluginContext(
        "mastodon", config, HealthBook(SystemClock()), SystemClock(), True, str(tmp_path)
    )
    network = create(ctx)
    yield network
    await network.aclose()


def _publisher(net: MastodonNetwork) -> MastodonPublisher:
    assert isinstance(net.publisher, MastodonPublisher)
    return net.publisher


async def test_a_retry_after_a_lost_answer_does_not_post_twice(
    fake: MastodonFake, net: MastodonNetwork
) -> None:
    publisher = _publisher(net)
    fake.stall("/api/v1/statuses", 2.0, method="POST")  # posted, but the answer comes too late
    draft = Draft("Hello from the team")
    with pytest.raises(UpstreamError) as caught:
        await publisher.publish(draft, "starling-post:7:mastodon")
    assert caught.value.outcome is Outcome.TIMEOUT
    published = await publisher.publish(draft, "starling-post:7:mastodon")

    assert fake.created_via_api == [published.native_id]
    assert published.url == fake.statuses[published.native_id]["url"]
    keys = [r.headers.get("Idempotency-Key") for r in fake.requests if r.method == "POST"]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert keys[0] is not None
    assert "post:7" not in keys[0]  # derived, not Starling's key itself

    other = await publisher.publish(Draft("Another post"), "starling-post:8:mastodon")
    assert other.native_id != published.native_id
    assert len(fake.created_via_api) == 2


async def test_replies_quotes_and_content_warnings_reach_the_server(
    fake: MastodonFake, net: MastodonNetwork
) -> None:
    publisher = _publisher(net)
    parent = fake.post("mastodonpy_test_2", "What do you think?")
    reply = await publisher.publish(
        Draft("We agree", reply_to=parent["url"], content_warning="opinions"), "k-reply"
    )
    status = fake.statuses[reply.native_id]
    assert (status["in_reply_to_id"], status["spoiler_text"]) == (parent["id"], "opinions")

    elsewhere = fake.post("mastodonpy_test_2", "Quote me")
    elsewhere["url"] = "https://other.example/@someone/42"  # a post that lives on another server
    quote = await publisher.publish(Draft("Worth reading", quote_of=elsewhere["url"]), "k-quote")
    assert fake.statuses[quote.native_id]["quote"]["quoted_status"]["id"] == elsewhere["id"]
    assert any(
        r.query.get("resolve") == "true" for r in fake.requests if r.path == "/api/v2/search"
    )

    with pytest.raises(
        UserError, match=re.escape("cannot find the post https://nowhere.example/@x/1")
    ):
        await publisher.publish(Draft("Hm", reply_to="https://nowhere.example/@x/1"), "k-bad")
    assert publisher.account == "@mastodonpy_test@mastodon.example"


async def test_deleting_removes_the_status_and_a_second_delete_is_harmless(
    fake: MastodonFake, net: MastodonNetwork
) -> None:
    publisher = _publisher(net)
    published = await publisher.publish(Draft("Oops"), "k-undo")
    await publisher.delete(published.native_id)
    assert published.native_id not in fake.statuses
    await publisher.delete(published.native_id)
    deletes = [r for r in fake.requests if r.method == "DELETE"]
    assert [r.path for r in deletes] == [f"/api/v1/statuses/{published.native_id}"] * 2


async def test_too_long_is_caught_before_sending_and_refusals_are_one_line(
    fake: MastodonFake, net: MastodonNetwork
) -> None:
    publisher = _publisher(net)
    assert isinstance(publisher, Preparer)
    link = "https://example.com/" + "a" * 300
    assert publisher.prepare(Draft(f"A long link counts as 23: {link}")).problems == ()
    too_long = publisher.prepare(Draft("x" * 490, content_warning="spoilers ahead"))
    assert too_long.problems == ("504 characters; this server allows 500",)
    assert publisher.prepare(Draft("hi", content_warning="cw")).text == "CW: cw — hi"

    with pytest.raises(UserError) as caught:
        await publisher.publish(Draft("x" * 501), "k-long")
    assert str(caught.value).startswith("mastodon.example refused the post: ")
    assert "500" in str(caught.value)  # the server's own reason, as recorded
    assert fake.created_via_api == []


async def test_without_a_token_there_is_no_publisher(fake: MastodonFake, tmp_path: Path) -> None:
    config = plugin_config(fake, token=False)
    ctx = PluginContext(
        "mastodon", config, HealthBook(SystemClock()), SystemClock(), True, str(tmp_path)
    )
    network = create(ctx)
    assert network.publisher is None
    await network.aclose()


async def test_post_command_publishes_once_and_links_the_status(
    start_bot: StartBot, monkeypatch: pytest.MonkeyPatch, fake: MastodonFake
) -> None:
    for name, value in plugin_env(fake).items():
        monkeypatch.setenv(name, value)
    bot = await start_bot()
    assert isinstance(bot.app.networks["mastodon"].publisher, Publisher)
    answer = await bot.say("/post --to mastodon --cw tests Hello from the post-back workflow")
    [created] = fake.created_via_api
    assert fake.statuses[created]["url"] in answer
    assert fake.statuses[created]["spoiler_text"] == "tests"
