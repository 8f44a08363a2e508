"""Items the relay already admitted are not rebuilt on the next poll, and that never
changes what a channel sees."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bot.known import KnownPosts, is_placeholder, pack
from plugins.feeds.parse import parse_feed
from tests.conftest import StartBot
from tests.feedserver import FeedServer

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "feeds"


def test_known_items_come_back_as_placeholders_and_new_ones_whole() -> None:
    body = (FIXTURES / "rss20.xml").read_bytes()
    full = parse_feed(body, url="https://example.com/feed", network="feeds").posts
    known = KnownPosts(pack(full[:1]))
    again = parse_feed(body, url="https://example.com/feed", network="feeds", known=known).posts
    assert [p.uid for p in again] == [p.uid for p in full]
    assert is_placeholder(again[0])
    assert again[0].title == ""
    assert (again[0].created_at, again[0].edited_at) == (full[0].created_at, full[0].edited_at)
    assert again[1:] == full[1:]


def test_an_edited_item_is_rebuilt_even_when_its_id_is_known() -> None:
    body = (FIXTURES / "atom10.xml").read_bytes()
    full = parse_feed(body, url="https://example.com/feed").posts
    stale = list(full)
    # Known with another version (as before an upstream edit): not a placeholder.
    stale[0] = replace(full[0], edited_at=datetime(2001, 1, 1, tzinfo=UTC))
    again = parse_feed(body, url="https://example.com/feed", known=KnownPosts(pack(stale))).posts
    assert again[0] == full[0]


def test_items_identified_by_their_text_are_always_rebuilt() -> None:
    body = (FIXTURES / "rss20_no_guid.xml").read_bytes()
    full = parse_feed(body, url="https://example.com/feed").posts
    again = parse_feed(body, url="https://example.com/feed", known=KnownPosts(pack(full))).posts
    assert all(p.native_id.startswith("hash:") == (not is_placeholder(p)) for p in again)


async def test_new_items_arrive_whole_while_old_ones_are_skipped(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("news")
    for n in range(3):
        feed.add_item(title=f"Old {n}")
    bot = await start_bot()
    await bot.say(f"/follow feeds {feed_server.feed_url('news')}")
    for n in range(3):
        feed.add_item(title=f"New {n}", content=f"<p>Body <b>{n}</b></p>")
        await bot.poll_all()
    assert [(s.message.title, s.message.text) for s in bot.chat.sent] == [
        (f"New {n}", f"Body {n}") for n in range(3)
    ]


async def test_a_known_item_missing_from_the_store_is_fetched_again_whole(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    feed = feed_server.add_feed("news")
    feed.add_item(title="First", content="<p>one</p>")
    bot = await start_bot()
    await bot.say(f"/follow feeds {feed_server.feed_url('news')}")
    feed.add_item(title="Second", content="<p>two</p>")
    await bot.poll_all()
    assert [s.message.title for s in bot.chat.sent] == ["Second"]
    [state] = bot.app.scheduler.states.values()
    assert state.known, "the relay remembers what it admitted"

    # The dedupe rows vanish behind the relay's back (as if pruned): the relay still
    # believes "Second" is known, so the next fetch returns it as a placeholder.
    db_file = bot.app.store.path  # type: ignore[attr-defined]
    with closing(sqlite3.connect(db_file)) as db, db:
        db.execute("DELETE FROM seen WHERE key LIKE '%'")
        db.execute("DELETE FROM deliveries")
    feed.add_item(title="Third", content="<p>three</p>")
    await bot.poll_all()

    # Exactly what the code did before placeholders existed: every item the store
    # does not know is posted, whole.
    titles = [(s.message.title, s.message.text) for s in bot.chat.sent]
    assert titles[0] == ("Second", "two")
    assert sorted(titles[1:]) == [("First", "one"), ("Second", "two"), ("Third", "three")]
