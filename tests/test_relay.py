"""The relay as a channel sees it: follow a feed, new items arrive once, in order."""

from __future__ import annotations

import asyncio

from bot.errors import ChatError
from bot.testing import RecordingChat
from tests.conftest import StartBot
from tests.feedserver import FeedServer


async def test_follow_starts_from_now_then_relays_new_items_once(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("news")
    for _ in range(5):
        feed.add_item()
    bot = await start_bot()
    answer = await bot.say(f"/follow feeds {feed_server.feed_url('news')}")
    assert "as #1" in answer
    await bot.poll_all()
    assert bot.chat.sent == [], "a new subscription must not flood the channel with history"

    feed.add_item(title="Fresh news", content="<p>Hello <b>team</b></p>")
    await bot.poll_all()
    await bot.poll_all()
    assert [s.message.title for s in bot.chat.sent] == ["Fresh news"]
    assert bot.chat.sent[0].message.text == "Hello team"
    assert bot.chat.sent[0].channel.native_id == "general"


async def test_last_n_posts_the_newest_items_oldest_first(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("news")
    for n in range(5):
        feed.add_item(title=f"Item {n}")
    bot = await start_bot()
    answer = await bot.say(f"/follow rss {feed_server.feed_url('news')} --last 2")
    assert "Posting the newest 2 now" in answer
    await bot.app.dispatcher.drain()
    assert [s.message.title for s in bot.chat.sent] == ["Item 3", "Item 4"]


async def test_an_edited_item_edits_the_message_instead_of_posting_again(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("news", kind="atom")
    bot = await start_bot()
    await bot.say(f"/follow feeds {feed_server.feed_url('news')}")
    item = feed.add_item(title="Original")
    await bot.poll_all()
    feed.update_item(item.guid, title="Original (corrected)", content="<p>changed</p>")
    await bot.poll_all()
    await asyncio.sleep(0.1)  # edits are applied in the background
    assert [s.message.title for s in bot.chat.sent] == ["Original"]
    assert [e.title for e in bot.chat.sent[0].edits] == ["Original (corrected)"]
    await bot.poll_all()
    await asyncio.sleep(0.1)
    assert len(bot.chat.sent[0].edits) == 1, "an unchanged item is not edited again"


async def test_one_fetch_per_feed_however_many_channels_follow_it(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("shared")
    bot = await start_bot()
    url = feed_server.feed_url("shared")
    for channel in ("alpha", "beta", "gamma"):
        assert "as #" in await bot.say(f"/follow feeds {url}", channel=channel)
    before = feed_server.hits["/feeds/shared"]
    feed.add_item(title="For everyone")
    await bot.poll_all()
    assert feed_server.hits["/feeds/shared"] == before + 1
    assert sorted(s.channel.native_id for s in bot.chat.sent) == ["alpha", "beta", "gamma"]


async def test_unchanged_feed_is_fetched_conditionally(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("quiet")
    feed.add_item()
    bot = await start_bot()
    await bot.say(f"/follow feeds {feed_server.feed_url('quiet')}")
    await bot.poll_all()
    headers = feed_server.last_headers["/feeds/quiet"]
    assert headers.get("If-None-Match") == feed.rendered().etag
    assert bot.chat.sent == []


async def test_same_post_through_two_feeds_reaches_a_channel_once(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    # Two addresses for one feed document: same items, same guids.
    feed = feed_server.add_feed("twin")
    bot = await start_bot()
    await bot.say(f"/follow feeds {feed_server.feed_url('twin')}")
    await bot.say(f"/follow feeds {feed_server.url('/gzip/twin')}")
    feed.add_item(guid="same-guid", title="Seen twice upstream")
    await bot.poll_all()
    assert [s.message.title for s in bot.chat.sent] == ["Seen twice upstream"]


async def test_filters_choose_what_a_channel_sees(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("mixed")
    bot = await start_bot()
    url = feed_server.feed_url("mixed")
    await bot.say(f"/follow feeds {url} --include python --exclude hiring", channel="py")
    await bot.say(f'/follow feeds {url} --regex "^Release [0-9]+"', channel="rel")
    feed.add_item(title="Python 4 announced")
    feed.add_item(title="Python shop hiring")
    feed.add_item(title="Release 12 is out")
    feed.add_item(title="Unrelated")
    await bot.poll_all()
    assert [s.message.title for s in bot.chat.in_channel("py")] == ["Python 4 announced"]
    assert [s.message.title for s in bot.chat.in_channel("rel")] == ["Release 12 is out"]


async def test_cursor_waits_for_delivery_and_nothing_is_lost_while_chat_fails(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("news")
    chat = RecordingChat()
    bot = await start_bot(chat)
    await bot.say(f"/follow feeds {feed_server.feed_url('news')}")
    state = next(iter(bot.app.scheduler.states.values()))
    cursor_before = state.stored_cursor

    chat.fail_with = ChatError("chat is down")
    feed.add_item(title="During the chat outage")
    await bot.app.relay.poll(state)
    await asyncio.sleep(0.2)
    assert chat.sent == []
    assert await bot.app.store.outbox_depth() == 1
    assert state.stored_cursor == cursor_before, "cursor moved before delivery was recorded"

    chat.fail_with = None
    await chat.wait_for(1, within_s=15)
    await asyncio.wait([state.advance]) if state.advance else None
    assert [s.message.title for s in chat.sent] == ["During the chat outage"]
    assert state.stored_cursor != cursor_before
    assert await bot.app.store.outbox_depth() == 0


async def test_restart_repeats_nothing_and_resumes_the_outbox(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("news")
    chat = RecordingChat()
    bot = await start_bot(chat)
    await bot.say(f"/follow feeds {feed_server.feed_url('news')}")
    feed.add_item(title="Before restart")
    await bot.poll_all()
    chat.fail_with = ChatError("down")
    feed.add_item(title="Queued at shutdown")
    await bot.app.relay.poll(next(iter(bot.app.scheduler.states.values())))
    await bot.stop()

    chat2 = RecordingChat()
    chat2._by_key.update(chat._by_key)  # the platform remembers what it was sent
    bot2 = await start_bot(chat2)
    await chat2.wait_for(1)
    await bot2.poll_all()
    assert [s.message.title for s in chat.sent] == ["Before restart"]
    assert [s.message.title for s in chat2.sent] == ["Queued at shutdown"]


async def test_scheduler_polls_on_its_own(start_bot: StartBot, feed_server: FeedServer) -> None:
    feed = feed_server.add_feed("live")
    bot = await start_bot()
    await bot.say(f"/follow feeds {feed_server.feed_url('live')} --every 0.3s")
    feed.add_item(title="Arrives by itself")
    await bot.chat.wait_for(1, within_s=5)
    assert bot.chat.sent[0].message.title == "Arrives by itself"


async def test_failing_feed_backs_off_and_shows_in_status(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("flaky")
    bot = await start_bot()
    await bot.say(f"/follow feeds {feed_server.feed_url('flaky')} --every 0.2s")
    del feed_server.feeds["flaky"]  # now answers 404
    await asyncio.sleep(1.5)
    hits = feed_server.hits["/feeds/flaky"]
    assert 2 <= hits <= 5, f"expected exponential backoff, got {hits} requests in 1.5 s"
    status = await bot.say("/status")
    assert "failures in a row" in status
    assert "http_4xx 404" in status
    assert feed is not None


async def test_a_burst_becomes_a_digest_and_every_post_is_listed_once(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("busy")
    bot = await start_bot(digest_threshold=20, digest_max_items=25)
    await bot.say(f"/follow feeds {feed_server.feed_url('busy')}")
    for n in range(30):
        feed.add_item(title=f"Burst {n:02d}")
    await bot.poll_all()
    sent = bot.chat.sent
    assert sent[0].message.title == "25 new posts"
    assert len(sent) == 1 + 5, "the 5 left after one digest are below the threshold"
    shown = "\n".join(s.message.text + "\n" + s.message.title for s in sent)
    for n in range(30):
        assert shown.count(f"Burst {n:02d}") == 1, n
    assert await bot.app.store.outbox_depth() == 0


async def test_numbered_items_of_two_feeds_do_not_hide_each_other(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    bot = await start_bot()
    one = feed_server.add_feed("one")
    other = feed_server.add_feed("other")
    await bot.say(f"/follow feeds {feed_server.feed_url('one')}")
    # The same server under another name: a different host, as two sites would be.
    await bot.say(
        f"/follow feeds {feed_server.feed_url('other').replace('127.0.0.1', 'localhost')}"
    )
    one.add_item(guid="1", title="First of one")
    other.add_item(guid="1", title="First of other")
    await bot.poll_all()
    assert sorted(s.message.title for s in bot.chat.sent) == ["First of one", "First of other"]


async def test_a_refused_channel_pauses_its_subscription_until_resumed(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("news")
    chat = RecordingChat()
    bot = await start_bot(chat)
    await bot.say(f"/follow feeds {feed_server.feed_url('news')}", channel="gone")
    await bot.say(f"/follow feeds {feed_server.feed_url('news')}", channel="fine")
    chat.fail_with = None
    original_send = chat.send

    async def send(channel, message, key):  # type: ignore[no-untyped-def]
        if channel.native_id == "gone":
            raise ChatError("channel_not_found", permanent=True)
        return await original_send(channel, message, key)

    chat.send = send  # type: ignore[method-assign]
    feed.add_item(title="First")
    await bot.poll_all()
    assert [s.channel.native_id for s in chat.sent] == ["fine"], "other channels keep flowing"
    assert "PAUSED: channel_not_found" in await bot.say("/list", channel="gone")

    chat.send = original_send  # type: ignore[method-assign]
    assert (await bot.say("/resume 1", channel="gone")).startswith("Resumed #1")
    await bot.app.dispatcher.drain()
    assert sorted(s.channel.native_id for s in chat.sent) == ["fine", "gone"]
