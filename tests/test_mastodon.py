"""The Mastodon source against a local Mastodon built from real recorded exchanges.

Resolving accounts and hashtags, every kind of bad input, polling with `min_id`,
paging forward, rate limits and how each failure is classified for /status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from bot.clock import SystemClock
from bot.errors import Outcome, UpstreamError, UserError
from bot.health import HealthBook
from bot.model import Target, TargetKind
from bot.protocols import PluginContext
from plugins.mastodon import MastodonNetwork, create
from tests.fakes.mastodon_server import MastodonFake, id_key, load_ws_cassette, plugin_config
from tests.feedserver import FeedServer

MakeNetwork = Callable[..., MastodonNetwork]
TOOT_OWNER = "@mastodonpy_test@mastodon.example"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[MastodonFake]:
    async with MastodonFake() as server:
        yield server


@pytest.fixture
def health() -> HealthBook:
    return HealthBook(SystemClock())


@pytest_asyncio.fixture
async def network(
    fake: MastodonFake, health: HealthBook, tmp_path: Path
) -> AsyncIterator[MakeNetwork]:
    """Build the plugin through its real factory, as the app does; closed after the test."""
    made: list[MastodonNetwork] = []

    def make(*, allow_private: bool = True, token: bool = True, **options: Any) -> MastodonNetwork:
        config = plugin_config(fake, token=token, **options)
        ctx = PluginContext("mastodon", config, health, SystemClock(), allow_private, str(tmp_path))
        made.append(create(ctx))
        return made[-1]

    yield make
    for net in made:
        await net.aclose()


async def _resolve(
    net: MastodonNetwork, text: str, kind: TargetKind = TargetKind.ACCOUNT
) -> Target:
    assert net.source is not None
    return await net.source.resolve(kind, text)


def _outcomes(health: HealthBook, host: str = "mastodon.example") -> dict[Outcome, int]:
    return dict(health.hosts[("mastodon", host)].counts)


# --- resolving ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "@mastodonpy_test@mastodon.example",
        "mastodonpy_test@Mastodon.Example",
        "@mastodonpy_test",
        "https://mastodon.example/@mastodonpy_test",
        "https://mastodon.example/@mastodonpy_test/117440825015062295",
    ],
)
async def test_accounts_resolve_through_lookup_whatever_the_spelling(
    fake: MastodonFake, network: MakeNetwork, typed: str
) -> None:
    target = await _resolve(network(token=False), typed)
    assert target.key == "mastodon.example/accounts/117440810532227399"
    assert target.display == TOOT_OWNER
    lookups = [r for r in fake.requests if r.path == "/api/v1/accounts/lookup"]
    assert lookups[-1].query == {"acct": "mastodonpy_test"}
    assert "Authorization" not in lookups[-1].headers


async def test_a_remote_account_unknown_to_lookup_is_found_by_search_with_the_token(
    fake: MastodonFake, network: MakeNetwork
) -> None:
    remote = fake.add_account("alice", remote_domain="remote.example", known=False)
    target = await _resolve(network(), "https://mastodon.example/@alice@remote.example")
    assert target.key == f"mastodon.example/accounts/{remote['id']}"
    assert target.display == "@alice@remote.example"
    search = [r for r in fake.requests if r.path == "/api/v2/search"][-1]
    assert search.query["resolve"] == "true"
    assert search.headers["Authorization"] == f"Bearer {fake.token}"


async def test_hashtags_resolve_on_the_default_instance(network: MakeNetwork) -> None:
    target = await _resolve(network(token=False), "#Python")
    assert (target.key, target.display) == (
        "mastodon.example/tags/python",
        "#python on mastodon.example",
    )
    searched = await _resolve(network(token=False), "#hoot", TargetKind.SEARCH)
    assert searched.kind is TargetKind.SEARCH
    assert searched.key == "mastodon.example/tags/hoot"


async def test_bad_input_gets_one_line_each(
    fake: MastodonFake, network: MakeNetwork, feed_server: FeedServer
) -> None:
    fake.add_account("banned", suspended=True)
    fake.add_account("newhome")
    moved = fake.add_account("oldhome")
    moved["moved"] = fake.account("newhome")
    net = network(token=False, instances={"mastodon.example": fake.base_url,
                                          "blog.example": feed_server.base_url})  # fmt: skip
    cases = {
        "@nobody@mastodon.example": "no account @nobody@mastodon.example on mastodon.example",
        "@banned@mastodon.example": "@banned@mastodon.example is suspended on mastodon.example",
        "@oldhome": "@oldhome@mastodon.example has moved to @newhome@mastodon.example",
        "@someone@blog.example": "blog.example is not a Mastodon server",
        "https://mastodon.example/about": "is not a Mastodon profile or hashtag page",
        "https://exa mple.social/@x": "that URL contains spaces",
        "@some one": "is not an account",
        "@x@bad_domain!": "is not a valid server name",
        "#no-dashes": "is not a valid hashtag",
    }
    for typed, expected in cases.items():
        with pytest.raises(UserError) as caught:
            await _resolve(net, typed)
        assert expected in str(caught.value), typed
        assert "\n" not in str(caught.value)

    # A server answering the API with a web page is not Mastodon either.
    html = network(token=False, instances={"html.example": fake.base_url})
    fake.fail("/api/v1/instance", 200, body="<!doctype html><h1>Welcome to my blog</h1>")
    with pytest.raises(UserError, match=r"^html\.example is not a Mastodon server"):
        await _resolve(html, "@someone@html.example")


async def test_private_addresses_typed_in_chat_are_blocked(
    fake: MastodonFake, network: MakeNetwork, health: HealthBook
) -> None:
    net = network(allow_private=False)
    for typed in (f"@someone@127.0.0.1:{fake.port}", "@someone@localhost"):
        with pytest.raises(UserError, match="private address; Starling does not fetch those"):
            await _resolve(net, typed)
    assert not [r for r in fake.requests if r.path.startswith("/api")]
    assert _outcomes(health, f"127.0.0.1:{fake.port}") == {Outcome.BLOCKED: 1}


async def test_a_search_needs_a_token_and_an_instance_that_searches(
    fake: MastodonFake, network: MakeNetwork
) -> None:
    with pytest.raises(UserError, match=r"needs an access token .* /search mastodon #python"):
        await _resolve(network(token=False), "python", TargetKind.SEARCH)
    with pytest.raises(UserError, match=r"found no posts for 'Toot'.*full-text search"):
        await _resolve(network(), "Toot", TargetKind.SEARCH)

    fake.search_enabled = True
    net = network()
    target = await _resolve(net, "Toot", TargetKind.SEARCH)
    assert target.display == '"Toot" on mastodon.example'
    assert net.source is not None
    baseline = await net.source.fetch(target, None)
    fake.post("mastodonpy_test_2", "Toot toot, a new search hit")
    fake.post("mastodonpy_test_2", "nothing to see")
    fresh = await net.source.fetch(target, baseline.cursor)
    assert [p.text for p in fresh.posts] == ["Toot toot, a new search hit"]


# --- polling --------------------------------------------------------------------------


async def test_polling_with_min_id_returns_only_newer_statuses(
    fake: MastodonFake, network: MakeNetwork
) -> None:
    net = network(token=False)
    assert net.source is not None
    target = await _resolve(net, TOOT_OWNER)
    baseline = await net.source.fetch(target, None)
    assert "Toot number 9!" in [p.text for p in baseline.posts]
    assert baseline.cursor == max((p.native_id for p in baseline.posts), key=id_key)

    first = fake.post("mastodonpy_test", "First new one")
    fake.post("mastodonpy_test_2", "Someone else")
    second = fake.post("mastodonpy_test", "Second new one")
    fresh = await net.source.fetch(target, baseline.cursor)
    assert sorted(p.native_id for p in fresh.posts) == [first["id"], second["id"]]
    assert fresh.cursor == second["id"]
    assert [r.query.get("min_id") for r in fake.requests][-1] == baseline.cursor

    again = await net.source.fetch(target, fresh.cursor)
    assert (again.posts, again.cursor) == ([], fresh.cursor)


async def test_a_burst_larger_than_a_page_is_read_page_by_page(
    fake: MastodonFake, network: MakeNetwork
) -> None:
    net = network(token=False, page_limit=2, max_pages=10)
    assert net.source is not None
    target = await _resolve(net, "#burst")
    baseline = await net.source.fetch(target, None)
    assert (baseline.posts, baseline.cursor) == ([], "0")
    posted = [fake.post("mastodonpy_test_2", f"#burst number {n}")["id"] for n in range(5)]
    fresh = await net.source.fetch(target, baseline.cursor)
    assert sorted(p.native_id for p in fresh.posts) == posted
    assert fresh.cursor == posted[-1]


async def test_the_fake_pages_exactly_like_the_recorded_server() -> None:
    """Replaying the recorded paging queries gives the recorded ids: the fake is faithful."""
    async with MastodonFake(seed="toots") as fake, httpx.AsyncClient() as http:
        for record in fake.cassette("test_fetch_next_previous")[11:14]:
            answer = await http.get(fake.base_url + record.path, params=record.query)
            assert [s["id"] for s in answer.json()] == [s["id"] for s in record.json()]
            recorded = dict(record.headers)
            assert answer.headers["link"] == recorded["link"]
            assert answer.headers["x-ratelimit-limit"] == recorded["x-ratelimit-limit"]


async def test_followers_only_and_direct_statuses_are_never_relayed(
    fake: MastodonFake, network: MakeNetwork
) -> None:
    net = network()  # with the owner's token the API does return the direct message
    assert net.source is not None
    target = await _resolve(net, TOOT_OWNER)
    baseline = await net.source.fetch(target, None)
    assert "Direct account status" not in " ".join(p.text for p in baseline.posts)
    secret = fake.post("mastodonpy_test", "just for followers", visibility="private")
    fresh = await net.source.fetch(target, baseline.cursor)
    assert fresh.posts == []
    assert fresh.cursor == secret["id"]  # skipped, not fetched again and again


# --- rate limits and health -------------------------------------------------------------


async def test_a_429_backs_off_until_the_reset_without_asking_again(
    fake: MastodonFake, network: MakeNetwork, health: HealthBook
) -> None:
    net = network(token=False)
    assert net.source is not None
    target = await _resolve(net, TOOT_OWNER)
    fake.fail("/api/v1/accounts/", 429, reset_in_s=120)
    with pytest.raises(UpstreamError) as caught:
        await net.source.fetch(target, None)
    assert caught.value.outcome is Outcome.RATE_LIMITED
    assert caught.value.retry_after_s is not None
    assert 100 < caught.value.retry_after_s <= 120
    sent = len(fake.requests)
    with pytest.raises(UpstreamError) as again:
        await net.source.fetch(target, None)
    assert again.value.outcome is Outcome.RATE_LIMITED
    assert len(fake.requests) == sent  # held back: nothing reached the server
    assert _outcomes(health)[Outcome.RATE_LIMITED] == 1


async def test_requests_stop_before_the_limit_is_spent(
    fake: MastodonFake, network: MakeNetwork
) -> None:
    fake.rate_limit(limit=8, window_s=300)
    net = network(token=False, rate_limit_reserve=3)
    assert net.source is not None
    target = await _resolve(net, TOOT_OWNER)  # 2 calls: instance, lookup
    held: list[UpstreamError] = []
    for _ in range(6):
        try:
            await net.source.fetch(target, None)
        except UpstreamError as err:
            held.append(err)
    answered = [r for r in fake.requests if r.path.startswith("/api/")]
    assert len(answered) == 8 - 3  # stopped with 3 calls left, never hit a 429
    assert len(held) == 3
    assert all(e.outcome is Outcome.RATE_LIMITED for e in held)
    assert held[0].retry_after_s is not None
    assert 250 < held[0].retry_after_s <= 300


async def _refused_port() -> int:
    server = await MastodonFake().start()
    port = server.port
    await server.stop()
    return port


@pytest.mark.parametrize(
    ("fault", "outcome", "status"),
    [
        ("ok", Outcome.OK, 200),
        ("503", Outcome.HTTP_5XX, 503),
        ("404", Outcome.HTTP_4XX, 404),
        ("401", Outcome.AUTH, 401),
        ("html", Outcome.PARSE, 200),
        ("stall", Outcome.TIMEOUT, None),
        ("refused", Outcome.REFUSED, None),
    ],
)
async def test_every_failure_is_classified_for_the_health_record(
    fake: MastodonFake,
    network: MakeNetwork,
    health: HealthBook,
    fault: str,
    outcome: Outcome,
    status: int | None,
) -> None:
    instances = {"mastodon.example": fake.base_url}
    if fault == "refused":
        instances["mastodon.example"] = f"http://127.0.0.1:{await _refused_port()}"
    net = network(token=False, timeout_s=0.3, instances=instances)
    assert net.source is not None
    target = Target("mastodon", TargetKind.ACCOUNT, "mastodon.example/accounts/117440810532227399")
    path = "/api/v1/accounts/"
    if fault.isdigit():
        fake.fail(path, int(fault))
    elif fault == "html":
        fake.fail(path, 200, body="<!doctype html><title>Welcome</title>")
    elif fault == "stall":
        fake.stall(path, 1.0)
    if outcome is Outcome.OK:
        await net.source.fetch(target, None)
    else:
        with pytest.raises(UpstreamError) as caught:
            await net.source.fetch(target, None)
        assert caught.value.outcome is outcome
        assert "\n" not in str(caught.value)
    entry = health.hosts[("mastodon", "mastodon.example")]
    assert (entry.last_outcome, entry.last_status) == (outcome, status)
    assert sum(entry.counts.values()) == 1  # one record per request


async def test_the_fake_streams_frames_shaped_like_the_recorded_ones() -> None:
    """The recorded websocket sessions, replayed against the fake: same frames back."""
    hashtag = load_ws_cassette("test_stream_websocket_hashtag[False]")["connections"][0]
    refused = load_ws_cassette("test_stream_websocket_subscription_error")["connections"][0]
    async with MastodonFake() as fake:
        headers = {"Authorization": f"Bearer {fake.token}"}
        async with connect(fake.ws_url + "/api/v1/streaming", additional_headers=headers) as ws:
            for step in refused["interactions"]:
                if "send" in step:
                    await ws.send(json.dumps(step["send"]))
                else:
                    assert json.loads(await ws.recv()) == step["receive"]
            for step in hashtag["interactions"]:
                if "send" in step:
                    await ws.send(json.dumps(step["send"]))
            await fake.wait_subscribed("hashtag", "mastodonpystreamsecond")
            expected = [s["receive"] for s in hashtag["interactions"] if "receive" in s]
            for frame in expected:
                recorded = json.loads(frame["payload"])
                words = recorded["content"].removeprefix("<p>").split(" <a")[0]
                fake.post("mastodonpy_test", f"{words} #{frame['stream'][1]}")
                got = json.loads(await ws.recv())
                assert got["stream"] == frame["stream"]
                assert got["event"] == frame["event"]
                assert set(json.loads(got["payload"])) >= set(recorded) - {"text"}
