"""Post back end to end: the real CLI with the console chat, posting to real wire formats.

A member types `/post` in the console; Starling publishes to the fake Mastodon,
the fake X and a real nostr relay (and, with `atproto`, a real Bluesky PDS), all
configured only through `STARLING_*` environment variables. Each test checks on
the servers themselves that the post arrived exactly once, through an outage
and through a `kill -9` between a network's publish and its record.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from coincurve import PrivateKey

from plugins.nostr.keys import parse_event_id
from tests.atproto.devnet import Devnet, devnet
from tests.fakes.mastodon_server import MastodonFake, plugin_env
from tests.fakes.nostr_relay import Author, NostrRelay
from tests.fakes.x_server import XServer, serving
from tests.fakes.x_server import plugin_config as x_config
from tests.test_e2e_cli import Console

pytestmark = pytest.mark.slow
__all__ = ["devnet"]  # the session fixture, imported so pytest finds it here

# A part held for an outage is due again 1 s later (`postback_hold_s`, default 60 s).
HOLD_1S = {"STARLING_POSTBACK_HOLD_S": "1"}


class NostrTeam:
    """The team's nostr identity: the secret key Starling signs with, and its pubkey."""

    def __init__(self) -> None:
        self.secret = secrets.token_hex(32)
        self.pubkey = PrivateKey(bytes.fromhex(self.secret)).public_key_xonly.format().hex()

    def env(self, relay: NostrRelay) -> dict[str, str]:
        return {
            "STARLING_NOSTR__RELAYS": json.dumps([relay.url]),
            "STARLING_NOSTR__SECRET_KEY": self.secret,
            "STARLING_NOSTR__RECONNECT_MIN_S": "0.1",
            "STARLING_NOSTR__RECONNECT_MAX_S": "0.3",
            "STARLING_NOSTR__TIMEOUT_S": "2",
        }

    async def notes(self, relay: NostrRelay, text: str) -> list[dict[str, Any]]:
        """The team's kind 1 notes on the relay with exactly this text (a REQ until EOSE)."""
        events = await asyncio.to_thread(relay.query, authors=[self.pubkey], kinds=[1])
        return [e for e in events if e["content"] == text]


def x_env(server: XServer) -> dict[str, str]:
    return {f"STARLING_X__{k.upper()}": v for k, v in x_config(server, oauth1=True).items()}


def tweets(server: XServer, text: str) -> list[dict[str, Any]]:
    """The team account's posts on the fake X made from exactly this text."""
    return [t for t in server.timeline(server.posting_user_id) if t.get("_submitted") == text]


def statuses(fake: MastodonFake, text: str) -> list[dict[str, Any]]:
    """Statuses created through the API on the fake Mastodon with exactly this text."""
    made = [fake.statuses[i] for i in fake.created_via_api if i in fake.statuses]
    return [s for s in made if s.get("_source_text") == text]


def reply_line(output: str, prefix: str) -> str:
    """The console's one-line answer (or notice) that starts with `prefix`."""
    for line in output.splitlines():
        text = line.removeprefix("» ")
        if text.startswith(prefix):
            return text
    raise AssertionError(f"no line starting with {prefix!r} in:\n{output}")


async def until_shown(console: Console, command: str, text: str, within_s: float = 15.0) -> None:
    """Type `command` every half second until its answer shows `text`."""
    async with asyncio.timeout(within_s):
        while True:
            await console.type(command)
            try:
                await console.expect(text, timeout=0.5)
                return
            except TimeoutError:
                continue


def links(line: str) -> dict[str, str]:
    """`network: URL` pairs from a post's answer."""
    return dict(re.findall(r"(\w+): (https://\S+?)(?=;|$)", line))


@pytest_asyncio.fixture
async def mastodon() -> AsyncIterator[MastodonFake]:
    async with MastodonFake(seed="none") as fake:
        yield fake


