"""Replies and deletes, piece by piece: converters fill `reply_to_id`, the store's
retractions are idempotent, Jetstream deletes reach the chat, Slack refs name threads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bot.model import Author, ChannelRef, Filters, Post, RichMessage, Target, TargetKind
from bot.render import render
from bot.store.base import NewOutboxRow
from bot.store.sqlite import SqliteStore
from plugins.bluesky.convert import Links, from_record, from_view
from plugins.bluesky.lexicon import FeedViewPost, PostRecord, ProfileBasic
from plugins.mastodon.statuses import status_to_post
from plugins.slack.chat import message_ts, thread_root
from plugins.x.convert import to_posts
from tests.conftest import StartBot
from tests.fakes.jetstream import EventLog, FakeJetstream
from tests.test_bluesky_stream import (  # noqa: F401 - fixtures used by name
    ALICE,
    FakeAppView,
    _configure,
    appview,
    jetstreams,
)

DID = "did:plc:alicealicealicealice22"
PARENT = f"at://{DID}/app.bsky.feed.post/3lparentparent"
LINKS = Links(web_url="https://bsky.app", image_cdn="https://cdn.bsky.app")


# --- converters ------------------------------------------------------------------------


def _status(**fields: Any) -> dict[str, Any]:
    account = {"id": "1", "acct": "ada", "display_name": "Ada", "url": "https://m.example/@ada"}
    return {"id": "200", "content": "<p>hi</p>", "account": account, "visibility": "public",
            "url": "https://m.example/@ada/200", "created_at": "2026-01-01T00:00:00Z",
            **fields}  # fmt: skip


def test_a_mastodon_reply_names_its_parent_and_a_boost_does_not() -> None:
    reply = status_to_post(_status(in_reply_to_id="199"), network="mastodon", domain="m.example")
    assert reply is not None
    assert reply.reply_to_id == "199"
    assert reply.parent_uid == "mastodon:199"
    assert render(reply).reply_to == "mastodon:199"
    plain = status_to_post(_status(), network="mastodon", domain="m.example")
    assert plain is not None
    assert plain.reply_to_id == ""
    assert render(plain).reply_to == ""
    boost = status_to_post(
        _status(id="201", content="", reblog=_status(in_reply_to_id="150")),
        network="mastodon",
        domain="m.example",
    )
    assert boost is not None
    assert boost.is_repost
    assert boost.reply_to_id == ""


def test_a_bluesky_reply_names_its_parent_from_jetstream_and_from_a_feed() -> None:
    ref = {"uri": PARENT, "cid": "bafyparent"}
    record = PostRecord(text="me too", reply={"root": ref, "parent": ref})
    post = from_record("bluesky", DID, "3lchildchild22", record, ProfileBasic(did=DID), LINKS)
    assert post.reply_to_id == PARENT
    assert post.native_id == f"at://{DID}/app.bsky.feed.post/3lchildchild22"

    broken = PostRecord(text="odd", reply={"parent": "not a ref"})
    odd = from_record("bluesky", DID, "3lx", broken, ProfileBasic(did=DID), LINKS)
    assert odd.reply_to_id == ""

    view = {
        "post": {
            "uri": f"at://{DID}/app.bsky.feed.post/3lchildchild22",
            "cid": "bafychild",
            "author": {"did": DID, "handle": "alice.test"},
            "record": {"text": "me too", "createdAt": "2026-01-01T00:00:00Z",
                       "reply": {"root": ref, "parent": ref}},
            "indexedAt": "2026-01-01T00:00:00Z",
        }
    }  # fmt: skip
    item = msgspec.convert(view, FeedViewPost)
    assert from_view("bluesky", item, LINKS).reply_to_id == PARENT


def test_an_x_reply_names_the_first_id_of_its_parents_edit_history() -> None:
    body = {
        "data": [
            {"id": "1800000000000000002", "text": "yes", "author_id": "9",
             "referenced_tweets": [{"type": "replied_to", "id": "1800000000000000001"}]},
            {"id": "1800000000000000003", "text": "plain", "author_id": "9"},
        ],
        "includes": {
            "users": [{"id": "9", "username": "ada", "name": "Ada"}],
            "tweets": [{"id": "1800000000000000001", "text": "edited parent",
                        "edit_history_tweet_ids": ["1700000000000000000",
                                                   "1800000000000000001"]}],
        },
    }  # fmt: skip
    reply, plain = to_posts(body, "x")
    assert reply.reply_to_id == "1700000000000000000"
    assert plain.reply_to_id == ""


def test_slack_refs_of_replies_name_their_thread() -> None:
    assert message_ts("1.000200@1.000100") == "1.000200"
    assert thread_root("1.000200@1.000100") == "1.000100", "threads are one level deep"
    assert message_ts("1.000100") == thread_root("1.000100") == "1.000100"


# --- the store ---------------------------------------------------------------------------


async def test_retractions_are_queued_once_and_unknown_posts_do_nothing(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.open()
    try:
        channel = ChannelRef("test", "general")
        target = Target("feeds", TargetKind.ACCOUNT, "https://example.com/feed")
        sub, _ = await store.create_subscription(
            channel, target, Filters(), 60.0, "me", [], lambda s, c: [], None
        )
        resource = await store.find_resource(target)
        assert resource is not None
        cid = await store.ensure_channel(channel)

        def rows(fresh: set[str]) -> list[NewOutboxRow]:
            return [NewOutboxRow(cid, sub.id, uid, RichMessage(text=uid)) for uid in sorted(fresh)]

        sent, _waiting = await store.admit(resource.id, ["feeds:a", "feeds:b"], rows)
        await store.record_deliveries([(sent, "ref-a")])

        assert await store.retract(["feeds:unknown"]) == []
        (first,) = await store.retract(["feeds:a", "feeds:b"])
        assert (first.post_uid, first.message_ref, first.channel) == ("feeds:a", "ref-a", channel)
        assert [i.post_uid for i in await store.pending_outbox()] == [], "b is never sent"
        assert await store.retract(["feeds:a"]) == [], "a second report does nothing"
        assert await store.thread_ref(cid, "feeds:a") is None, "no thread under a removed post"
        assert [r.post_uid for r in await store.pending_retractions()] == ["feeds:a"]
        await store.settle_retraction(cid, "feeds:a", done=True)
        assert await store.pending_retractions() == []

        # A post sent while its delete arrived: the late delivery is retracted too.
        (late,) = await store.admit(resource.id, ["feeds:c"], rows)
        await store.retract(["feeds:c"])
        await store.record_deliveries([(late, "ref-c")])
        assert await store.thread_ref(cid, "feeds:c") == "ref-c"
        (again,) = await store.retract(["feeds:c", "feeds:never"], known_only=True)
        assert again.message_ref == "ref-c"
        assert await store.retract(["feeds:c"], known_only=True) == []

        # A row a sender holds in hand stays (its id must not be reused meanwhile).
        (held,) = await store.admit(resource.id, ["feeds:d"], rows)
        await store.retract(["feeds:d"], held={held.id})
        assert [i.post_uid for i in await store.pending_outbox()] == ["feeds:d"]
        await store.retract(["feeds:d"])
        assert await store.pending_outbox() == []
    finally:
        await store.close()


# --- Jetstream ----------------------------------------------------------------------------


async def test_a_jetstream_delete_marks_the_relayed_post(
    start_bot: StartBot,
    appview: FakeAppView,  # noqa: F811
    jetstreams: tuple[EventLog, list[FakeJetstream]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log, hosts = jetstreams
    _configure(monkeypatch, appview, hosts)
    bot = await start_bot()
    assert "as #1" in await bot.say("/follow bluesky alice.test --every 1h")
    async with asyncio.timeout(10):
        while not hosts[0].requests:
            await asyncio.sleep(0.01)
    await log.post(ALICE["did"], "3lzzzzzzzzz30", "Soon gone")
    await log.post(ALICE["did"], "3lzzzzzzzzz31", "Stays")
    await bot.chat.wait_for(2)
    await log.append(
        {"did": ALICE["did"], "kind": "commit",
         "commit": {"rev": "3lrev", "operation": "delete",
                    "collection": "app.bsky.feed.post", "rkey": "3lzzzzzzzzz30"}}
    )  # fmt: skip
    async with asyncio.timeout(5):
        while not bot.chat.sent[0].edits:
            await asyncio.sleep(0.01)
    # The test chat cannot delete, so the message is marked instead.
    assert "deleted upstream" in bot.chat.sent[0].edits[-1].text
    assert bot.chat.sent[1].edits == []


def test_a_post_model_without_a_parent_has_no_parent_uid() -> None:
    assert Post("x", "1", author=Author("a"), text="t").parent_uid == ""
