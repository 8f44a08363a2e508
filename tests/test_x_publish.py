"""Posting to X through the real plugin, with OAuth 1.0a signatures the fake verifies.

The fake checks every signature from RFC 5849 itself, so a wrong key or a
mangled request is refused just as X would refuse it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.errors import Outcome, UpstreamError, UserError
from bot.health import HealthBook
from bot.pluginstate import StateHub
from bot.protocols import Draft, DraftImage, PluginContext, Preparation, Preparer, Publisher
from bot.store import open_store
from plugins.x import XNetwork, create
from tests.fakes.image_server import PNG
from tests.fakes.x_server import USER_TOKEN, ShiftedClock, XServer, plugin_config, serving

Make = Callable[..., XNetwork]
CJK = "故"
RECORDED_MINE = "TweepyDev"


@pytest_asyncio.fixture
async def x_server() -> AsyncIterator[XServer]:
    async with serving() as server:
        yield server


@pytest_asyncio.fixture
async def make(x_server: XServer, tmp_path: Path) -> AsyncIterator[Make]:
    made: list[XNetwork] = []
    clock = ShiftedClock()
    # One database for every instance: a "restart" is a new plugin over the same store.
    store = await open_store(str(tmp_path / "starling.db"))
    hub = StateHub()
    hub.attach(store)

    def build(*, oauth1: bool = True, **options: Any) -> XNetwork:
        config = plugin_config(x_server, oauth1=oauth1, **options)
        ctx = PluginContext(
            "x", config, HealthBook(clock), clock, True, str(tmp_path), hub.for_plugin("x")
        )
        net = create(ctx)
        made.append(net)
        return net

    yield build
    for net in made:
        await net.aclose()
    await store.close()


def publisher(net: XNetwork) -> Publisher:
    assert net.publisher is not None
    return net.publisher


def mine(server: XServer, text: str) -> list[dict[str, Any]]:
    """Our account's posts made from exactly this text."""
    return [t for t in server.timeline(server.posting_user_id) if t.get("_submitted") == text]


async def test_a_post_is_signed_with_oauth1_and_published(make: Make, x_server: XServer) -> None:
    published = await publisher(make()).publish(Draft("Hello from Starling"), "key-1")
    [tweet] = mine(x_server, "Hello from Starling")
    assert published.native_id == tweet["id"]
    assert published.url == f"https://x.com/i/web/status/{tweet['id']}"
    assert x_server.oauth1_verified == 1
    [sent] = x_server.requests_to("POST", "/2/tweets")
    header = sent["headers"]["Authorization"]
    for param in ("oauth_consumer_key", "oauth_token", "oauth_nonce", "oauth_timestamp"):
        assert f'{param}="' in header
    assert 'oauth_signature_method="HMAC-SHA1"' in header
    assert json.loads(sent["body"]) == {"text": "Hello from Starling"}


async def test_a_wrong_secret_is_refused_and_nothing_is_posted(
    make: Make, x_server: XServer
) -> None:
    net = make(consumer_secret="not-the-real-secret")
    with pytest.raises(UpstreamError) as err:
        await publisher(net).publish(Draft("Should not appear"), "key-1")
    assert err.value.outcome is Outcome.AUTH
    assert err.value.status == 401
    assert "not-the-real-secret" not in str(err.value)
    assert mine(x_server, "Should not appear") == []
    assert x_server.oauth1_verified == 0


async def test_replies_and_quotes_name_their_post(make: Make, x_server: XServer) -> None:
    target = x_server.tweet("Twitter", "Original")["id"]
    pub = publisher(make())
    await pub.publish(Draft("A reply", reply_to=f"https://x.com/Twitter/status/{target}"), "reply")
    await pub.publish(Draft("A quote", quote_of=target), "quote")
    bodies = [json.loads(r["body"]) for r in x_server.requests_to("POST", "/2/tweets")]
    assert bodies == [
        {"text": "A reply", "reply": {"in_reply_to_tweet_id": target}},
        {"text": "A quote", "quote_tweet_id": target},
    ]
    [reply] = mine(x_server, "A reply")
    assert reply["referenced_tweets"] == [{"type": "replied_to", "id": target}]
    with pytest.raises(UserError, match="is not an X post"):
        await pub.publish(Draft("Bad", reply_to="https://mastodon.social/@a/1"), "bad")
    assert len(x_server.requests_to("POST", "/2/tweets")) == 2


