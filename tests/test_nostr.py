"""Nostr against REAL relays (PyPI `nostr-relay` subprocesses on loopback ports).

A whole Starling runs with a `RecordingChat`; the nostr plugin is loaded through
its entry point and configured from the environment, as an operator would.
Other people's notes are signed with `aionostr`, an independent client library.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aionostr.event import Event as AioEvent
from websockets.asyncio.client import connect as connect_ws
from websockets.asyncio.server import Server, ServerConnection, serve

from bot.clock import SystemClock
from bot.errors import Outcome, UpstreamError
from bot.health import HealthBook
from bot.model import Post, Target, TargetKind, Tombstone
from bot.protocols import Draft, PluginContext, StreamingSource
from plugins.nostr import create
from plugins.nostr.clamp import ClampBook, matched, probe_filter
from plugins.nostr.events import decode_event, sign
from plugins.nostr.keys import parse_event_id, parse_secret_key
from plugins.nostr.publisher import JOURNAL_FILE
from tests.conftest import RunningBot, StartBot
from tests.fakes.nostr_relay import Author, NostrRelay, free_port, relay_trio, running_relays

__all__ = ["relay_trio"]  # the session fixture, imported so pytest finds it here

Configure = Callable[..., None]


@pytest.fixture
def honest(relay_trio: tuple[NostrRelay, ...]) -> tuple[NostrRelay, NostrRelay]:
    return relay_trio[0], relay_trio[1]


@pytest.fixture
def lax(relay_trio: tuple[NostrRelay, ...]) -> NostrRelay:
    return relay_trio[2]


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Configure:
    """Point the nostr plugin at relays through STARLING_NOSTR__* (fast reconnects)."""

    def apply(*relays: NostrRelay | str, **options: Any) -> None:
        urls = [r if isinstance(r, str) else r.url for r in relays]
        monkeypatch.setenv("STARLING_NOSTR__RELAYS", json.dumps(urls))
        monkeypatch.setenv("STARLING_NOSTR__RECONNECT_MIN_S", "0.1")
        monkeypatch.setenv("STARLING_NOSTR__RECONNECT_MAX_S", "0.5")
        monkeypatch.setenv("STARLING_NOSTR__TIMEOUT_S", "5")
        for name, value in options.items():
            monkeypatch.setenv(f"STARLING_NOSTR__{name.upper()}", str(value))

    return apply


async def send(relay: NostrRelay, event: dict[str, Any]) -> None:
    accepted, reason = await asyncio.to_thread(relay.send, event)
    assert accepted, reason


async def eventually(check: Callable[[], bool], within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        while not check():
            await asyncio.sleep(0.02)


def outcomes(bot: RunningBot, relay: NostrRelay) -> dict[Outcome, int]:
    host = bot.app.health.hosts.get(("nostr", f"127.0.0.1:{relay.port}"))
    return dict(host.counts) if host else {}


async def connected(bot: RunningBot, *relays: NostrRelay) -> None:
    """Wait until the stream holds a websocket to each relay (an OK recorded for it)."""
    await eventually(lambda: all(outcomes(bot, r).get(Outcome.OK, 0) >= 2 for r in relays))


def texts(bot: RunningBot) -> list[str]:
    """The notes relayed (outage announcements, which a dead relay now earns, left out)."""
    return [s.message.text for s in bot.chat.sent if not s.message.title.startswith("Outage")]


async def quiet(seconds: float = 0.5) -> None:
    """Give a duplicate or a forged note the time it would need to show up."""
    await asyncio.sleep(seconds)


def nostr_source(tmp_path: Path, **config: Any) -> StreamingSource:
    """The Nostr plugin's source with this config, built as the app builds it."""
    clock = SystemClock()
    network = create(PluginContext("nostr", config, HealthBook(clock), clock, False, str(tmp_path)))
    source = network.source
    assert isinstance(source, StreamingSource)
    return source


# --- following ----------------------------------------------------------------------


