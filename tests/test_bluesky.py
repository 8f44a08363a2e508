"""Bluesky plugin, fast part: input parsing, record keys, rich text, post conversion.

Conversion runs on payloads recorded from a real AppView and PDS (the
@atproto/dev-env network, see tests/fixtures/bluesky/README.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

from bot.clock import SystemClock
from bot.errors import Outcome, UserError
from bot.health import HealthBook
from bot.protocols import Draft, PluginContext
from bot.render import render
from plugins.bluesky import BlueskyNetwork, BlueskySettings, create
from plugins.bluesky.convert import Links, from_record, from_view
from plugins.bluesky.cursor import Position, decode, encode
from plugins.bluesky.ids import actor_from_input, post_ref_from_input, tid_from_key
from plugins.bluesky.lexicon import AuthorFeed, JetstreamEvent, ProfileBasic, SearchResult
from plugins.bluesky.publisher import BlueskyPublisher
from plugins.bluesky.richtext import check_length, find_spans, grapheme_count, to_facets
from plugins.bluesky.xrpc import classify

FIXTURES = Path(__file__).parent / "fixtures" / "bluesky"
LINKS = Links("https://bsky.app", "https://cdn.bsky.app")
TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


@pytest.mark.parametrize(
    ("typed", "actor"),
    [
        ("@alice.bsky.social", "alice.bsky.social"),
        ("Alice.BSKY.social", "alice.bsky.social"),
        ("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "did:plc:ewvi7nxzyoun6zhxrhs64oiz"),
        ("did:web:example.com", "did:web:example.com"),
        ("https://bsky.app/profile/alice.bsky.social", "alice.bsky.social"),
        ("<https://bsky.app/profile/did:plc:ewvi7nxzyoun6zhxrhs64oiz/post/3k>",
         "did:plc:ewvi7nxzyoun6zhxrhs64oiz"),
    ],
)  # fmt: skip
def test_follow_input_forms(typed: str, actor: str) -> None:
    assert actor_from_input(typed) == actor


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("alice", "give the full handle, like @alice.bsky.social"),
        ("did:plc:short", "not a valid DID"),
        ("https://example.com/users/alice", "not a Bluesky profile"),
        ("al ice.bsky.social", "not a Bluesky handle"),
    ],
)
def test_bad_follow_input_gets_one_clear_line(typed: str, says: str) -> None:
    with pytest.raises(UserError) as err:
        actor_from_input(typed)
    assert says in str(err.value)
    assert "\n" not in str(err.value)


def test_post_references() -> None:
    did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
    assert post_ref_from_input(f"at://{did}/app.bsky.feed.post/3kabc") == (did, "3kabc")
    link = "https://bsky.app/profile/bob.test/post/3kxyz"
    assert post_ref_from_input(link) == ("bob.test", "3kxyz")
    with pytest.raises(UserError, match="not a post"):
        post_ref_from_input(f"at://{did}/app.bsky.feed.like/3kabc")


def test_record_key_is_a_tid_derived_only_from_the_idempotency_key() -> None:
    keys = [f"starling:{n}:post" for n in range(2000)]
    rkeys = [tid_from_key(k) for k in keys]
    assert all(TID.match(r) for r in rkeys)
    assert len(set(rkeys)) == len(keys)
    assert tid_from_key("starling:7:post") == tid_from_key("starling:7:post")


def test_facets_use_utf8_byte_offsets() -> None:
    text = "Grüße 🎉 — see https://example.com/ä?x=1. and #café, with @bob.test!"
    spans, mentions = find_spans(text)
    facets = to_facets(text, spans)
    raw = text.encode("utf-8")
    found = {
        raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(): f["features"][0]
        for f in facets
    }
    assert found["https://example.com/ä?x=1"]["uri"] == "https://example.com/ä?x=1"
    assert found["#café"] == {"$type": "app.bsky.richtext.facet#tag", "tag": "café"}
    assert [(text[s:e], h) for s, e, h in mentions] == [("@bob.test", "bob.test")]
    # The link starts after 6 non-ASCII bytes' worth of shift: offsets are not indexes.
    assert facets[0]["index"]["byteStart"] != text.index("https")


def test_no_tag_for_numbers_or_inside_urls() -> None:
    spans, _ = find_spans("issue #123 and https://example.com/#anchor and mail@bob.test")
    assert [s.feature.get("tag") for s in spans if "tag" in s.feature] == []


def test_length_is_counted_in_graphemes() -> None:
    accented = "e\u0301"  # one visible character, two code points
    assert grapheme_count(accented * 300) == 300
    check_length(accented * 300)
    with pytest.raises(UserError, match="301 characters; Bluesky allows 300"):
        check_length(accented * 301)
    with pytest.raises(UserError, match="bytes"):
        check_length("👩‍👩‍👧‍👦" * 200)  # 200 graphemes but 5000 bytes
    with pytest.raises(UserError, match="empty"):
        check_length("   ")


def _feed() -> AuthorFeed:
    return msgspec.json.decode((FIXTURES / "author_feed.json").read_bytes(), type=AuthorFeed)


def test_author_feed_posts_convert_with_links_media_and_flags() -> None:
    feed = _feed()
    posts = {p.text[:20]: p for p in (from_view("bluesky", i, LINKS) for i in feed.feed)}
    rich = posts["Grüße aus Zürich 🎉 —"]
    assert rich.links == ("https://example.com/a?b=1",)
    assert rich.author.name == "Alice Ångström"
    assert rich.author.handle == "@alice.test"
    rkey = rich.native_id.rsplit("/", 1)[1]
    assert rich.permalink == f"https://bsky.app/profile/alice.test/post/{rkey}"
    assert rich.native_id.startswith("at://did:plc:")
    assert rich.created_at is not None

    picture = posts["A picture of nothing"]
    assert [(m.kind, m.alt) for m in picture.media] == [("image", "a single white pixel")]
    assert "/img/feed_fullsize/" in picture.media[0].url
    assert posts["Read this"].links == ("https://example.org/article",)
    assert posts["Replying to Bob"].is_reply
    assert not posts["Replying to Bob"].is_quote
    assert posts["Quoting Bob"].is_quote
    quoted_link = posts["Quoting Bob"].links[0]
    assert quoted_link.startswith("https://bsky.app/profile/did:plc:")
    with_media = posts["Quote with a picture"]
    assert with_media.is_quote
    assert [m.alt for m in with_media.media] == ["pixel again"]
    repost = posts["Bob says hi"]
    assert repost.is_repost
    assert repost.author.handle == "@bob.test"
    assert repost.title == "♻ reposted by Alice Ångström"
    assert not posts["A picture of nothing"].is_repost


def test_rendered_message_shows_author_text_and_permalink() -> None:
    item = next(i for i in _feed().feed if i.post.record.text.startswith("A picture"))
    message = render(from_view("bluesky", item, LINKS))
    assert message.author == "Alice Ångström"
    assert message.text == "A picture of nothing"
    assert message.link.startswith("https://bsky.app/profile/alice.test/post/")
    assert message.images[0].alt == "a single white pixel"


def test_search_results_convert() -> None:
    raw = (FIXTURES / "search_posts.json").read_bytes()
    result = msgspec.json.decode(raw, type=SearchResult)
    posts = [from_view("bluesky", view, LINKS) for view in result.posts]
    assert posts
    assert all("Bob" in p.text for p in posts)


def _firehose() -> tuple[dict[str, str], list[dict[str, object]]]:
    data = json.loads((FIXTURES / "firehose_posts.json").read_text(encoding="utf-8"))
    return {a["handle"]: a["did"] for a in data["accounts"]}, data["firehose"]


def test_jetstream_records_convert_like_their_appview_views() -> None:
    """The same post read from the stream and from the AppView is one post."""
    dids, events = _firehose()
    views = {i.post.uri: from_view("bluesky", i, LINKS) for i in _feed().feed if not i.reason}
    profile = ProfileBasic(dids["alice.test"], "alice.test", "Alice Ångström")
    matched = 0
    for n, body in enumerate(events):
        event = msgspec.convert({**body, "time_us": 1_700_000_000_000_000 + n}, JetstreamEvent)
        assert event.commit is not None
        assert event.commit.record is not None
        if event.did != profile.did:
            continue
        post = from_record(
            "bluesky", event.did, event.commit.rkey, event.commit.record, profile, LINKS
        )
        view = views[post.native_id]
        matched += 1
        assert post.uid == view.uid
        assert (post.text, post.links, post.is_reply, post.is_quote) == (
            view.text, view.links, view.is_reply, view.is_quote,
        )  # fmt: skip
        assert [m.alt for m in post.media] == [m.alt for m in view.media]
        assert all(
            m.url.startswith("https://cdn.bsky.app/img/feed_fullsize/plain/") for m in post.media
        )
        assert post.permalink == view.permalink
    assert matched == 6


def test_cursor_keeps_both_positions_and_survives_garbage() -> None:
    position = Position(poll="2026-01-01T00:00:00.000Z", stream_us=1_700_000_000_000_000)
    assert decode(encode(position)) == position
    assert decode("not json") == Position()
    assert decode(None) == Position()
    newer = position.merged(Position(stream_us=1_800_000_000_000_000))
    assert newer.poll == position.poll
    assert newer.stream_us == 1_800_000_000_000_000


def test_failure_classification() -> None:
    assert classify(429, "RateLimitExceeded") is Outcome.RATE_LIMITED
    assert classify(400, "ExpiredToken") is Outcome.AUTH
    assert classify(401, "") is Outcome.AUTH
    assert classify(400, "InvalidRequest") is Outcome.HTTP_4XX
    assert classify(502, "") is Outcome.HTTP_5XX


def test_settings_defaults_and_env_style_lists() -> None:
    settings = BlueskySettings.model_validate({})
    assert settings.service == "https://bsky.social"
    assert settings.appview == "https://public.api.bsky.app"
    assert len(settings.jetstream) == 4
    custom = BlueskySettings.model_validate({"jetstream": "ws://127.0.0.1:1, ws://127.0.0.1:2/"})
    assert custom.jetstream == ["ws://127.0.0.1:1", "ws://127.0.0.1:2"]
    with pytest.raises(ValueError, match="ws:// or wss://"):
        BlueskySettings.model_validate({"jetstream": "https://example.com"})
    assert "app_password" not in repr(BlueskySettings.model_validate({"app_password": "x"}))


def _network(**config: str) -> BlueskyNetwork:
    ctx = PluginContext(
        "bluesky", config, HealthBook(SystemClock()), SystemClock(), False, "/nonexistent"
    )
    return create(ctx)


async def test_posting_needs_an_account_and_previews_apply_bluesky_limits() -> None:
    anonymous = _network()
    assert anonymous.publisher is None  # /accounts and /post then say it is not set up
    await anonymous.aclose()

    network = _network(handle="@team.bsky.social", app_password="xxxx-xxxx-xxxx-xxxx")
    publisher = network.publisher
    assert isinstance(publisher, BlueskyPublisher)
    assert publisher.account == "@team.bsky.social"
    preview = publisher.prepare(Draft("Spoilers ahead", content_warning="film ending"))
    assert preview.text == "CW: film ending\n\nSpoilers ahead"
    assert preview.problems == ()
    too_long = publisher.prepare(Draft("x" * 301))
    assert too_long.problems == ("that post is 301 characters; Bluesky allows 300",)
    assert network.status_lines() == ["real time: Jetstream not connected (0 connections opened)"]
    await network.aclose()