async def test_prepare_shows_what_x_gets_and_names_every_problem(make: Make) -> None:
    pub = publisher(make())
    assert isinstance(pub, Preparer)
    fine = pub.prepare(Draft("Spoilers ahead", content_warning="film plot"))
    assert fine == Preparation("CW: film plot\n\nSpoilers ahead")
    bad = pub.prepare(Draft(CJK * 141, quote_of="https://example.com/status/1"))
    assert len(bad.problems) == 2
    assert "282 characters as X counts them" in bad.problems[0]
    assert "quote target" in bad.problems[1]


async def test_the_account_is_named_once_x_has_said_who_it_is(
    make: Make, x_server: XServer
) -> None:
    pub = publisher(make(timeout_s=0.5))
    assert pub.account == "OAuth 1.0a user"  # type: ignore[attr-defined]
    x_server.lose_next_create(stall_s=2.0)
    with pytest.raises(UpstreamError):
        await pub.publish(Draft("Who am I"), "whoami")
    await pub.publish(Draft("Who am I"), "whoami")
    assert pub.account == f"@{RECORDED_MINE}"  # type: ignore[attr-defined]


async def test_a_retry_after_a_lost_answer_does_not_post_twice(
    make: Make, x_server: XServer
) -> None:
    net = make(timeout_s=0.5)
    x_server.lose_next_create(stall_s=2.0)
    with pytest.raises(UpstreamError) as err:
        await publisher(net).publish(Draft("Posted once, answer lost"), "key-lost")
    assert err.value.outcome is Outcome.TIMEOUT
    [tweet] = mine(x_server, "Posted once, answer lost")

    again = await publisher(net).publish(Draft("Posted once, answer lost"), "key-lost")
    assert again.native_id == tweet["id"]
    assert again.url == f"https://x.com/{RECORDED_MINE}/status/{tweet['id']}"
    assert len(mine(x_server, "Posted once, answer lost")) == 1
    assert len(x_server.requests_to("POST", "/2/tweets")) == 1
    own = x_server.requests_to("GET", f"/2/users/{x_server.posting_user_id}/tweets")
    assert "start_time" in own[0]["query"]

    # After a restart the journal in the database still knows the key.
    restarted = make(timeout_s=0.5)
    third = await publisher(restarted).publish(Draft("Posted once, answer lost"), "key-lost")
    assert third.native_id == tweet["id"]
    assert len(x_server.requests_to("POST", "/2/tweets")) == 1


async def test_a_lost_answer_after_a_restart_is_found_by_reading_back(
    make: Make, x_server: XServer
) -> None:
    x_server.lose_next_create(stall_s=2.0)
    with pytest.raises(UpstreamError):
        await publisher(make(timeout_s=0.5)).publish(
            Draft("Link https://example.com/a?b=1&c=2 & more"), "key-restart"
        )
    [stored] = mine(x_server, "Link https://example.com/a?b=1&c=2 & more")
    assert stored["text"].startswith("Link https://t.co/"), "X rewrote the text"
    assert stored["text"].endswith(" &amp; more")
    restarted = make(timeout_s=0.5)
    found = await publisher(restarted).publish(
        Draft("Link https://example.com/a?b=1&c=2 & more"), "key-restart"
    )
    assert len(x_server.requests_to("POST", "/2/tweets")) == 1
    assert found.native_id == stored["id"]


async def test_the_old_post_journal_file_is_imported_once(
    make: Make, x_server: XServer, tmp_path: Path
) -> None:
    published = await publisher(make()).publish(Draft("Already out"), "key-old")
    old = tmp_path / "x-posts.json"
    entry = {"text": "Already out", "started": time.time(), "id": published.native_id}
    old.write_text(json.dumps({"key-legacy": entry}), encoding="utf-8")
    again = await publisher(make()).publish(Draft("Already out"), "key-legacy")
    assert again.native_id == published.native_id, "the old file's record was used"
    assert len(x_server.requests_to("POST", "/2/tweets")) == 1
    assert not old.exists()
    assert (tmp_path / "x-posts.json.imported").exists()