async def test_follow_a_pubkey_and_new_notes_arrive_in_real_time(
    start_bot: StartBot, configure: Configure, honest: tuple[NostrRelay, NostrRelay]
) -> None:
    relay = honest[0]
    author = Author()
    await send(relay, author.event("an old note, from before the follow"))
    configure(relay)
    bot = await start_bot()
    answer = await bot.say(f"/follow nostr {author.npub}")
    assert "Following npub1" in answer
    assert "as #1" in answer
    await connected(bot, relay)

    note = author.event("Hello from nostr\nsecond line https://example.com/cat.png")
    await send(relay, note)
    [sent] = await bot.chat.wait_for(1, within_s=10)
    message = sent.message
    assert message.text == "Hello from nostr\nsecond line https://example.com/cat.png"
    assert message.network == "nostr"
    assert message.author.startswith(author.npub[:10])
    assert parse_event_id(message.link.removeprefix("https://njump.me/")) == note["id"]
    assert [image.url for image in message.images] == ["https://example.com/cat.png"]
    await quiet()
    assert texts(bot) == [message.text], "the old note must not be posted; the new one once"


async def test_follow_by_hex_key_and_the_display_name_comes_from_kind_0(
    start_bot: StartBot, configure: Configure, honest: tuple[NostrRelay, NostrRelay]
) -> None:
    relay = honest[0]
    author = Author()
    profile = json.dumps({"name": "ada", "display_name": "Ada Lovelace"})
    await send(relay, author.event(profile, kind=0))
    configure(relay)
    bot = await start_bot()
    assert "as #1" in await bot.say(f"/follow nostr {author.pubkey}")
    await connected(bot, relay)
    await send(relay, author.event("notes on the analytical engine"))
    [sent] = await bot.chat.wait_for(1)
    assert sent.message.author == "Ada Lovelace"


async def test_same_note_on_two_relays_is_shown_once_and_each_relay_is_read(
    start_bot: StartBot, configure: Configure, honest: tuple[NostrRelay, NostrRelay]
) -> None:
    first, second = honest
    author = Author()
    configure(first, second)
    bot = await start_bot()
    await bot.say(f"/follow nostr {author.npub}")
    await connected(bot, first, second)

    both = author.event("posted to two relays")
    await send(first, both)
    await send(second, both)
    await bot.chat.wait_for(1)
    only_second = author.event("only the second relay has this")
    await send(second, only_second)
    await bot.chat.wait_for(2)
    await quiet()
    await bot.poll_all()  # the polling backfill sees both relays too
    await quiet(0.2)
    assert texts(bot) == ["posted to two relays", "only the second relay has this"]


async def test_forged_notes_are_dropped_even_when_a_relay_serves_them(
    start_bot: StartBot,
    configure: Configure,
    honest: tuple[NostrRelay, NostrRelay],
    lax: NostrRelay,
) -> None:
    victim, forger = Author(), Author()
    genuine_earlier = victim.event("the real words")
    tampered = {**genuine_earlier, "content": "send all your coins to me"}
    # A note in the victim's name: the id is right, the signature is the forger's.
    forged_event = AioEvent(pubkey=victim.pubkey, content="I endorse this scam", kind=1, tags=[])
    forged_event.sig = forger.key.sign_message_hash(bytes.fromhex(forged_event.id))
    forged = dict(forged_event.to_json_object())
    configure(honest[0], lax)
    bot = await start_bot()
    await bot.say(f"/follow nostr {victim.npub}")
    await connected(bot, honest[0], lax)

    await send(lax, tampered)
    await send(lax, forged)
    assert {e["id"] for e in lax.query(authors=[victim.pubkey])} >= {forged["id"], tampered["id"]}
    await send(honest[0], victim.event("a genuine note"))
    await bot.chat.wait_for(1)
    await quiet()
    await bot.poll_all()
    await quiet(0.2)
    assert texts(bot) == ["a genuine note"]


async def test_hashtag_follow_and_search_relay_tagged_notes_from_anyone(
    start_bot: StartBot, configure: Configure, honest: tuple[NostrRelay, NostrRelay]
) -> None:
    relay = honest[0]
    tag = f"starling{secrets.token_hex(4)}"
    configure(relay)
    bot = await start_bot()
    assert f"Searching #{tag}" in await bot.say(f"/search nostr #{tag}")
    assert "as #2" in await bot.say(f"/follow nostr #{tag.upper()}", channel="other")
    await connected(bot, relay)

    alice, bob = Author(), Author()
    await send(relay, alice.event(f"tagged #{tag}", tags=[["t", tag]]))
    await send(relay, bob.event("not tagged, only mentions the word " + tag))
    await send(relay, bob.event("tagged too", tags=[["t", tag]]))
    await bot.chat.wait_for(4)
    await quiet()
    by_channel = sorted((s.channel.native_id, s.message.text) for s in bot.chat.sent)
    assert by_channel == sorted(
        (channel, text)
        for channel in ("general", "other")
        for text in (f"tagged #{tag}", "tagged too")
    )


