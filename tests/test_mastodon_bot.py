"""A whole Starling with the Mastodon plugin loaded from its entry point, against the fake.

What a channel sees: boosts, replies, content warnings, media, quotes, custom
emoji; statuses streamed live; and after the stream drops, nothing missed and
nothing shown twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.errors import Outcome
from bot.testing import RecordingChat, Sent
from tests.conftest import RunningBot, StartBot
from tests.fakes.mastodon_server import MastodonFake, plugin_env


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[MastodonFake]:
    async with MastodonFake() as server:
        yield server


async def _bot(
    start_bot: StartBot, monkeypatch: pytest.MonkeyPatch, fake: MastodonFake, **options: object
) -> RunningBot:
    for name, value in plugin_env(fake, **options).items():
        monkeypatch.setenv(name, value)
    return await start_bot(RecordingChat())


def _texts(sent: list[Sent]) -> list[str]:
    """Relayed statuses (a stream refused for a while now earns an outage notice: skipped)."""
    return [s.message.text for s in sent if not s.message.title.startswith("Outage")]


async def test_boosts_replies_warnings_media_quotes_and_emoji_read_well_in_chat(
    start_bot: StartBot, monkeypatch: pytest.MonkeyPatch, fake: MastodonFake
) -> None:
    bot = await _bot(start_bot, monkeypatch, fake, token=False)
    reply = "/follow mastodon @mastodonpy_test@mastodon.example --every 1h"
    assert "Following @mastodonpy_test@mastodon.example on mastodon as #1" in await bot.say(reply)
    await bot.say("/follow mastodon @mastodonpy_test --no-replies --no-reposts --every 1h", "quiet")

    original = fake.post("mastodonpy_test_2", "Original thought by the second account")
    fake.boost("mastodonpy_test", original["id"])
    fake.post("mastodonpy_test", "@mastodonpy_test_2 I agree", reply_to=original["id"])
    fake.post("mastodonpy_test", "The film ends well", spoiler_text="Film spoilers")
    fake.post("mastodonpy_test", "Look at this", media=[("image", "A cat on a keyboard"),
                                                        ("video", "")])  # fmt: skip
    fake.post("mastodonpy_test", "So true", quote_of=original["id"])
    fake.post("mastodonpy_test", "Party :blobcat: #python time", emojis=["blobcat"])
    fake.post("mastodonpy_test", "for my followers only", visibility="private")
    await bot.poll_all()

    general = bot.chat.in_channel("general")
    assert len(general) == 6
    boost, answer, warned, pictures, quote, party = (s.message for s in general)
    assert boost.author == "mastodonpy_test_2@mastodon.example"  # no display name: the acct
    assert boost.title == "Boosted by John Lennon (@mastodonpy_test@mastodon.example)"
    assert boost.text == "Original thought by the second account"
    assert boost.link == original["url"]
    assert answer.text == "@mastodonpy_test_2 I agree"  # the mention, without its URL
    assert answer.author == "John Lennon"
    assert warned.text.startswith("CW: Film spoilers\n\nThe film ends well")
    assert [(i.url.rsplit("/", 1)[-1], i.alt) for i in pictures.images] == [
        ("febce6fa7c3564f8.jpg", "A cat on a keyboard")
    ]
    assert "[video]" in pictures.text
    assert quote.text.startswith("So true\n\nQuoting mastodonpy_test_2@mastodon.example")
    assert "Original thought by the second account" in quote.text
    assert party.text == "Party :blobcat: #python time"
    assert "for my followers only" not in " ".join(_texts(bot.chat.sent))

    quiet = _texts(bot.chat.in_channel("quiet"))
    assert "@mastodonpy_test_2 I agree" not in quiet
    assert "Original thought by the second account" not in quiet
    assert len(quiet) == 4


async def test_a_status_is_streamed_live_and_a_drop_loses_nothing(
    start_bot: StartBot, monkeypatch: pytest.MonkeyPatch, fake: MastodonFake
) -> None:
    bot = await _bot(start_bot, monkeypatch, fake)
    # Polling is an hour away: whatever arrives below came through the stream.
    assert "as #1" in await bot.say("/follow mastodon #python --every 1h")
    await fake.wait_subscribed("hashtag", "python")

    fake.post("mastodonpy_test_2", "Live one #python")
    await bot.chat.wait_for(1, within_s=5)

    fake.streaming_available = False
    fake.drop_streams()
    fake.post("mastodonpy_test_2", "Posted while the stream was down #python")
    await asyncio.sleep(0.2)  # the client retries and is refused meanwhile
    fake.streaming_available = True
    await fake.wait_subscribed("hashtag", "python")
    await bot.chat.wait_for(2, within_s=5)  # the reconnect's REST backfill

    fake.post("mastodonpy_test_2", "Live again #python")
    await bot.chat.wait_for(3, within_s=5)
    await asyncio.sleep(0.3)
    assert _texts(bot.chat.sent) == [
        "Live one #python",
        "Posted while the stream was down #python",
        "Live again #python",
    ]
    stream_host = bot.app.health.hosts[("mastodon", f"127.0.0.1:{fake.port}")]
    assert stream_host.counts[Outcome.STREAM_DROPPED] >= 1
    assert stream_host.counts[Outcome.HTTP_5XX] >= 1  # the refused reconnects
    assert fake.stream_connections >= 2
    assert "live: mastodon.example streaming from 127.0.0.1" in await bot.say("/status")


async def test_followed_accounts_stream_through_the_local_timeline(
    start_bot: StartBot, monkeypatch: pytest.MonkeyPatch, fake: MastodonFake
) -> None:
    bot = await _bot(start_bot, monkeypatch, fake)
    assert "as #1" in await bot.say("/follow mastodon @mastodonpy_test_2 --every 1h")
    assert "as #2" in await bot.say("/follow mastodon #hoot --every 1h", "tags")
    await fake.wait_subscribed("public:local")
    await fake.wait_subscribed("hashtag", "hoot")

    fake.post("mastodonpy_test", "Not followed, not relayed")
    fake.post("mastodonpy_test_2", "Another #hoot")
    await bot.chat.wait_for(2, within_s=5)
    await asyncio.sleep(0.3)
    assert [(s.channel.native_id, s.message.text) for s in bot.chat.sent] == [
        ("general", "Another #hoot"),
        ("tags", "Another #hoot"),
    ]


async def test_without_a_token_nothing_streams_and_polling_still_relays(
    start_bot: StartBot, monkeypatch: pytest.MonkeyPatch, fake: MastodonFake
) -> None:
    bot = await _bot(start_bot, monkeypatch, fake, token=False)
    assert "as #1" in await bot.say("/follow mastodon #python --every 0.2s")
    fake.post("mastodonpy_test_2", "Polled #python")
    await bot.chat.wait_for(1, within_s=5)
    assert _texts(bot.chat.sent) == ["Polled #python"]
    assert fake.stream_connections == 0
    status = await bot.say("/status")
    assert "mastodon: up — 1 host" in status
    assert "live: polling only (no token, so no streaming)" in status


async def test_the_token_never_reaches_the_logs(
    start_bot: StartBot,
    monkeypatch: pytest.MonkeyPatch,
    fake: MastodonFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bot = await _bot(start_bot, monkeypatch, fake)
    await bot.say("/follow mastodon #python --every 0.2s")
    await fake.wait_subscribed("hashtag", "python")
    fake.post("mastodonpy_test_2", "Logged #python")
    await bot.chat.wait_for(1, within_s=5)
    await bot.say("/status")
    assert "Authorization: [redacted]" in caplog.text  # the handshake was logged…
    assert fake.token not in caplog.text  # …without the token
