"""Bluesky against a real Bluesky network: @atproto/dev-env's PLC, PDS and AppView.

Posting, sessions, rich text, replies, quotes and deletes run against the real
PDS; follows, polls and searches against the real AppView; real time through
tests/fakes/jetstream.py fed with the commits the PDS really emitted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bot.clock import SystemClock
from bot.errors import UserError
from bot.health import HealthBook
from bot.pluginstate import MemoryState
from bot.protocols import Draft, PluginContext
from plugins.bluesky import BlueskyNetwork, create
from plugins.bluesky.ids import tid_from_key
from plugins.bluesky.session import STATE_KEY as SESSION_KEY
from tests.atproto.devnet import Account, Devnet, devnet
from tests.conftest import StartBot
from tests.fakes.jetstream import EventLog, FakeJetstream, jetstream_hosts
from tests.test_e2e_cli import Console

pytestmark = pytest.mark.atproto
__all__ = ["devnet"]  # the session fixture, imported so pytest finds it here


class Traffic:
    """Counts the XRPC methods a network's HTTP client really sent."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, request: httpx.Request) -> None:
        self.calls.append(request.url.path.removeprefix("/xrpc/"))

    def count(self, nsid: str) -> int:
        return self.calls.count(nsid)


# The plugin's state per data dir, so a "restart" (a new instance) sees the saved session.
_STATES: dict[Path, MemoryState] = {}


def _network(net: Devnet, data_dir: Path, who: Account | None, **extra: Any) -> BlueskyNetwork:
    config: dict[str, Any] = {
        "service": net.pds,
        "appview": net.appview or net.pds,
        "jetstream": "ws://127.0.0.1:9",
        **extra,
    }
    if who is not None:
        config |= {"handle": who.handle, "app_password": who.password}
    state = _STATES.setdefault(data_dir, MemoryState())
    clock = SystemClock()
    ctx = PluginContext("bluesky", config, HealthBook(clock), clock, True, str(data_dir), state)
    return create(ctx)


@pytest_asyncio.fixture
async def alice(devnet: Devnet, tmp_path: Path) -> AsyncIterator[tuple[BlueskyNetwork, Traffic]]:
    network = _network(devnet, tmp_path / "alice", devnet.accounts["alice"])
    traffic = Traffic()
    network.client.event_hooks["request"].append(traffic)
    yield network, traffic
    await network.aclose()


async def _record(net: Devnet, uri: str) -> dict[str, Any]:
    repo, collection, rkey = uri.removeprefix("at://").split("/")
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            f"{net.pds}/xrpc/com.atproto.repo.getRecord",
            params={"repo": repo, "collection": collection, "rkey": rkey},
        )
    return dict(answer.json())


async def test_post_with_links_mentions_and_tags_has_utf8_byte_offsets(
    devnet: Devnet, alice: tuple[BlueskyNetwork, Traffic]
) -> None:
    network, _ = alice
    assert network.publisher is not None
    text = "Grüße aus Zürich 🎉 — lies https://example.com/ä?x=1, frag @bob.test #café"
    published = await network.publisher.publish(Draft(text), "starling:facets:1")
    rkey = tid_from_key("starling:facets:1")
    assert published.native_id == f"at://{devnet.accounts['alice'].did}/app.bsky.feed.post/{rkey}"
    assert published.url == f"https://bsky.app/profile/alice.test/post/{rkey}"

    stored = (await _record(devnet, published.native_id))["value"]
    assert stored["text"] == text
    raw = text.encode("utf-8")
    spans = {
        raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(): f["features"][0]
        for f in stored["facets"]
    }
    assert spans["https://example.com/ä?x=1"]["uri"] == "https://example.com/ä?x=1"
    assert spans["@bob.test"] == {
        "$type": "app.bsky.richtext.facet#mention",
        "did": devnet.accounts["bob"].did,
    }
    assert spans["#café"]["tag"] == "café"


async def test_a_retry_never_posts_twice_and_the_session_is_reused(
    devnet: Devnet, alice: tuple[BlueskyNetwork, Traffic], tmp_path: Path
) -> None:
    network, traffic = alice
    assert network.publisher is not None
    first = await network.publisher.publish(Draft("Once only"), "starling:retry:1")
    again = await network.publisher.publish(Draft("Once only"), "starling:retry:1")
    other = await network.publisher.publish(Draft("Another one"), "starling:retry:2")
    assert first == again
    assert other != first
    assert traffic.count("com.atproto.repo.createRecord") == 2
    assert traffic.count("com.atproto.server.createSession") == 1

    async with httpx.AsyncClient() as client:
        listed = await client.get(
            f"{devnet.pds}/xrpc/com.atproto.repo.listRecords",
            params={
                "repo": devnet.accounts["alice"].did,
                "collection": "app.bsky.feed.post",
                "limit": 100,
            },
        )
    texts = [r["value"]["text"] for r in listed.json()["records"]]
    assert texts.count("Once only") == 1

    # A restart keeps the session: no new login (createSession is rate limited).
    restarted = _network(devnet, tmp_path / "alice", devnet.accounts["alice"])
    later = Traffic()
    restarted.client.event_hooks["request"].append(later)
    assert restarted.publisher is not None
    await restarted.publisher.publish(Draft("After a restart"), "starling:retry:3")
    await restarted.aclose()
    assert later.count("com.atproto.server.createSession") == 0