async def test_a_relay_restart_loses_nothing_and_repeats_nothing(
    start_bot: StartBot, configure: Configure, tmp_path: Path
) -> None:
    relay = NostrRelay(tmp_path / "relay").start()
    try:
        author = Author()
        configure(relay)
        bot = await start_bot()
        await bot.say(f"/follow nostr {author.npub}")
        await connected(bot, relay)
        await send(relay, author.event("before the crash"))
        await bot.chat.wait_for(1)

        relay.kill()
        await eventually(lambda: outcomes(bot, relay).get(Outcome.STREAM_DROPPED, 0) >= 1)
        await eventually(lambda: outcomes(bot, relay).get(Outcome.REFUSED, 0) >= 1)
        # While Starling cannot connect, a note reaches the relay's database through
        # another process of the same relay: only `since` on reconnect can find it.
        side = NostrRelay(tmp_path / "side", db=relay.db)
        with running_relays(side):
            await send(side, author.event("while the relay was down"))
        relay.start()

        await bot.chat.wait_for(2, within_s=15)
        await send(relay, author.event("after the restart"))
        await bot.chat.wait_for(3)
        await quiet()
        assert texts(bot) == ["before the crash", "while the relay was down", "after the restart"]
        recovered = bot.app.health.hosts[("nostr", f"127.0.0.1:{relay.port}")]
        assert recovered.consecutive_failures == 0, "a successful reconnect clears the failures"
    finally:
        relay.kill()


async def test_the_stream_resumes_since_the_cursor_and_hands_each_event_over_once(
    honest: tuple[NostrRelay, NostrRelay], tmp_path: Path
) -> None:
    first, second = honest
    author = Author()
    now = int(time.time())
    await send(first, author.event("long before the cursor", created_at=now - 3600))
    await send(second, author.event("just after the cursor", created_at=now - 300))
    clock = SystemClock()
    health = HealthBook(clock)
    config = {"relays": [first.url, second.url], "reconnect_min_s": "0.1"}
    network = create(PluginContext("nostr", config, health, clock, False, str(tmp_path)))
    assert network.source is not None
    target = await network.source.resolve(TargetKind.ACCOUNT, author.npub)
    received: list[tuple[list[str], str | None]] = []

    async def sink(_: Target, posts: list[Post], cursor: str | None) -> None:
        received.append(([p.text for p in posts], cursor))

    stream = network.source
    assert isinstance(stream, StreamingSource)
    task = asyncio.create_task(stream.stream([target], {target.resource_key: str(now - 600)}, sink))
    try:
        await eventually(lambda: bool(received))
        await eventually(lambda: all(h.counts.get(Outcome.OK) for h in health.hosts.values()))
        await eventually(lambda: len(health.hosts) == 2)
        both = author.event("live on both relays")
        await send(first, both)
        await send(second, both)
        await eventually(lambda: len(received) >= 2)
        await quiet()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert received == [
        (["just after the cursor"], str(now - 300)),
        (["live on both relays"], str(both["created_at"])),
    ]


# --- polling (fetch) ----------------------------------------------------------------


async def test_fetch_asks_since_the_cursor_across_relays(
    start_bot: StartBot, configure: Configure, honest: tuple[NostrRelay, NostrRelay]
) -> None:
    first, second = honest
    author = Author()
    now = int(time.time())
    await send(first, author.event("an hour ago", created_at=now - 3600))
    await send(second, author.event("a minute ago", created_at=now - 60))
    configure(first, second, since_overlap_s=0)
    bot = await start_bot()
    source = bot.app.networks["nostr"].source
    assert source is not None
    target = await source.resolve(TargetKind.ACCOUNT, author.npub)

    everything = await source.fetch(target, None)
    assert sorted(p.text for p in everything.posts) == ["a minute ago", "an hour ago"]
    assert everything.cursor == str(now - 60)
    recent = await source.fetch(target, str(now - 600))
    assert [p.text for p in recent.posts] == ["a minute ago"]
    nothing_new = await source.fetch(target, str(now - 59))
    assert nothing_new.posts == []
    assert nothing_new.cursor == str(now - 59), "the cursor never moves backwards"