@pytest_asyncio.fixture
async def x_server() -> AsyncIterator[XServer]:
    async with serving() as server:
        yield server


async def test_one_post_reaches_mastodon_nostr_and_x_once_each(
    tmp_path: Path, mastodon: MastodonFake, x_server: XServer
) -> None:
    team = NostrTeam()
    relay = await asyncio.to_thread(NostrRelay(tmp_path / "relay").start)
    try:
        console = await Console.start(
            tmp_path / "data", **plugin_env(mastodon), **x_env(x_server), **team.env(relay)
        )
        await console.type("/accounts")
        await console.expect("x: ")
        await console.type("/post --to mastodon,nostr,x Hello team")
        await console.expect("Post #1: ")
        answer = reply_line(await console.expect("x: https://"), "Post #1: ")
        assert await console.finish() == 0
        [note] = await team.notes(relay, "Hello team")
    finally:
        relay.stop()

    assert "Accounts Starling can post to:" in console.output
    for network in ("mastodon", "nostr", "x"):
        assert re.search(rf"^  {network}: .+ — up$", console.output, re.M), console.output
    sent = links(answer)
    assert sorted(sent) == ["mastodon", "nostr", "x"], answer

    [status] = statuses(mastodon, "Hello team")
    assert sent["mastodon"] == status["url"]
    assert parse_event_id(sent["nostr"].removeprefix("https://njump.me/")) == note["id"]
    [tweet] = tweets(x_server, "Hello team")
    assert sent["x"].endswith(f"/status/{tweet['id']}")
    assert len(x_server.requests_to("POST", "/2/tweets")) == 1
    assert "Traceback" not in console.output


async def test_a_relay_that_is_down_gets_its_part_when_it_is_back(
    tmp_path: Path, mastodon: MastodonFake
) -> None:
    """The held part goes out after the relay is back, and only once.

    Starling is restarted after the relay recovers, and its sender loop's first look
    (at start) sends the held part: a live loop looking often enough to see it within
    the test would also hit the race in the xfail test below and make this one flaky.
    """
    team = NostrTeam()
    relay = await asyncio.to_thread(NostrRelay(tmp_path / "relay").start)
    env = {**plugin_env(mastodon), **team.env(relay), **HOLD_1S}
    try:
        first = await Console.start(tmp_path / "data", **env)
        # Starling learns the relay is down from its own traffic: it follows someone
        # there, loses the connection and fails to reconnect.
        await first.type(f"/follow nostr {Author().npub}")
        await first.expect("as #1")
        await asyncio.to_thread(relay.stop)
        await until_shown(first, "/accounts", "nostr: configured — down — posts wait for it")
        await first.type("/post --to mastodon,nostr Shipping the release today")
        answer = reply_line(await first.expect("will send when it is back"), "Post #1: ")
        [status] = statuses(mastodon, "Shipping the release today")
        assert answer == (
            f"Post #1: mastodon: {status['url']}; nostr is down — will send when it is back"
        )
        await asyncio.to_thread(relay.start)  # the same port and database
        assert await first.finish() == 0

        second = await Console.start(tmp_path / "data", **env)
        late = await second.expect("Post #1, sent late: nostr: https://njump.me/", timeout=20)
        assert await second.finish() == 0
        [note] = await team.notes(relay, "Shipping the release today")
    finally:
        relay.stop()

    url = reply_line(late, "Post #1, sent late: ").removeprefix("Post #1, sent late: nostr: ")
    assert parse_event_id(url.removeprefix("https://njump.me/").strip()) == note["id"]
    assert (first.output + second.output).count("sent late") == 1, first.output + second.output
    assert len(statuses(mastodon, "Shipping the release today")) == 1


