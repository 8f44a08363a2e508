"""Reading X through the real plugin and httpx, against the fake X API on loopback.

Accounts are resolved from the recorded @Twitter lookup, timelines start from the
recorded posts, and new posts appear as the fake's world changes.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.config import ConfigError
from bot.errors import Outcome, UpstreamError, UserError
from bot.health import HealthBook
from bot.model import Target, TargetKind
from bot.pluginstate import StateHub
from bot.protocols import PluginContext
from bot.store import open_store
from plugins.x import XNetwork, create
from tests.fakes.x_server import (
    BEARER,
    ShiftedClock,
    XServer,
    plugin_config,
    serving,
)

Make = Callable[..., XNetwork]
TWITTER_ID = "783214"
NEWEST_RECORDED = "1577730467436138524"


@pytest_asyncio.fixture
async def x_server() -> AsyncIterator[XServer]:
    async with serving() as server:
        yield server


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
def health(clock: ShiftedClock) -> HealthBook:
    return HealthBook(clock)


@pytest_asyncio.fixture
async def make(
    x_server: XServer, tmp_path: Path, clock: ShiftedClock, health: HealthBook
) -> AsyncIterator[Make]:
    made: list[XNetwork] = []
    store = await open_store(str(tmp_path / "starling.db"))
    hub = StateHub()
    hub.attach(store)

    def build(**options: Any) -> XNetwork:
        config = plugin_config(x_server, **options)
        state = hub.for_plugin("x")
        net = create(PluginContext("x", config, health, clock, True, str(tmp_path), state))
        made.append(net)
        return net

    yield build
    for net in made:
        await net.aclose()
    await store.close()


def source(net: XNetwork) -> Any:
    assert net.source is not None
    return net.source


def gets(server: XServer) -> list[dict[str, Any]]:
    return [r for r in server.requests if r["method"] == "GET"]


async def follow(net: XNetwork, who: str = "@Twitter") -> Target:
    return await source(net).resolve(TargetKind.ACCOUNT, who)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "query",
    [
        "@Twitter",
        "twitter",
        "https://x.com/Twitter",
        "https://twitter.com/Twitter/status/1577730467436138524",
        "x.com/Twitter",
        "<https://mobile.twitter.com/Twitter>",
    ],
)
async def test_an_account_is_found_by_handle_or_profile_url(
    make: Make, x_server: XServer, query: str
) -> None:
    target = await follow(make(), query)
    assert (target.key, target.display) == (TWITTER_ID, "@Twitter")
    lookup = x_server.requests[-1]
    assert lookup["path"].lower() == "/2/users/by/username/twitter"
    assert lookup["headers"]["Authorization"] == f"Bearer {BEARER}"


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("@has-dash", "is not an X username"),
        ("@waytoolongusername123", "is not an X username"),
        ("https://example.com/Twitter", "is not an X profile"),
        ("https://x.com/home", "is not a profile"),
        ("https://x.com/", "is not a profile"),
    ],
)
async def test_bad_account_input_gets_one_line_and_no_request(
    make: Make, x_server: XServer, query: str, says: str
) -> None:
    with pytest.raises(UserError) as err:
        await follow(make(), query)
    assert says in str(err.value)
    assert "\n" not in str(err.value)
    assert x_server.requests == []


async def test_unknown_suspended_and_protected_accounts_get_xs_reason_in_one_line(
    make: Make, x_server: XServer
) -> None:
    net = make()
    x_server.add_user("gone")
    x_server.suspend("gone")
    x_server.add_user("locked", protected=True)
    answers = {}
    for who in ("@nosuchuser", "@gone", "@locked"):
        with pytest.raises(UserError) as err:
            await follow(net, who)
        answers[who] = str(err.value)
    assert answers["@nosuchuser"] == (
        "X says: Could not find user with username: [nosuchuser]. "
        "Check the spelling of @nosuchuser."
    )
    assert answers["@gone"] == (
        "@gone cannot be followed — X says: User has been suspended: [gone]."
    )
    assert "protected" in answers["@locked"]
    assert all("\n" not in line for line in answers.values())


async def test_polling_asks_since_the_newest_id_and_returns_only_newer_posts(
    make: Make, x_server: XServer
) -> None:
    net = make()
    target = await follow(net)
    baseline = await source(net).fetch(target, None)
    assert {p.native_id for p in baseline.posts} == {NEWEST_RECORDED, "1565318587736285184"}
    assert baseline.cursor == NEWEST_RECORDED
    first = x_server.requests[-1]["query"]
    assert "since_id" not in first
    assert first["max_results"] == "10"

    fresh = x_server.tweet("Twitter", "Something new")
    result = await source(net).fetch(target, baseline.cursor)
    assert [p.text for p in result.posts] == ["Something new"]
    assert result.cursor == fresh["id"]
    poll = x_server.requests[-1]["query"]
    assert poll["since_id"] == NEWEST_RECORDED
    assert poll["max_results"] == "100"

    quiet = await source(net).fetch(target, result.cursor)
    assert quiet.posts == []
    assert quiet.cursor == fresh["id"]


async def test_posts_carry_expanded_links_media_and_reference_flags(
    make: Make, x_server: XServer
) -> None:
    net = make()
    target = await follow(net)
    baseline = await source(net).fetch(target, None)
    alice = x_server.add_user("alice", "Alice & Co")
    original = x_server.tweet("alice", "The original post, long enough to be cut in a retweet")
    x_server.tweet(
        "Twitter",
        "Read https://t.co/abc1 &amp; see @alice",
        links={"https://t.co/abc1": "https://example.com/post?a=1&copy=2"},
        photos=[("https://pbs.twimg.com/media/cat.jpg", "A cat on a keyboard")],
    )
    x_server.tweet("Twitter", "@alice agreed", reply_to=original["id"])
    x_server.tweet(
        "Twitter", "RT @alice: The original post, long enough to be cu…", retweet_of=original["id"]
    )
    x_server.tweet("Twitter", "Look at this", quote_of=original["id"])
    x_server.tweet(
        "Twitter", "A long post that X cuts…", note="A long post that X cuts here, in full."
    )
    x_server.tweet("Twitter", "Clip", video="https://pbs.twimg.com/ext_tw_video_thumb/1.jpg")

    posts = {
        p.text.split("\n")[0]: p for p in (await source(net).fetch(target, baseline.cursor)).posts
    }
    link = posts["Read https://example.com/post?a=1&copy=2 & see @alice"]
    assert link.links == ("https://example.com/post?a=1&copy=2",)
    assert [(m.url, m.kind, m.alt) for m in link.media] == [
        ("https://pbs.twimg.com/media/cat.jpg", "image", "A cat on a keyboard")
    ]
    assert "t.co" not in link.text
    assert link.author.name == "Twitter"
    assert link.author.handle == "@Twitter"
    assert link.permalink == f"https://x.com/Twitter/status/{link.native_id}"
    assert (link.is_reply, link.is_repost, link.is_quote) == (False, False, False)

    reply = posts["@alice agreed"]
    assert (reply.is_reply, reply.is_repost, reply.is_quote) == (True, False, False)
    retweet = posts["RT @alice: The original post, long enough to be cut in a retweet"]
    assert (retweet.is_reply, retweet.is_repost, retweet.is_quote) == (False, True, False)
    quote = posts["Look at this"]
    assert (quote.is_reply, quote.is_repost, quote.is_quote) == (False, False, True)
    assert f"Quoting @alice: {original['text']}" in quote.text
    assert "A long post that X cuts here, in full." in posts
    clip = posts["Clip"]
    assert [(m.url, m.kind) for m in clip.media] == [
        ("https://pbs.twimg.com/ext_tw_video_thumb/1.jpg", "video")
    ]
    assert alice["id"] not in {p.native_id for p in posts.values()}


async def test_an_edited_post_keeps_its_identity_and_gets_edited_at(
    make: Make, x_server: XServer
) -> None:
    net = make()
    target = await follow(net)
    baseline = await source(net).fetch(target, None)
    first = x_server.tweet("Twitter", "Typo in here")
    shown = await source(net).fetch(target, baseline.cursor)
    edit = x_server.tweet("Twitter", "No typo in here", edit_of=first["id"])
    again = await source(net).fetch(target, shown.cursor)
    [post] = again.posts
    assert post.native_id == first["id"] == shown.posts[0].native_id
    assert post.text == "No typo in here"
    assert post.edited_at is not None
    assert post.created_at is not None
    assert post.created_at <= post.edited_at
    assert post.permalink.endswith(edit["id"])


async def test_the_daily_read_cap_stops_requests_and_says_so(
    make: Make, x_server: XServer, clock: ShiftedClock, health: HealthBook, tmp_path: Path
) -> None:
    net = make(max_reads_per_day=3)
    target = await follow(net)
    result = await source(net).fetch(target, None)
    await source(net).fetch(target, result.cursor)
    assert len(gets(x_server)) == 3
    skipped = await source(net).fetch(target, result.cursor)
    assert (skipped.posts, skipped.cursor, skipped.not_modified) == ([], result.cursor, True)
    assert skipped.retry_after_s is not None
    assert 0 < skipped.retry_after_s <= 86400, "the next poll waits for the new UTC day"
    assert len(gets(x_server)) == 3, "no request beyond the cap"
    host = health.hosts[("x", "127.0.0.1")]
    assert host.last_outcome is Outcome.SKIPPED, "a neutral skip, not a rate limit"
    assert not host.last_outcome.is_outage_signal
    assert "daily cap of 3 X reads" in host.last_detail
    assert "max_reads_per_day" in host.last_detail
    assert any("daily read cap reached" in line for line in net.status_lines())
    assert net.status_lines()[0].startswith("x: 3 of 3 daily reads used")
    with pytest.raises(UserError, match="daily cap"):
        await follow(net, "@TweepyDev")

    restarted = make(max_reads_per_day=3)
    assert (await source(restarted).fetch(target, result.cursor)).not_modified
    with pytest.raises(UpstreamError) as err:
        await source(restarted).fetch(target, None)  # a first fetch cannot be skipped quietly
    assert err.value.outcome is Outcome.SKIPPED
    assert "daily cap of 3 X reads" in str(err.value)
    assert len(gets(x_server)) == 3, "the count survives a restart"
    assert not (tmp_path / "x-reads.json").exists(), "kept in the database, not a file"

    clock.advance(86400)
    await source(restarted).fetch(target, result.cursor)
    assert len(gets(x_server)) == 4, "a new UTC day brings a new budget"


async def test_no_request_while_the_rate_limit_is_used_up(
    make: Make, x_server: XServer, clock: ShiftedClock
) -> None:
    net = make()
    target = await follow(net)
    x_server.set_remaining("GET /2/users/:id/tweets", 1, reset_in_s=120)
    result = await source(net).fetch(target, None)
    sent = len(gets(x_server))
    other = await follow(net, "@TweepyDev")
    for what in (target, other):
        with pytest.raises(UpstreamError) as err:
            await source(net).fetch(what, result.cursor)
        assert err.value.outcome is Outcome.RATE_LIMITED
        assert err.value.retry_after_s is not None
        assert 100 < err.value.retry_after_s <= 121
    assert len(gets(x_server)) == sent + 1, "only the @TweepyDev lookup went out"
    assert any("rate limit of GET /2/users/:id/tweets" in line for line in net.status_lines())
    clock.advance(125)
    x_server.set_remaining("GET /2/users/:id/tweets", 1500, reset_in_s=900)  # X's new window
    await source(net).fetch(target, result.cursor)
    assert len(gets(x_server)) == sent + 2


@pytest.mark.parametrize("reset_header", [True, False])
async def test_a_429_is_waited_out_not_hammered(
    make: Make, x_server: XServer, reset_header: bool
) -> None:
    net = make()
    target = await follow(net)
    import time

    headers = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(time.time()) + 300)}
    x_server.fail(
        "GET", f"/2/users/{TWITTER_ID}/tweets", 429, headers=headers if reset_header else {}
    )
    with pytest.raises(UpstreamError) as err:
        await source(net).fetch(target, NEWEST_RECORDED)
    assert err.value.outcome is Outcome.RATE_LIMITED
    assert err.value.status == 429
    expected = 300 if reset_header else 60
    assert err.value.retry_after_s is not None
    assert expected - 5 < err.value.retry_after_s <= expected + 1
    sent = len(gets(x_server))
    with pytest.raises(UpstreamError):
        await source(net).fetch(target, NEWEST_RECORDED)
    assert len(gets(x_server)) == sent


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (401, None, Outcome.AUTH),
        (403, None, Outcome.AUTH),
        (400, None, Outcome.HTTP_4XX),
        (500, None, Outcome.HTTP_5XX),
        (503, None, Outcome.HTTP_5XX),
        (200, b"<html>not json</html>", Outcome.PARSE),
    ],
)
async def test_failures_are_classified_and_recorded(
    make: Make,
    x_server: XServer,
    health: HealthBook,
    status: int,
    body: bytes | None,
    outcome: Outcome,
) -> None:
    net = make()
    target = await follow(net)
    x_server.fail("GET", f"/2/users/{TWITTER_ID}/tweets", status, body=body)
    with pytest.raises(UpstreamError) as err:
        await source(net).fetch(target, NEWEST_RECORDED)
    assert err.value.outcome is outcome
    host = health.hosts[("x", "127.0.0.1")]
    assert host.last_outcome is outcome
    assert host.last_status == status
    assert BEARER not in str(err.value)


async def test_a_stalled_answer_is_a_timeout(
    make: Make, x_server: XServer, health: HealthBook
) -> None:
    net = make(timeout_s=0.3)
    target = await follow(net)
    x_server.stall("GET", f"/2/users/{TWITTER_ID}/tweets", 2.0)
    with pytest.raises(UpstreamError) as err:
        await source(net).fetch(target, NEWEST_RECORDED)
    assert err.value.outcome is Outcome.TIMEOUT
    assert health.hosts[("x", "127.0.0.1")].last_outcome is Outcome.TIMEOUT


async def test_a_closed_port_is_refused(
    tmp_path: Path, clock: ShiftedClock, health: HealthBook
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = {"api_url": f"http://127.0.0.1:{port}", "bearer_token": BEARER}
    net = create(PluginContext("x", config, health, clock, True, str(tmp_path)))
    try:
        with pytest.raises(UserError, match="refused"):
            await follow(net)
        assert health.hosts[("x", "127.0.0.1")].last_outcome is Outcome.REFUSED
    finally:
        await net.aclose()


async def test_polls_sooner_than_min_interval_are_answered_without_a_request(
    make: Make, x_server: XServer, clock: ShiftedClock
) -> None:
    net = make(min_interval_s=900)
    target = await follow(net)
    baseline = await source(net).fetch(target, None)
    sent = len(gets(x_server))
    early = await source(net).fetch(target, baseline.cursor)
    assert early.not_modified
    assert early.cursor == baseline.cursor
    assert early.retry_after_s is not None
    assert 665 < early.retry_after_s <= 675  # 3/4 of the interval: jitter may come early
    assert len(gets(x_server)) == sent
    clock.advance(901)
    await source(net).fetch(target, baseline.cursor)
    assert len(gets(x_server)) == sent + 1
    assert any("at most every 15 min" in line for line in net.status_lines())


async def test_recent_search_relays_new_matches(make: Make, x_server: XServer) -> None:
    net = make()
    target = await source(net).resolve(TargetKind.SEARCH, "  Tweepy  ")
    assert (target.kind, target.key) == (TargetKind.SEARCH, "Tweepy")
    assert x_server.requests == [], "resolving a search costs no read"
    baseline = await source(net).fetch(target, None)
    assert len(baseline.posts) == 10
    assert baseline.cursor == "1578522194770296832"  # the newest recorded match
    x_server.add_user("dev")
    first = x_server.tweet("dev", "trying tweepy today")
    x_server.tweet("dev", "nothing to see")
    # The recorded cursor is from 2022, beyond search's 7 days: asked without since_id,
    # and the core's dedupe drops the recorded matches again.
    result = await source(net).fetch(target, baseline.cursor)
    assert "since_id" not in x_server.requests[-1]["query"]
    assert result.cursor == first["id"]
    assert result.posts[0].text == "trying tweepy today"
    assert result.posts[0].author.handle == "@dev"
    second = x_server.tweet("dev", "tweepy again")
    latest = await source(net).fetch(target, result.cursor)
    assert x_server.requests[-1]["query"]["since_id"] == first["id"]
    assert [p.text for p in latest.posts] == ["tweepy again"]
    assert latest.cursor == second["id"]
    assert x_server.requests[-1]["query"]["query"] == "Tweepy"


async def test_one_search_can_follow_several_accounts(make: Make, x_server: XServer) -> None:
    net = make()
    for name in ("alice", "bob", "carol"):
        x_server.add_user(name)
    target = await source(net).resolve(TargetKind.SEARCH, "from:alice OR from:bob")
    baseline = await source(net).fetch(target, None)
    x_server.tweet("alice", "from alice")
    x_server.tweet("bob", "from bob")
    x_server.tweet("carol", "from carol")
    result = await source(net).fetch(target, baseline.cursor)
    assert sorted(p.text for p in result.posts) == ["from alice", "from bob"]
    assert len(gets(x_server)) == 2


async def test_search_queries_over_the_length_limit_are_refused(
    make: Make, x_server: XServer
) -> None:
    net = make()
    assert (await source(net).resolve(TargetKind.SEARCH, "a" * 512)).key == "a" * 512
    for query in ("a" * 513, "   ", "bad\x07bell"):
        with pytest.raises(UserError) as err:
            await source(net).resolve(TargetKind.SEARCH, query)
        assert "\n" not in str(err.value)
    longer = make(max_query_length=1024)
    assert (await source(longer).resolve(TargetKind.SEARCH, "a" * 1000)).key == "a" * 1000
    assert x_server.requests == []


def test_configuration_mistakes_name_the_option(tmp_path: Path) -> None:
    clock = ShiftedClock()

    def build(config: dict[str, str]) -> XNetwork:
        return create(PluginContext("x", config, HealthBook(clock), clock, True, str(tmp_path)))

    with pytest.raises(ConfigError, match="missing: consumer_secret"):
        build({"consumer_key": "k", "access_token": "t", "access_token_secret": "s"})
    with pytest.raises(ConfigError, match="api_url"):
        build({"api_url": "ftp://api.x.com"})
    with pytest.raises(ConfigError, match="max_reads_per_dya"):
        build({"max_reads_per_dya": "5"})
    legacy = build({"api_url": "https://api.twitter.com/", "bearer_token": "secret-token"})
    assert legacy.settings.api_url == "https://api.twitter.com"
    assert legacy.publisher is None, "reading needs no user credentials, posting does"
    assert "secret-token" not in repr(legacy.settings)
    assert "secret-token" not in "\n".join(legacy.status_lines())
    blank = build({"bearer_token": " "})
    assert blank.status_lines() == ["x: not configured; set STARLING_X__BEARER_TOKEN to read X"]


async def test_an_unconfigured_x_says_what_to_set(tmp_path: Path, x_server: XServer) -> None:
    clock = ShiftedClock()
    config = {"api_url": x_server.url}
    net = create(PluginContext("x", config, HealthBook(clock), clock, True, str(tmp_path)))
    try:
        with pytest.raises(UserError, match="set STARLING_X__BEARER_TOKEN"):
            await follow(net)
        assert x_server.requests == []
    finally:
        await net.aclose()


async def test_the_old_read_count_file_is_imported_once(
    make: Make, x_server: XServer, clock: ShiftedClock, tmp_path: Path
) -> None:
    import json

    today = clock.now().date().isoformat()
    old = tmp_path / "x-reads.json"
    old.write_text(json.dumps({"day": today, "reads": 2, "posts": 7}), encoding="utf-8")
    net = make(max_reads_per_day=3)
    assert "no reads since the start yet (daily cap 3)" in net.status_lines()[0]
    target = await follow(net)
    assert net.status_lines()[0].startswith("x: 3 of 3 daily reads used, 7 posts received")
    assert not old.exists()
    assert (tmp_path / "x-reads.json.imported").exists()

    old.write_text(json.dumps({"day": today, "reads": 0}), encoding="utf-8")  # a stale copy
    restarted = make(max_reads_per_day=3)
    assert (await source(restarted).fetch(target, "1")).not_modified, "the database wins"
    assert restarted.api.budget.reads == 3
    assert len(gets(x_server)) == 1