async def test_polling_beside_the_stream_shows_a_note_once(
    start_bot: StartBot, configure: Configure, honest: tuple[NostrRelay, NostrRelay]
) -> None:
    relay = honest[1]
    author = Author()
    configure(relay)
    bot = await start_bot()
    await bot.say(f"/follow nostr {author.npub}")
    await send(relay, author.event("seen by the poll and the stream"))
    await bot.poll_all()
    await bot.chat.wait_for(1)
    await quiet()
    await bot.poll_all()
    assert texts(bot) == ["seen by the poll and the stream"]


# --- bad input ----------------------------------------------------------------------


async def test_bad_input_gets_one_line_and_stores_nothing(
    start_bot: StartBot, configure: Configure, honest: tuple[NostrRelay, NostrRelay]
) -> None:
    configure(honest[0])
    bot = await start_bot()
    replies = [
        await bot.say("/follow nostr npub1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"),
        await bot.say("/follow nostr alice@example.com"),
        await bot.say("/search nostr nostr news"),
        await bot.say("/follow nostr #two#tags"),
    ]
    for reply in replies:
        assert reply.startswith(("/follow: ", "/search: "))
        assert "\n" not in reply
    assert "is not a valid npub or hex public key" in replies[0]
    assert "'alice@example.com' is not a valid npub or hex public key" in replies[1]
    assert "write it with #, like /search nostr #python" in replies[2]
    assert "is not a hashtag" in replies[3]
    assert (await bot.say("/list")).startswith("No subscriptions")


async def test_unreachable_relay_is_one_line_and_shows_in_status(
    start_bot: StartBot, configure: Configure
) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"
    configure(dead)
    bot = await start_bot()
    author = Author()
    reply = await bot.say(f"/follow nostr {author.npub}")
    assert reply.startswith("/follow: could not read")
    assert "no nostr relay answered" in reply
    assert "refused the connection" in reply
    assert "\n" not in reply
    assert (await bot.say("/list")).startswith("No subscriptions")
    status = await bot.say("/status")
    [relay_line] = [line for line in status.splitlines() if dead.removeprefix("ws://") in line]
    assert "failures in a row" in relay_line
    assert "refused the connection" in relay_line