async def _crash_then_restart(data_dir: Path, text: str, network: str, env: dict[str, str]) -> str:
    """Post, die between the publish and its record, start again; return all output.

    Waiting parts are looked at every 15 s (the default): the restart's first look,
    at start, is the retry, and nothing else sends while the test runs.
    """
    doomed = await Console.start(data_dir, STARLING_CRASHPOINT="after_publish", **env)
    await doomed.type(f"/post --to {network} {text}")
    assert await doomed.died() == -signal.SIGKILL, doomed.output
    assert "Post #1" not in doomed.output, "it died before answering"

    survivor = await Console.start(data_dir, **env)
    await survivor.expect(f"Post #1, sent late: {network}: https://", timeout=20)
    await survivor.type(f"/post --to {network} And the next one")
    await survivor.expect("Post #2: ")
    assert await survivor.finish() == 0
    return doomed.output + survivor.output


async def test_kill_9_after_publishing_to_mastodon_posts_once(
    tmp_path: Path, mastodon: MastodonFake
) -> None:
    text = "Crash-proof announcement"
    output = await _crash_then_restart(tmp_path, text, "mastodon", plugin_env(mastodon))
    [status] = statuses(mastodon, text)
    keys = [
        r.headers.get("Idempotency-Key")
        for r in mastodon.requests
        if r.method == "POST" and r.path == "/api/v1/statuses"
    ]
    assert len(keys) == 3, "the first try, the retry after the crash, the next post"
    assert keys[0] == keys[1], "the retry carries the same Idempotency-Key"
    assert keys[0]
    assert keys[2] != keys[0], "another post, another key"
    assert f"Post #1, sent late: mastodon: {status['url']}" in output
    assert output.count("sent late") == 1, output
    assert len(statuses(mastodon, "And the next one")) == 1


async def test_kill_9_after_publishing_to_x_posts_once(tmp_path: Path, x_server: XServer) -> None:
    text = "Crash-proof tweet"
    output = await _crash_then_restart(tmp_path, text, "x", x_env(x_server))
    [tweet] = tweets(x_server, text)
    bodies = [json.loads(r["body"])["text"] for r in x_server.requests_to("POST", "/2/tweets")]
    assert bodies == [text, "And the next one"], "the retry read back, it did not post again"
    assert re.search(rf"Post #1, sent late: x: https://x\.com/\S+/status/{tweet['id']}", output)
    assert output.count("sent late") == 1, output


async def test_kill_9_after_publishing_to_nostr_posts_once(tmp_path: Path) -> None:
    team = NostrTeam()
    relay = await asyncio.to_thread(NostrRelay(tmp_path / "relay").start)
    try:
        text = "Crash-proof note"
        output = await _crash_then_restart(tmp_path / "data", text, "nostr", team.env(relay))
        [note] = await team.notes(relay, text)
    finally:
        relay.stop()
    assert (
        parse_event_id(
            reply_line(output, "Post #1, sent late: nostr: ")
            .removeprefix("Post #1, sent late: nostr: https://njump.me/")
            .strip()
        )
        == note["id"]
    )
    assert output.count("sent late") == 1, output


async def test_a_slow_answer_is_not_sent_a_second_time_meanwhile(
    tmp_path: Path, mastodon: MastodonFake
) -> None:
    mastodon.stall("/api/v1/statuses", 1.5, method="POST")  # posted, answered 1.5 s later
    console = await Console.start(tmp_path, **plugin_env(mastodon), STARLING_POSTBACK_CHECK_S="0.2")
    await console.type("/post --to mastodon Slow but once")
    await console.expect("Post #1: mastodon: https://")
    await asyncio.sleep(0.5)  # room for a late notice from the sender loop
    assert await console.finish() == 0
    assert len(statuses(mastodon, "Slow but once")) == 1, "the Idempotency-Key saved it"
    posted = [r for r in mastodon.requests if r.method == "POST" and r.path == "/api/v1/statuses"]
    assert "sent late" not in console.output, console.output
    assert len(posted) == 1, "one request for one post"