async def test_a_lagging_read_back_is_caught_by_xs_duplicate_check(
    make: Make, x_server: XServer
) -> None:
    pub = publisher(make(timeout_s=0.5))
    x_server.lose_next_create(stall_s=2.0)
    with pytest.raises(UpstreamError):
        await pub.publish(Draft("Indexed late"), "key-lag")
    x_server.lag_timelines(1)
    found = await pub.publish(Draft("Indexed late"), "key-lag")
    [tweet] = mine(x_server, "Indexed late")
    assert found.native_id == tweet["id"]
    assert len(x_server.requests_to("POST", "/2/tweets")) == 2, "X refused the second"


async def test_a_retry_after_a_refused_post_posts_it(make: Make, x_server: XServer) -> None:
    pub = publisher(make())
    x_server.fail("POST", "/2/tweets", 503)
    with pytest.raises(UpstreamError) as err:
        await pub.publish(Draft("Second time lucky"), "key-503")
    assert err.value.outcome is Outcome.HTTP_5XX
    assert mine(x_server, "Second time lucky") == []
    published = await pub.publish(Draft("Second time lucky"), "key-503")
    [tweet] = mine(x_server, "Second time lucky")
    assert published.native_id == tweet["id"]


async def test_a_different_key_with_the_same_text_is_a_new_post(
    make: Make, x_server: XServer
) -> None:
    pub = publisher(make())
    await pub.publish(Draft("Same words"), "first")
    with pytest.raises(UpstreamError) as err:
        await pub.publish(Draft("Same words"), "second")
    assert "duplicate content" in str(err.value), "X itself refuses a duplicate"
    assert err.value.outcome is Outcome.HTTP_4XX, "about this post, not the credentials"
    assert len(mine(x_server, "Same words")) == 1


@pytest.mark.parametrize(
    ("text", "fits"),
    [
        ("a" * 280, True),
        ("a" * 281, False),
        (CJK * 140, True),
        (CJK * 141, False),
        ("\U0001f600" * 140, True),
        ("\U0001f600" * 141, False),
        ("https://example.com/" + "x" * 300 + " " + "a" * 256, True),
        ("https://example.com/ " + "a" * 257, False),
    ],
)
async def test_posts_are_measured_as_x_counts(
    make: Make, x_server: XServer, text: str, fits: bool
) -> None:
    pub = publisher(make())
    if fits:
        await pub.publish(Draft(text), "len")
        assert len(x_server.requests_to("POST", "/2/tweets")) == 1
    else:
        with pytest.raises(UserError, match="the limit is 280"):
            await pub.publish(Draft(text), "len")
        assert x_server.requests == []


async def test_delete_removes_the_post(make: Make, x_server: XServer) -> None:
    pub = publisher(make())
    published = await pub.publish(Draft("Short-lived"), "key-del")
    await pub.delete(published.native_id)
    assert mine(x_server, "Short-lived") == []
    with pytest.raises(UpstreamError):
        await pub.delete(published.native_id)


async def test_an_oauth2_user_token_can_post_too(make: Make, x_server: XServer) -> None:
    net = make(oauth1=False, user_token=USER_TOKEN)
    await publisher(net).publish(Draft("Posted with a user token"), "key-o2")
    [sent] = x_server.requests_to("POST", "/2/tweets")
    assert sent["headers"]["Authorization"] == f"Bearer {USER_TOKEN}"
    assert len(mine(x_server, "Posted with a user token")) == 1
    assert any("OAuth 2.0 user token" in line for line in net.status_lines())


async def test_without_user_credentials_there_is_no_publisher(make: Make) -> None:
    assert make(oauth1=False).publisher is None


async def test_the_24_hour_posting_limit_holds_posts_until_it_resets(
    make: Make, x_server: XServer
) -> None:
    pub = publisher(make())
    reset = int(time.time()) + 3600
    x_server.fail(
        "POST",
        "/2/tweets",
        429,
        headers={"x-user-limit-24hour-remaining": "0", "x-user-limit-24hour-reset": str(reset)},
    )
    for _ in range(2):
        with pytest.raises(UpstreamError) as err:
            await pub.publish(Draft("Too many today"), "daily")
        assert err.value.outcome is Outcome.RATE_LIMITED
        assert err.value.retry_after_s is not None
        assert 3590 < err.value.retry_after_s <= 3600
    assert len(x_server.requests_to("POST", "/2/tweets")) == 1
    assert x_server.requests_to("GET", "/2/users/me") == [], "no reads while posting is held"