async def test_without_relays_following_says_how_to_configure_them(
    start_bot: StartBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STARLING_NOSTR__RELAYS", raising=False)
    bot = await start_bot()
    reply = await bot.say(f"/follow nostr {Author().npub}")
    assert reply.startswith("/follow: no nostr relays are configured")
    assert "STARLING_NOSTR__RELAYS" in reply


# --- publishing ---------------------------------------------------------------------


@pytest.fixture
def secret_key() -> str:
    return secrets.token_hex(32)


def publisher_of(bot: RunningBot) -> Any:
    publisher = bot.app.networks["nostr"].publisher
    assert publisher is not None
    return publisher


async def test_a_published_note_is_signed_on_every_relay_and_reads_back(
    start_bot: StartBot,
    configure: Configure,
    honest: tuple[NostrRelay, NostrRelay],
    secret_key: str,
) -> None:
    configure(*honest, secret_key=secret_key)
    bot = await start_bot()
    published = await publisher_of(bot).publish(Draft("Release 2.0 is out #Starling"), "post-1")
    for relay in honest:  # each relay checked the BIP-340 signature before storing it
        [stored] = relay.query(ids=[published.native_id])
        assert stored["content"] == "Release 2.0 is out #Starling"
        assert ["t", "starling"] in stored["tags"]
        assert AioEvent(**stored).verify(), "an independent implementation agrees"
    assert parse_event_id(published.url.removeprefix("https://njump.me/")) == published.native_id

    source = bot.app.networks["nostr"].source
    assert source is not None
    target = await source.resolve(TargetKind.ACCOUNT, stored["pubkey"])
    result = await source.fetch(target, None)
    assert [(p.native_id, p.text) for p in result.posts] == [
        (published.native_id, "Release 2.0 is out #Starling")
    ]


async def test_publishing_again_with_the_same_key_makes_no_second_note(
    start_bot: StartBot,
    configure: Configure,
    honest: tuple[NostrRelay, NostrRelay],
    secret_key: str,
    tmp_path: Path,
) -> None:
    configure(*honest, secret_key=secret_key)
    bot = await start_bot()
    first = await publisher_of(bot).publish(Draft("exactly once"), "starling:1:post-9")
    await asyncio.sleep(1.1)  # a later second: a naive retry would sign a new event
    again = await publisher_of(bot).publish(Draft("exactly once"), "starling:1:post-9")
    await bot.stop()
    restarted = await start_bot()  # same data dir: the journal survives a restart
    after_restart = await publisher_of(restarted).publish(
        Draft("exactly once"), "starling:1:post-9"
    )
    other = await publisher_of(restarted).publish(Draft("exactly once"), "starling:1:post-10")

    assert first == again == after_restart
    assert other.native_id != first.native_id
    assert not (tmp_path / "data" / JOURNAL_FILE).exists(), "the journal is in the database"
    pubkey = honest[0].query(ids=[first.native_id])[0]["pubkey"]
    for relay in honest:
        assert len(relay.query(authors=[pubkey], kinds=[1])) == 2


async def test_the_old_journal_file_is_imported_once_and_its_event_resent(
    start_bot: StartBot,
    configure: Configure,
    honest: tuple[NostrRelay, NostrRelay],
    secret_key: str,
    tmp_path: Path,
) -> None:
    configure(*honest, secret_key=secret_key)
    key = parse_secret_key(secret_key)
    signed = sign(key, kind=1, content="from the old file", tags=(), created_at=int(time.time()))
    old = tmp_path / "data" / JOURNAL_FILE
    old.parent.mkdir(parents=True, exist_ok=True)
    row = {"key": "starling:1:post-old", "at": time.time(), "event": signed.to_wire()}
    old.write_text(json.dumps(row) + "\n" + '{"key": "torn', encoding="utf-8")
    bot = await start_bot()
    resent = await publisher_of(bot).publish(Draft("from the old file"), "starling:1:post-old")
    assert resent.native_id == signed.id, "the journalled event, not a new one"
    assert not old.exists()
    assert (old.parent / f"{JOURNAL_FILE}.imported").is_file()
    for relay in honest:
        assert [e["id"] for e in relay.query(authors=[signed.pubkey], kinds=[1])] == [signed.id]


async def test_delete_publishes_a_kind_5_and_relays_drop_the_note(
    start_bot: StartBot,
    configure: Configure,
    honest: tuple[NostrRelay, NostrRelay],
    secret_key: str,
) -> None:
    configure(*honest, secret_key=secret_key)
    bot = await start_bot()
    published = await publisher_of(bot).publish(Draft("oops, wrong channel"), "post-2")
    await publisher_of(bot).delete(published.native_id)
    for relay in honest:
        assert relay.query(ids=[published.native_id]) == []
        [deletion] = relay.query(kinds=[5], tag_e=[published.native_id])
        assert ["e", published.native_id] in deletion["tags"]


async def test_a_reply_carries_nip10_markers_and_the_parent_author(
    start_bot: StartBot,
    configure: Configure,
    honest: tuple[NostrRelay, NostrRelay],
    secret_key: str,
) -> None:
    relay = honest[0]
    author = Author()
    root = author.event("what should we build next?")
    await send(relay, root)
    reply_to_root = author.event("a follow-up", tags=[["e", root["id"], "", "root"]])
    await send(relay, reply_to_root)
    configure(relay, secret_key=secret_key)
    bot = await start_bot()
    direct = await publisher_of(bot).publish(Draft("a bot!", reply_to=root["id"]), "r1")
    nested = await publisher_of(bot).publish(Draft("agreed", reply_to=reply_to_root["id"]), "r2")
    [direct_event] = relay.query(ids=[direct.native_id])
    [nested_event] = relay.query(ids=[nested.native_id])
    assert direct_event["tags"] == [["e", root["id"], "", "root"], ["p", author.pubkey]]
    assert nested_event["tags"] == [
        ["e", root["id"], "", "root"],
        ["e", reply_to_root["id"], "", "reply"],
        ["p", author.pubkey],
    ]


async def test_publishing_succeeds_while_one_relay_is_down_and_fails_when_all_are(
    start_bot: StartBot,
    configure: Configure,
    honest: tuple[NostrRelay, NostrRelay],
    secret_key: str,
) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"
    configure(honest[0], dead, secret_key=secret_key)
    bot = await start_bot()
    published = await publisher_of(bot).publish(Draft("one relay is enough"), "p1")
    assert honest[0].query(ids=[published.native_id])
    await bot.stop()
    configure(dead, secret_key=secret_key)
    lonely = await start_bot()
    with pytest.raises(UpstreamError) as err:
        await publisher_of(lonely).publish(Draft("nobody hears this"), "p2")
    assert err.value.outcome is Outcome.REFUSED
    assert "no nostr relay accepted the event" in str(err.value)


# --- many follows ---------------------------------------------------------------------


class CountingProxy:
    """A loopback websocket proxy in front of a real relay that counts what the plugin asks.

    It records each connection's REQ messages, can drop every open connection (as a
    relay restart would) and can refuse new ones for a while.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.reqs: list[list[list[Any]]] = []  # per connection, in order
        self.refusing = False
        self._open: set[ServerConnection] = set()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def __aenter__(self) -> CountingProxy:
        self._server = await serve(self._handle, "127.0.0.1", 0, max_size=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def drop_all(self) -> None:
        for client in list(self._open):
            await client.close(1011)

    async def _handle(self, client: ServerConnection) -> None:
        if self.refusing:
            await client.close(1013)
            return
        reqs: list[list[Any]] = []
        self.reqs.append(reqs)
        self._open.add(client)
        try:
            async with connect_ws(self.upstream, proxy=None, max_size=None) as relay:

                async def inbound() -> None:
                    async for frame in client:
                        message = json.loads(frame)
                        if message[0] == "REQ":
                            reqs.append(message)
                        await relay.send(frame)

                async def outbound() -> None:
                    async for frame in relay:
                        await client.send(frame)

                pumps = [asyncio.create_task(inbound()), asyncio.create_task(outbound())]
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._open.discard(client)


def authors_in(req: list[Any]) -> set[str]:
    return {a for f in req[2:] if f.get("kinds") != [0] for a in f.get("authors", [])}


async def test_300_follows_cost_two_reqs_on_one_connection_per_relay_and_resume_per_target(
    honest: tuple[NostrRelay, NostrRelay], tmp_path: Path
) -> None:
    first, second = honest
    authors = [Author() for _ in range(300)]
    quiet_one, early, late = authors[7], authors[0], authors[1]
    now = int(time.time())
    # `late` has a newer cursor than `early`: their shared REQ asks from `early`'s,
    # but a note `late` already had (older than its own cursor) must not come back.
    await send(first, early.event("early: after its cursor", created_at=now - 500))
    await send(first, late.event("late: before its cursor", created_at=now - 500))
    async with CountingProxy(first.url) as proxy_a, CountingProxy(second.url) as proxy_b:
        source = nostr_source(
            tmp_path,
            relays=[proxy_a.url, proxy_b.url],
            reconnect_min_s="0.1",
            reconnect_max_s="0.2",
            since_overlap_s="60",
        )
        targets = [await source.resolve(TargetKind.ACCOUNT, a.npub) for a in authors]
        cursors: dict[str, str | None] = {t.resource_key: None for t in targets}
        cursors[targets[0].resource_key] = str(now - 600)
        cursors[targets[1].resource_key] = str(now - 300)
        received: list[tuple[str, str, str | None]] = []

        async def sink(target: Target, posts: list[Post], cursor: str | None) -> None:
            received.extend((target.key, p.text, cursor) for p in posts)

        task = asyncio.create_task(source.stream(targets, cursors, sink))
        try:
            await eventually(
                lambda: all(len(p.reqs) == 1 and len(p.reqs[0]) == 2 for p in (proxy_a, proxy_b))
            )
            for proxy in (proxy_a, proxy_b):
                [reqs] = proxy.reqs
                assert set().union(*map(authors_in, reqs)) == {a.pubkey for a in authors}
            await eventually(lambda: bool(received))
            live = quiet_one.event("one note by one of 300, on both relays")
            await send(first, live)
            await send(second, live)
            await eventually(lambda: len(received) >= 2)
            await quiet()
            assert received == [
                (early.pubkey, "early: after its cursor", str(now - 500)),
                (quiet_one.pubkey, live["content"], str(live["created_at"])),
            ]

            # Both relays drop; while Starling cannot get back, a note lands on one.
            for proxy in (proxy_a, proxy_b):
                proxy.refusing = True
                await proxy.drop_all()
            missed = quiet_one.event("published while Starling was away")
            await send(second, missed)
            for proxy in (proxy_a, proxy_b):
                proxy.refusing = False
            await eventually(lambda: len(received) >= 3)
            await quiet()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert received[2:] == [(quiet_one.pubkey, missed["content"], str(missed["created_at"]))]
    for proxy in (proxy_a, proxy_b):
        resumed = proxy.reqs[-1]
        assert len(resumed) <= 2
        dated = [f for req in resumed for f in req[2:] if "since" in f and f["kinds"] == [1, 6]]
        # The resume asks from the lowest cursor it holds (early's) minus the overlap,
        # and quiet_one (now with a cursor) is asked from no later than its own.
        [floor] = {f["since"] for f in dated}
        assert floor == now - 500 - 60
        assert {early.pubkey, late.pubkey, quiet_one.pubkey} <= {
            a for f in dated for a in f["authors"]
        }


async def test_polls_of_many_follows_share_one_req_per_relay_and_each_gets_its_own(
    honest: tuple[NostrRelay, NostrRelay], tmp_path: Path
) -> None:
    first, second = honest
    authors = [Author() for _ in range(40)]
    chatty = authors[0]
    now = int(time.time())
    for n, author in enumerate(authors):
        await send(first if n % 2 else second, author.event(f"note {n}", created_at=now - 100))
    for n in range(3):
        await send(first, chatty.event(f"chatty {n}", created_at=now - 50 + n))
    async with CountingProxy(first.url) as proxy_a, CountingProxy(second.url) as proxy_b:
        source = nostr_source(
            tmp_path, relays=[proxy_a.url, proxy_b.url], fetch_batch_window_s="0.2"
        )
        targets = [await source.resolve(TargetKind.ACCOUNT, a.npub) for a in authors]

        results = await asyncio.gather(*(source.fetch(t, None) for t in targets))
        for proxy in (proxy_a, proxy_b):
            # One connection per relay for all 40 polls; then, as this relay has not
            # yet sent an answer this large, one small REQ below its oldest note finds
            # nothing more: the answer was whole (see plugins/nostr/clamp.py).
            reqs, [probe] = proxy.reqs
            assert len(reqs) == 2  # notes and profiles
            assert set().union(*map(authors_in, reqs)) == {a.pubkey for a in authors}
            assert all(f["until"] == now - 100 for f in probe[2:])
        assert sorted(p.text for p in results[0].posts) == [
            "chatty 0", "chatty 1", "chatty 2", "note 0"
        ]  # fmt: skip
        for n, result in enumerate(results[1:], start=1):
            assert [p.text for p in result.posts] == [f"note {n}"]

        # A relay that sends the whole `limit` may have cut a busy author's notes short:
        # that batch is asked again one follow at a time, so no follow loses notes.
        for proxy in (proxy_a, proxy_b):
            proxy.reqs.clear()
        tight = nostr_source(
            tmp_path, relays=[proxy_a.url, proxy_b.url], fetch_batch_window_s="0.2", fetch_limit="1"
        )
        two = await asyncio.gather(*(tight.fetch(t, None) for t in targets[:2]))
        assert sorted(p.text for p in two[0].posts) == ["chatty 2", "note 0"]  # one per relay
        assert [p.text for p in two[1].posts] == ["note 1"]
        assert len(proxy_a.reqs) == 3, "the batch, then each follow alone"


async def test_a_relay_that_clamps_its_limit_lower_loses_no_follow_its_notes(
    tmp_path: Path,
) -> None:
    """The relay sends at most 5 events per REQ whatever `limit` asks (as its config
    says, not its NIP-11 document); a batch of four follows asks for 4 x 3."""
    authors = [Author() for _ in range(4)]
    now = int(time.time())
    with running_relays(NostrRelay(tmp_path / "clamping", max_limit=5)) as (relay,):
        for n, author in enumerate(authors):
            for k in range(3):
                await send(relay, author.event(f"{n}.{k}", created_at=now - 100 + 10 * n + k))
        async with CountingProxy(relay.url) as proxy:
            source = nostr_source(
                tmp_path, relays=[proxy.url], fetch_batch_window_s="0.2", fetch_limit="3"
            )
            targets = [await source.resolve(TargetKind.ACCOUNT, a.npub) for a in authors]

            results = await asyncio.gather(*(source.fetch(t, None) for t in targets))
            for n, result in enumerate(results):
                assert sorted(p.text for p in result.posts) == [f"{n}.0", f"{n}.1", f"{n}.2"]
            # The batch (12 asked, 5 sent), the probe below its oldest note that finds
            # more, then each follow alone.
            notes = [r for conn in proxy.reqs for r in conn if r[2].get("kinds") != [0]]
            assert [r[2]["limit"] for r in notes][:2] == [12, 2]  # room for one more
            assert len(notes) == 2 + 4

            # Learned: the next batch that gets 5 goes one by one at once, no probe.
            proxy.reqs.clear()
            again = await asyncio.gather(*(source.fetch(t, None) for t in targets))
            assert [len(r.posts) for r in again] == [3, 3, 3, 3]
            notes = [r for conn in proxy.reqs for r in conn if r[2].get("kinds") != [0]]
            assert [r[2]["limit"] for r in notes] == [12, 3, 3, 3, 3]


async def test_a_clamping_relay_beside_a_full_one_costs_no_follow_a_note(
    tmp_path: Path,
) -> None:
    """What one relay cuts at is never asked of the others, nor of one follow alone."""
    authors = [Author() for _ in range(4)]
    now = int(time.time())
    clamping, full = NostrRelay(tmp_path / "clamping", max_limit=5), NostrRelay(tmp_path / "full")
    with running_relays(clamping, full):
        for relay in (clamping, full):
            for n, author in enumerate(authors):
                for k in range(10 if n == 0 else 1):
                    await send(relay, author.event(f"{n}.{k}", created_at=now - 1000 + 10 * n + k))
        source = nostr_source(tmp_path, relays=[clamping.url, full.url], fetch_batch_window_s="0.2")
        targets = [await source.resolve(TargetKind.ACCOUNT, a.npub) for a in authors]
        for _ in range(2):  # learning, then learned
            results = await asyncio.gather(*(source.fetch(t, None) for t in targets))
            assert [len(r.posts) for r in results] == [10, 1, 1, 1]


def test_a_probe_asks_each_filter_below_its_own_oldest_note() -> None:
    """A dated and an undated filter in one batch: each is probed within its own range."""
    dated, undated = Author(), Author()
    now = int(time.time())
    notes = [decode_event(dated.event("d", created_at=now - 100 + k)) for k in range(3)]
    notes.append(decode_event(undated.event("u", created_at=now - 100_000)))
    filters: list[dict[str, Any]] = [
        {"kinds": [1, 6], "authors": [dated.pubkey], "limit": 100, "since": now - 1000},
        {"kinds": [1, 6], "authors": [undated.pubkey], "limit": 100},
    ]
    by_filter = [[e for e in notes if matched(f, e)] for f in filters]
    assert [len(found) for found in by_filter] == [3, 1]
    first, second = (probe_filter(f, found) for f, found in zip(filters, by_filter, strict=True))
    assert (first["since"], first["until"], first["limit"]) == (now - 1000, now - 100, 2)
    assert (second["until"], second["limit"]) == (now - 100_000, 2)


def test_a_cut_learned_by_mistake_is_forgotten_when_the_relay_sends_more() -> None:
    """A note that reached the relay between its answer and the probe looks like a cut."""
    book = ClampBook()
    assert book.needs_probe("wss://r", [2])
    book.learn("wss://r", [2], cut_at=2)
    assert book.known_cut("wss://r", [2]), "an answer as large as the cut counts as cut"
    assert not book.known_cut("wss://r", [1])
    assert not book.known_cut("wss://r", [3]), "it sent more: it does not cut at 2"
    assert not book.known_cut("wss://r", [2]), "and the lesson is gone"
    assert not book.known_cut("wss://other", [50]), "one relay's cut is its own"


async def test_a_kind_5_deletion_by_the_author_retracts_the_note_and_no_one_elses_does(
    honest: tuple[NostrRelay, NostrRelay], tmp_path: Path
) -> None:
    relay = honest[0]
    author, stranger = Author(), Author()
    source = nostr_source(
        tmp_path, relays=[relay.url], reconnect_min_s="0.1", reconnect_max_s="0.2"
    )
    target = await source.resolve(TargetKind.ACCOUNT, author.npub)
    posts: list[str] = []
    retracted: list[Tombstone] = []

    async def sink(
        target: Target, new: list[Post], cursor: str | None, *, deleted: Any = ()
    ) -> None:
        posts.extend(p.native_id for p in new)
        retracted.extend(deleted)

    task = asyncio.create_task(source.stream([target], {target.resource_key: None}, sink))
    try:
        await asyncio.sleep(0.5)
        note = author.event("soon gone")
        await send(relay, note)
        await eventually(lambda: posts == [note["id"]])
        # Someone else cannot delete the author's note, whatever they sign.
        await send(relay, stranger.event("", kind=5, tags=[["e", note["id"]]]))
        await quiet()
        assert retracted == []
        await send(relay, author.event("oops", kind=5, tags=[["e", note["id"]]]))
        await eventually(lambda: bool(retracted))
        await quiet()
        assert retracted == [Tombstone("nostr", note["id"])]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
