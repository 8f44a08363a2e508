"""Bluesky through a whole running Starling: follow, poll, real time over Jetstream.

The AppView here is a small local server answering with payloads recorded from a
real one (tests/fixtures/bluesky); Jetstream is tests/fakes/jetstream.py. The
same flows run against a real Bluesky network in test_bluesky_devnet.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from bot.errors import Outcome, UpstreamError
from bot.health import HealthBook
from tests.conftest import RunningBot, StartBot
from tests.fakes.jetstream import EventLog, FakeJetstream, jetstream_hosts

FIXTURES = Path(__file__).parent / "fixtures" / "bluesky"
FEED = json.loads((FIXTURES / "author_feed.json").read_text(encoding="utf-8"))
ALICE = next(
    i["post"]["author"] for i in FEED["feed"] if i["post"]["author"]["handle"] == "alice.test"
)
SEARCH = json.loads((FIXTURES / "search_posts.json").read_text(encoding="utf-8"))


class FakeAppView:
    """Answers getProfile, getAuthorFeed, getPosts and searchPosts as the AppView did
    when recorded."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.feed: list[dict[str, Any]] = list(FEED["feed"])
        self.posts: dict[str, dict[str, Any]] = {i["post"]["uri"]: i["post"] for i in self.feed}
        self.looked_up: list[list[str]] = []  # the `uris` of each getPosts
        self.fail_with: int | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        nsid = request.match_info["nsid"]
        self.requests.append(nsid)
        if self.fail_with is not None:
            return web.json_response(
                {"error": "InternalServerError", "message": "down"}, status=self.fail_with
            )
        if nsid == "app.bsky.actor.getProfile":
            actor = request.query.get("actor", "")
            if actor in (ALICE["did"], ALICE["handle"]):
                return web.json_response(ALICE)
            return web.json_response(
                {"error": "InvalidRequest", "message": "Profile not found"}, status=400
            )
        if nsid == "app.bsky.feed.getPosts":
            uris = request.query.getall("uris", [])
            self.looked_up.append(uris)
            if len(uris) > 25:
                return web.json_response({"error": "InvalidRequest", "message": "max 25"}, 400)
            return web.json_response({"posts": [self.posts[u] for u in uris if u in self.posts]})
        if nsid == "app.bsky.feed.getAuthorFeed":
            return web.json_response({"feed": self.feed})
        if nsid == "app.bsky.feed.searchPosts":
            if not request.headers.get("authorization"):
                return web.json_response({"error": "AuthMissing", "message": "no"}, status=403)
            return web.json_response(SEARCH)
        return web.json_response({"error": "MethodNotImplemented"}, status=501)