async def test_a_refused_access_token_is_refreshed_not_logged_in_again(
    devnet: Devnet, tmp_path: Path
) -> None:
    bob = devnet.accounts["bob"]
    first = _network(devnet, tmp_path, bob)
    assert first.publisher is not None
    await first.publisher.publish(Draft("Bob logs in"), "starling:refresh:1")
    await first.aclose()
    state = _STATES[tmp_path]
    text = await state.get(SESSION_KEY)
    assert text is not None, "the session is kept in the plugin's state"
    saved = json.loads(text)
    saved["session"]["accessJwt"] = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjk5OTk5OTk5OTl9.bad"
    await state.put(SESSION_KEY, json.dumps(saved))

    second = _network(devnet, tmp_path, bob)
    traffic = Traffic()
    second.client.event_hooks["request"].append(traffic)
    assert second.publisher is not None
    await second.publisher.publish(Draft("Bob again"), "starling:refresh:2")
    await second.aclose()
    assert traffic.count("com.atproto.server.refreshSession") == 1
    assert traffic.count("com.atproto.server.createSession") == 0


async def test_the_old_session_file_is_imported_once_without_a_new_login(
    devnet: Devnet, tmp_path: Path
) -> None:
    bob = devnet.accounts["bob"]
    first = _network(devnet, tmp_path / "before", bob)
    assert first.publisher is not None
    await first.publisher.publish(Draft("Bob before the upgrade"), "starling:import:1")
    await first.aclose()
    old = tmp_path / "after" / "bluesky-session.json"  # as releases before 0008 left it
    old.parent.mkdir()
    old.write_text(await _STATES[tmp_path / "before"].get(SESSION_KEY) or "", encoding="utf-8")

    upgraded = _network(devnet, tmp_path / "after", bob)
    traffic = Traffic()
    upgraded.client.event_hooks["request"].append(traffic)
    assert upgraded.publisher is not None
    await upgraded.publisher.publish(Draft("Bob after the upgrade"), "starling:import:2")
    await upgraded.aclose()
    assert traffic.count("com.atproto.server.createSession") == 0
    assert not old.exists()
    assert not old.exists(), "the tokens no longer lie in a file of their own"
    assert not old.with_name("bluesky-session.json.imported").exists()
    assert await _STATES[tmp_path / "after"].get(SESSION_KEY) is not None


async def test_the_300_grapheme_limit_is_checked_before_sending(
    devnet: Devnet, alice: tuple[BlueskyNetwork, Traffic]
) -> None:
    network, traffic = alice
    assert network.publisher is not None
    longest = "e\u0301" * 300  # 300 graphemes, 600 code points: Bluesky accepts it
    published = await network.publisher.publish(Draft(longest), "starling:limit:1")
    assert (await _record(devnet, published.native_id))["value"]["text"] == longest
    writes = traffic.count("com.atproto.repo.createRecord")
    with pytest.raises(UserError, match="301 characters; Bluesky allows 300"):
        await network.publisher.publish(Draft(longest + "e\u0301"), "starling:limit:2")
    assert traffic.count("com.atproto.repo.createRecord") == writes


async def test_replies_quotes_and_deletes(
    devnet: Devnet, alice: tuple[BlueskyNetwork, Traffic], tmp_path: Path
) -> None:
    devnet.require_appview()
    network, _ = alice
    carol = _network(devnet, tmp_path / "carol", devnet.accounts["carol"])
    assert network.publisher is not None
    assert carol.publisher is not None
    root = await carol.publisher.publish(Draft("Carol starts a thread"), "starling:thread:1")
    root_record = await _record(devnet, root.native_id)
    await _indexed(devnet, root.native_id)

    reply = await network.publisher.publish(
        Draft("Alice answers", reply_to=root.url), "starling:thread:2"
    )
    reply_record = await _record(devnet, reply.native_id)
    expected_root = {"uri": root.native_id, "cid": root_record["cid"]}
    assert reply_record["value"]["reply"] == {"root": expected_root, "parent": expected_root}
    await _indexed(devnet, reply.native_id)

    deeper = await carol.publisher.publish(
        Draft("And Carol again", reply_to=reply.native_id), "starling:thread:3"
    )
    deeper_reply = (await _record(devnet, deeper.native_id))["value"]["reply"]
    assert deeper_reply["root"] == expected_root
    assert deeper_reply["parent"] == {"uri": reply.native_id, "cid": reply_record["cid"]}

    quote = await network.publisher.publish(
        Draft("Look at this", quote_of=root.url), "starling:thread:4"
    )
    embed = (await _record(devnet, quote.native_id))["value"]["embed"]
    assert embed == {"$type": "app.bsky.embed.record", "record": expected_root}

    with pytest.raises(UserError, match="only delete posts it made"):
        await network.publisher.delete(root.native_id)
    await network.publisher.delete(quote.native_id)
    assert (await _record(devnet, quote.native_id))["error"] == "RecordNotFound"
    await carol.aclose()