def picture(alt: str = "", data: bytes = PNG) -> DraftImage:
    """An image as the post-back hands it over: already downloaded."""
    return DraftImage("https://pictures.example/cat.png", alt, data, "image/png")


async def test_images_are_uploaded_with_their_alt_text_and_attached(
    make: Make, x_server: XServer
) -> None:
    draft = Draft("Two cats", images=(picture("A cat asleep"), picture()))
    published = await publisher(make()).publish(draft, "key-img")

    [tweet] = mine(x_server, "Two cats")
    assert published.native_id == tweet["id"]
    uploads = list(x_server.uploads.items())
    assert [(u["data"], u["category"], u["alt_text"]) for _, u in uploads] == [
        (PNG, "tweet_image", "A cat asleep"),
        (PNG, "tweet_image", ""),
    ]
    assert all(u["tweet_id"] == tweet["id"] for _, u in uploads)
    [sent] = x_server.requests_to("POST", "/2/tweets")
    assert json.loads(sent["body"]) == {
        "text": "Two cats",
        "media": {"media_ids": [media_id for media_id, _ in uploads]},
    }
    assert [x_server.media[k]["alt_text"] for k in tweet["attachments"]["media_keys"]] == [
        "A cat asleep",
        "",
    ]
    # Every media request was signed (OAuth 1.0a, body left out of the signature) and
    # only the described picture got a metadata call.
    assert len(x_server.requests_to("POST", "/2/media/upload")) == 2
    assert len(x_server.requests_to("POST", "/2/media/metadata")) == 1
    assert x_server.oauth1_verified == 4


async def test_a_retry_with_images_finds_the_post_and_uploads_nothing_more(
    make: Make, x_server: XServer
) -> None:
    net = make(timeout_s=0.5)
    draft = Draft("A cat, answer lost", images=(picture("A cat"),))
    x_server.lose_next_create(stall_s=2.0)
    with pytest.raises(UpstreamError):
        await publisher(net).publish(draft, "key-img-lost")
    [tweet] = mine(x_server, "A cat, answer lost")

    again = await publisher(make(timeout_s=0.5)).publish(draft, "key-img-lost")
    assert again.native_id == tweet["id"]
    assert len(x_server.requests_to("POST", "/2/tweets")) == 1
    assert len(x_server.requests_to("POST", "/2/media/upload")) == 1


async def test_a_failed_upload_posts_nothing_and_a_retry_uploads_again(
    make: Make, x_server: XServer
) -> None:
    pub = publisher(make())
    draft = Draft("A cat, second try", images=(picture("A cat"),))
    x_server.fail("POST", "/2/media/upload", 503)
    with pytest.raises(UpstreamError) as err:
        await pub.publish(draft, "key-img-503")
    assert err.value.outcome is Outcome.HTTP_5XX
    assert x_server.requests_to("POST", "/2/tweets") == []

    published = await pub.publish(draft, "key-img-503")
    [tweet] = mine(x_server, "A cat, second try")
    assert published.native_id == tweet["id"]
    [upload] = x_server.uploads.values()
    assert (upload["alt_text"], upload["tweet_id"]) == ("A cat", tweet["id"])


async def test_what_x_would_refuse_about_images_is_said_before_sending(
    make: Make, x_server: XServer
) -> None:
    pub = publisher(make())
    assert isinstance(pub, Preparer)
    bad = pub.prepare(Draft("Cats", images=(picture("a" * 1001),) * 5))
    assert bad.problems[0] == "X takes at most 4 images; this post has 5"
    assert "alt text of image 1 is 1001 characters; X takes at most 1000" in bad.problems[1]
    with pytest.raises(UserError, match="X refused image 1"):
        await pub.publish(Draft("Not a picture", images=(picture(data=b"<html>"),)), "k-html")
    assert x_server.requests_to("POST", "/2/tweets") == []