async def all_posts(devnet: Devnet, did: str) -> list[dict[str, Any]]:
    """Every post record in the account's repo on the PDS. Record keys come from
    idempotency keys, not the clock, so a new post can sort anywhere: read all pages."""
    records: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"repo": did, "collection": "app.bsky.feed.post", "limit": 100}
    async with httpx.AsyncClient() as client:
        while True:
            page = (
                await client.get(f"{devnet.pds}/xrpc/com.atproto.repo.listRecords", params=params)
            ).json()
            records += page["records"]
            if not page.get("cursor") or not page["records"]:
                return records
            params["cursor"] = page["cursor"]


@pytest.mark.atproto
async def test_a_post_to_bluesky_is_one_record_on_the_pds(devnet: Devnet, tmp_path: Path) -> None:
    bob = devnet.accounts["bob"]
    text = f"Hello from the team on Bluesky {secrets.token_hex(3)}"
    console = await Console.start(
        tmp_path,
        STARLING_BLUESKY__SERVICE=devnet.pds,
        STARLING_BLUESKY__APPVIEW=devnet.appview or devnet.pds,
        STARLING_BLUESKY__STREAM="false",
        STARLING_BLUESKY__HANDLE=bob.handle,
        STARLING_BLUESKY__APP_PASSWORD=bob.password,
    )
    await console.type(f"/post --to bluesky {text}")
    answer = reply_line(await console.expect("bluesky: https://", timeout=20), "Post #1: ")
    assert await console.finish() == 0
    records = [r for r in await all_posts(devnet, bob.did) if r["value"]["text"] == text]
    assert len(records) == 1, records
    rkey = records[0]["uri"].rsplit("/", 1)[1]
    assert answer == f"Post #1: bluesky: https://bsky.app/profile/{bob.handle}/post/{rkey}"
    assert bob.password not in console.output


@pytest.mark.atproto
async def test_a_thread_reaches_the_pds_once_through_a_kill_9(
    devnet: Devnet, tmp_path: Path
) -> None:
    """`/post --thread` over Bluesky's 300 graphemes: a reply chain on the real PDS, and a
    crash after the first part neither repeats it nor loses the rest."""
    bob = devnet.accounts["bob"]
    tag = secrets.token_hex(3)
    words = [f"w{n}{tag}" for n in range(40)]  # about 400 characters: two posts on Bluesky
    env = {
        "STARLING_BLUESKY__SERVICE": devnet.pds,
        "STARLING_BLUESKY__APPVIEW": devnet.appview or devnet.pds,
        "STARLING_BLUESKY__STREAM": "false",
        "STARLING_BLUESKY__HANDLE": bob.handle,
        "STARLING_BLUESKY__APP_PASSWORD": bob.password,
    }
    doomed = await Console.start(tmp_path, STARLING_CRASHPOINT="after_publish", **env)
    await doomed.type(f"/post --thread --to bluesky {' '.join(words)}")
    try:
        died = await doomed.died()
    except TimeoutError:
        raise AssertionError(doomed.output) from None
    assert died == -signal.SIGKILL, doomed.output

    survivor = await Console.start(tmp_path, **env)
    late = await survivor.expect("Post #1, sent late: bluesky: https://", timeout=30)
    assert await survivor.finish() == 0
    assert "(a thread of 2)" in reply_line(late, "Post #1, sent late: ")
    records = [r for r in await all_posts(devnet, bob.did) if tag in r["value"]["text"]]
    assert len(records) == 2, [r["value"]["text"] for r in records]
    first, second = sorted(records, key=lambda r: r["value"]["text"].endswith("(2/2)"))
    assert first["value"]["text"].endswith("(1/2)")
    assert "reply" not in first["value"]
    assert second["value"]["reply"]["parent"] == {"uri": first["uri"], "cid": first["cid"]}
    assert second["value"]["reply"]["root"] == {"uri": first["uri"], "cid": first["cid"]}
    said = " ".join(r["value"]["text"].rsplit(" (", 1)[0] for r in (first, second))
    assert said == " ".join(words)