async def _indexed(net: Devnet, uri: str, within_s: float = 10.0) -> None:
    """Wait until the AppView has indexed `uri` (it follows the PDS asynchronously)."""
    async with httpx.AsyncClient() as client, asyncio.timeout(within_s):
        while True:
            found = await client.get(
                f"{net.appview}/xrpc/app.bsky.feed.getPosts", params={"uris": uri}
            )
            if found.status_code == 200 and found.json()["posts"]:
                return
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def jetstreams() -> AsyncIterator[tuple[EventLog, list[FakeJetstream]]]:
    async with jetstream_hosts(2, skews_us=(0, -2500)) as (log, hosts):
        yield log, hosts


async def test_follow_poll_and_real_time_from_the_real_network(
    devnet: Devnet,
    start_bot: StartBot,
    jetstreams: tuple[EventLog, list[FakeJetstream]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    appview = devnet.require_appview()
    log, (first, second) = jetstreams
    alice = devnet.accounts["alice"]
    for option, value in {
        "SERVICE": devnet.pds,
        "APPVIEW": appview,
        "JETSTREAM": f"{first.url},{second.url}",
        "HANDLE": alice.handle,
        "APP_PASSWORD": alice.password,
    }.items():
        monkeypatch.setenv(f"STARLING_BLUESKY__{option}", value)
    bot = await start_bot()
    network = bot.app.networks["bluesky"]
    assert network.publisher is not None

    assert "Following @alice.test on bluesky as #1" in await bot.say(
        "/follow bluesky @alice.test --every 1h"
    )
    assert "as #2" in await bot.say("/search bluesky Zeppelin --every 1h", channel="search")
    await _until(lambda: first.requests)

    async def post(text: str, key: str) -> str:
        published = await network.publisher.publish(Draft(text), key)  # type: ignore[union-attr]
        rkey = published.native_id.rsplit("/", 1)[1]
        await log.append(await devnet.firehose_event(rkey))
        return published.native_id

    await post("Streamed from the PDS", "starling:live:1")
    await bot.chat.wait_for(1)
    message = bot.chat.sent[0].message
    assert (message.text, message.author) == ("Streamed from the PDS", alice.display_name)
    assert message.link.startswith("https://bsky.app/profile/alice.test/post/")

    first.paused = True
    await post("While the host lagged", "starling:live:2")
    await post("Zeppelin sighted", "starling:live:3")
    await first.drop_all()
    await bot.chat.wait_for(3)
    general = [s.message.text for s in bot.chat.in_channel("general")]
    assert general == ["Streamed from the PDS", "While the host lagged", "Zeppelin sighted"]
    assert "cursor" in second.requests[-1]

    # Polling the real AppView finds the same posts (same ids): nothing doubles,
    # and the search finds the new post. (The dev AppView's search is a case-sensitive
    # SQL LIKE; Bluesky's real search service is not.)
    async with asyncio.timeout(15):
        while not bot.chat.in_channel("search"):
            await bot.poll_all()
            await asyncio.sleep(0.2)
    assert [s.message.text for s in bot.chat.in_channel("search")] == ["Zeppelin sighted"]
    assert [s.message.text for s in bot.chat.in_channel("general")] == general


async def _until(condition: Any, within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.slow
async def test_console_end_to_end(devnet: Devnet, tmp_path: Path) -> None:
    """The real CLI with the console chat, configured only through the environment."""
    appview = devnet.require_appview()
    carol = devnet.accounts["carol"]
    console = await Console.start(
        tmp_path,
        STARLING_BLUESKY__SERVICE=devnet.pds,
        STARLING_BLUESKY__APPVIEW=appview,
        STARLING_BLUESKY__STREAM="false",
    )
    await console.type("/search bluesky anything")
    await console.expect("Bluesky search needs a logged-in account")
    await console.type(f"/follow bluesky https://bsky.app/profile/{carol.handle} --every 0.3s")
    await console.expect("Following @carol.test on bluesky as #1")

    writer = _network(devnet, tmp_path / "writer", carol)
    assert writer.publisher is not None
    published = await writer.publisher.publish(
        Draft("Hello from Carol — ünïcödé"), "starling:e2e:1"
    )
    await writer.aclose()
    output = await console.expect(published.url, timeout=20)
    assert "Hello from Carol — ünïcödé" in output
    assert "bluesky · Carol" in output
    assert await console.finish() == 0
    assert console.output.count("Hello from Carol") == 1