@pytest_asyncio.fixture
async def appview() -> AsyncIterator[FakeAppView]:
    fake = FakeAppView()
    app = web.Application()
    app.router.add_get("/xrpc/{nsid}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


@pytest_asyncio.fixture
async def jetstreams() -> AsyncIterator[tuple[EventLog, list[FakeJetstream]]]:
    # The second host stamps events 3 ms earlier than the first, as real hosts differ.
    async with jetstream_hosts(2, skews_us=(0, -3000)) as (log, hosts):
        yield log, hosts


def _configure(
    monkeypatch: pytest.MonkeyPatch, appview: FakeAppView, hosts: list[FakeJetstream]
) -> None:
    monkeypatch.setenv("STARLING_BLUESKY__APPVIEW", appview.url)
    monkeypatch.setenv("STARLING_BLUESKY__SERVICE", appview.url)
    monkeypatch.setenv("STARLING_BLUESKY__JETSTREAM", ",".join(h.url for h in hosts))
    monkeypatch.setenv("STARLING_BLUESKY__STREAM_RECONNECT_MAX_S", "0.2")


async def _until(condition: Any, within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():
            await asyncio.sleep(0.01)


def _texts(bot: RunningBot) -> list[str]:
    return [s.message.text for s in bot.chat.sent]


async def test_follow_by_profile_link_then_posts_arrive_in_real_time_across_a_host_failover(
    start_bot: StartBot,
    appview: FakeAppView,
    jetstreams: tuple[EventLog, list[FakeJetstream]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log, (first, second) = jetstreams
    _configure(monkeypatch, appview, [first, second])
    bot = await start_bot()
    reply = await bot.say("/follow bluesky https://bsky.app/profile/alice.test --every 1h")
    assert "Following @alice.test on bluesky as #1" in reply
    await _until(lambda: first.requests)
    assert first.requests[-1]["wantedDids"] == [ALICE["did"]]
    assert first.requests[-1]["wantedCollections"] == [
        "app.bsky.feed.post",
        "app.bsky.feed.repost",
    ]

    await log.post(ALICE["did"], "3lzzzzzzzzz22", "Live one")
    await log.post("did:plc:someoneelsesomeoneelse22", "3lzzzzzzzzz23", "not followed")
    await bot.chat.wait_for(1)
    live = bot.chat.sent[0].message
    assert (live.text, live.author) == ("Live one", "Alice Ångström")
    assert live.link == "https://bsky.app/profile/alice.test/post/3lzzzzzzzzz22"

    # The first host falls behind, then dies: two posts it never sent.
    first.paused = True
    await log.post(ALICE["did"], "3lzzzzzzzzz24", "Sent while the host lagged")
    await log.post(ALICE["did"], "3lzzzzzzzzz25", "Also missed by the first host")
    await first.drop_all()
    await bot.chat.wait_for(3)
    await asyncio.sleep(0.2)  # a doubled post would arrive now
    assert _texts(bot) == [
        "Live one",
        "Sent while the host lagged",
        "Also missed by the first host",
    ]
    resumed = int(second.requests[-1]["cursor"][0])
    assert resumed <= log.events[0].time_us  # rewound far enough for the host's skew
    dropped = bot.app.health.hosts[("bluesky", f"127.0.0.1:{first.port}")]
    assert dropped.counts[Outcome.STREAM_DROPPED] == 1

    # The stored cursor carries the stream position: a restart resumes from it.
    state = next(iter(bot.app.scheduler.states.values()))
    if state.advance is not None:
        await asyncio.wait([state.advance])
    stored = await bot.app.store.find_resource(state.target)
    assert stored is not None
    assert stored.cursor is not None
    assert json.loads(stored.cursor)["stream_us"] >= log.events[-1].time_us - 3000
    await bot.stop()
    await first.resume()
    restarted = await start_bot()
    await log.post(ALICE["did"], "3lzzzzzzzzz26", "After the restart")
    await restarted.chat.wait_for(1)
    await asyncio.sleep(0.2)
    assert _texts(restarted) == ["After the restart"]


async def test_refused_host_is_recorded_and_the_next_one_used(
    start_bot: StartBot,
    appview: FakeAppView,
    jetstreams: tuple[EventLog, list[FakeJetstream]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log, (first, second) = jetstreams
    from http import HTTPStatus

    first.refuse_with = HTTPStatus.SERVICE_UNAVAILABLE
    _configure(monkeypatch, appview, [first, second])
    bot = await start_bot()
    await bot.say("/follow bluesky @alice.test --every 1h")
    await _until(lambda: second.requests)
    await log.post(ALICE["did"], "3lzzzzzzzzz32", "Through the second host")
    await bot.chat.wait_for(1)
    health: HealthBook = bot.app.health
    refused = health.hosts[("bluesky", f"127.0.0.1:{first.port}")]
    assert refused.last_outcome is Outcome.HTTP_5XX
    assert refused.last_status == 503


async def test_polling_backfills_and_bad_input_changes_nothing(
    start_bot: StartBot,
    appview: FakeAppView,
    jetstreams: tuple[EventLog, list[FakeJetstream]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, hosts = jetstreams
    _configure(monkeypatch, appview, hosts)
    bot = await start_bot()
    assert "no Bluesky account @nobody.test" in await bot.say("/follow bluesky @nobody.test")
    assert "give the full handle" in await bot.say("/follow bluesky alice")
    search = await bot.say("/search bluesky python")
    assert search == (
        "/search: Bluesky search needs a logged-in account: set [bluesky] handle and "
        "app_password (STARLING_BLUESKY__HANDLE, STARLING_BLUESKY__APP_PASSWORD)"
    )
    assert "No subscriptions" in await bot.say("/list")

    assert "as #1" in await bot.say("/follow bsky did:" + ALICE["did"][4:] + " --last 2")
    await bot.chat.wait_for(2)
    newest = dict(FEED["feed"][0])
    post = dict(newest["post"])
    post["uri"] = post["uri"].rsplit("/", 1)[0] + "/3lzzzzzzzzz99"
    post["record"] = {
        **post["record"],
        "text": "Found by polling",
        "createdAt": "2030-01-01T00:00:00.000Z",
    }
    post["indexedAt"] = "2030-01-01T00:00:00.000Z"
    appview.feed.insert(0, {"post": post})
    await bot.poll_all()
    assert _texts(bot)[-1] == "Found by polling"
    await bot.poll_all()
    assert _texts(bot).count("Found by polling") == 1

    appview.fail_with = 503
    with pytest.raises(UpstreamError) as failed:
        await bot.poll_all()
    assert failed.value.outcome is Outcome.HTTP_5XX
    status = await bot.say("/status")
    assert "http_5xx 503" in status


def _bob_post(rkey: str, text: str) -> dict[str, Any]:
    """A new post by Bob, as the AppView hydrates it."""
    bob = next(i["post"] for i in FEED["feed"] if i["post"]["author"]["handle"] == "bob.test")
    uri = bob["uri"].rsplit("/", 1)[0] + f"/{rkey}"
    return {**bob, "uri": uri, "cid": f"bafyrei{rkey}", "record": {**bob["record"], "text": text}}


async def test_streamed_reposts_are_fetched_together_and_no_reposts_skips_them(
    start_bot: StartBot,
    appview: FakeAppView,
    jetstreams: tuple[EventLog, list[FakeJetstream]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log, hosts = jetstreams
    _configure(monkeypatch, appview, hosts)
    bot = await start_bot()
    assert "as #1" in await bot.say("/follow bluesky alice.test --every 1h")
    assert "as #2" in await bot.say("/follow bluesky alice.test --every 1h --no-reposts", "quiet")
    await _until(lambda: hosts[0].requests)
    first, second = _bob_post("3lbbbbbbbbb01", "Bob's first"), _bob_post("3lbbbbbbbbb02", "Bob 2")
    appview.posts.update({first["uri"]: first, second["uri"]: second})
    gone = first["uri"].rsplit("/", 1)[0] + "/3lbbbbbbbbb03"  # deleted before the lookup

    for n, view in enumerate([first, second, {"uri": gone, "cid": "bafyreigone"}]):
        await log.repost(ALICE["did"], f"3lrrrrrrrr{n:03}", view["uri"], view["cid"])
    await log.repost("did:plc:someoneelsesomeoneelse22", "3lrrrrrrrr999", first["uri"], "x")
    await log.post(ALICE["did"], "3lzzzzzzzzz40", "Alice's own words")
    await bot.chat.wait_for(4)
    await asyncio.sleep(0.5)  # a repeat, or the unknown post, would arrive now

    def shown(channel: str) -> list[tuple[str, str, str]]:
        return [
            (s.message.text, s.message.author, s.message.title)
            for s in bot.chat.sent
            if s.channel.native_id == channel
        ]

    by_alice = "\u267b reposted by Alice \u00c5ngstr\u00f6m"
    assert shown("general") == [
        ("Bob's first", "Bob", by_alice),
        ("Bob 2", "Bob", by_alice),
        ("Alice's own words", "Alice \u00c5ngstr\u00f6m", ""),
    ]
    assert [text for text, _, _ in shown("quiet")] == ["Alice's own words"]
    assert appview.looked_up == [[first["uri"], second["uri"], gone]], "one batched lookup"
    assert bot.chat.sent[0].message.link.endswith("/profile/bob.test/post/3lbbbbbbbbb01")
