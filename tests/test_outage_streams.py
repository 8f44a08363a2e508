"""Streaming networks going down, as a channel sees it, message by message.

Nostr runs against REAL relays (PyPI `nostr-relay` subprocesses): one relay of
two down is degraded and says nothing; both down is one announcement per channel,
edited in place, surviving a restart of Starling, and resolved with the posts
caught up once the relays are back. Bluesky's Jetstream stand-ins drop every
stream or answer 429 for minutes: one announcement, edited, one resolution with
the right duration and count, nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.errors import Outcome
from bot.outage import HostState
from bot.testing import FakeClock, RecordingChat
from bot.timefmt import hhmm
from tests.conftest import RunningBot, StartBot
from tests.fakes.jetstream import EventLog, FakeJetstream
from tests.fakes.mastodon_server import MastodonFake, plugin_env
from tests.fakes.nostr_relay import Author, NostrRelay, running_relays
from tests.test_bluesky_stream import ALICE, FakeAppView, appview, jetstreams
from tests.test_outage import notices

__all__ = ["appview", "jetstreams"]  # fixtures, imported so pytest finds them here


@pytest.fixture
def relay_pair(tmp_path: Path) -> Iterator[tuple[NostrRelay, NostrRelay]]:
    with running_relays(NostrRelay(tmp_path / "relay-1"), NostrRelay(tmp_path / "relay-2")) as (
        first,
        second,
    ):
        yield first, second


def use_relays(monkeypatch: pytest.MonkeyPatch, *relays: NostrRelay) -> None:
    monkeypatch.setenv("STARLING_NOSTR__RELAYS", json.dumps([r.url for r in relays]))
    monkeypatch.setenv("STARLING_NOSTR__RECONNECT_MIN_S", "0.05")
    monkeypatch.setenv("STARLING_NOSTR__RECONNECT_MAX_S", "0.2")
    monkeypatch.setenv("STARLING_NOSTR__TIMEOUT_S", "3")


async def eventually(check: Callable[[], bool], within_s: float = 15.0) -> None:
    async with asyncio.timeout(within_s):
        while not check():
            await asyncio.sleep(0.02)


async def refreshed_notice(
    bot: RunningBot, chat: RecordingChat, channel: str, wanted: str, within_s: float = 10.0
) -> str:
    """The channel's one outage notice once an in-place refresh shows `wanted`.

    A stream that is cut right after its handshake records a success, then the drop:
    for that moment the outage reads "answering again", so the refresh is tried again
    (each time after the queued state changes are handled) until it shows `wanted`.
    """
    async with asyncio.timeout(within_s):
        while True:
            await bot.app.outages.settle()
            await bot.app.outages.refresh()
            [notice] = notices(chat, channel)
            if wanted in notice:
                return notice
            await asyncio.sleep(0.05)


def relay_state(bot: RunningBot, relay: NostrRelay) -> HostState:
    tracker = bot.app.outages.trackers.get(("nostr", f"127.0.0.1:{relay.port}"))
    return tracker.state if tracker else HostState.UP


def pool_state(bot: RunningBot) -> HostState:
    tracker = bot.app.outages.trackers.get(("nostr", "all relays"))
    return tracker.state if tracker else HostState.UP


def oks(bot: RunningBot, relay: NostrRelay) -> int:
    host = bot.app.health.hosts.get(("nostr", f"127.0.0.1:{relay.port}"))
    return host.counts.get(Outcome.OK, 0) if host else 0


async def publish(relays: tuple[NostrRelay, ...], event: dict[str, object]) -> None:
    """The author's client sends to every relay, as nostr clients do."""
    for relay in relays:
        accepted, reason = await asyncio.to_thread(relay.send, event)
        assert accepted, reason


def posts_in(chat: RecordingChat, channel: str) -> list[str]:
    return sorted(s.message.text for s in chat.in_channel(channel) if s.message.network == "nostr")


async def test_all_nostr_relays_down_is_one_outage_per_channel_and_nothing_is_lost(
    start_bot: StartBot,
    relay_pair: tuple[NostrRelay, NostrRelay],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_relays(monkeypatch, *relay_pair)
    first, second = relay_pair
    clock = FakeClock(start=datetime.now(UTC).replace(second=0, microsecond=0))
    chat = RecordingChat()
    ada, bob, cy = Author(), Author(), Author()
    tag = f"starling{ada.pubkey[:8]}"
    bot = await start_bot(chat, clock=clock)
    assert "as #1" in await bot.say(f"/follow nostr {ada.npub} --every 1h", channel="alpha")
    assert "as #2" in await bot.say(f"/follow nostr #{tag} --every 1h", channel="alpha")
    assert "as #3" in await bot.say(f"/follow nostr {bob.npub} --every 1h", channel="beta")
    await eventually(lambda: oks(bot, first) >= 4 and oks(bot, second) >= 4)
    await publish(relay_pair, ada.event("before the outage"))
    await eventually(lambda: posts_in(chat, "alpha") == ["before the outage"])

    # One relay of two down: degraded, and no follow misses anything.
    await asyncio.to_thread(first.stop)
    await eventually(lambda: relay_state(bot, first) is HostState.DOWN)
    await bot.app.outages.settle()
    assert pool_state(bot) is HostState.DEGRADED
    assert notices(chat, "alpha") == notices(chat, "beta") == []
    assert not bot.app.network_down("nostr")

    # Both down: the follows hear nothing at all now. One announcement per channel.
    await asyncio.to_thread(second.stop)
    await eventually(lambda: pool_state(bot) is HostState.DOWN)
    await bot.app.outages.settle()
    alpha, beta = notices(chat, "alpha"), notices(chat, "beta")
    assert len(alpha) == len(beta) == 1
    assert "all relays (nostr) are not answering since" in alpha[0]
    assert "(2 follows here affected)" in alpha[0]
    assert "(1 follow here affected)" in beta[0]
    assert bot.app.network_down("nostr")

    clock.advance(minutes=25)
    await bot.app.outages.refresh()
    assert len(notices(chat, "alpha")) == 1, "updates edit the announcement in place"
    assert "25 min so far" in notices(chat, "alpha")[0]

    # Starling restarts in the middle: the announcement is neither repeated nor forgotten,
    # and the follows are linked to the relays by the stream alone (no poll has run).
    await bot.stop()
    bot = await start_bot(chat, clock=clock)
    await asyncio.sleep(1.0)  # the stream retries the dead relays meanwhile
    await bot.app.outages.settle()
    assert pool_state(bot) is HostState.DOWN
    assert len(notices(chat, "alpha")) == len(notices(chat, "beta")) == 1
    assert all(not state.host for state in bot.app.scheduler.states.values())

    # Meanwhile notes reach the relays' databases through other processes of the same
    # relays (Starling cannot see those): only the resume from the cursor finds them.
    missed = [
        ada.event("missed one"),
        ada.event("missed two"),
        cy.event(f"tagged #{tag}", tags=[["t", tag]]),
        bob.event("missed by beta"),
    ]
    sides = tuple(NostrRelay(r.workdir.parent / f"side-{r.port}", db=r.db) for r in relay_pair)
    with running_relays(*sides):
        for event in missed:
            await publish(sides, event)

    # Back 17 minutes later: the stored notes come first, then the relays count as up.
    clock.advance(minutes=17)
    for relay in relay_pair:
        relay.launch()
    for relay in relay_pair:
        await asyncio.to_thread(relay.wait_ready)
    await eventually(lambda: "back: resolved" in notices(chat, "beta")[0])
    await bot.app.outages.settle()
    for channel in ("alpha", "beta"):
        [final] = notices(chat, channel)
        assert "all relays (nostr) are back: resolved after 42 min; 4 posts caught up." in final
    assert posts_in(chat, "alpha") == sorted(
        ["before the outage", "missed one", "missed two", f"tagged #{tag}"]
    ), "nothing lost, nothing doubled"
    assert posts_in(chat, "beta") == ["missed by beta"]
    assert "lasted 42 min, 4 posts caught up" in await bot.say("/status")


# --- Bluesky: Jetstream stand-ins that drop their streams or answer 429 for minutes ----


def use_jetstream(
    monkeypatch: pytest.MonkeyPatch, appview: FakeAppView, hosts: list[FakeJetstream]
) -> None:
    monkeypatch.setenv("STARLING_BLUESKY__APPVIEW", appview.url)
    monkeypatch.setenv("STARLING_BLUESKY__SERVICE", appview.url)
    monkeypatch.setenv("STARLING_BLUESKY__JETSTREAM", ",".join(h.url for h in hosts))
    monkeypatch.setenv("STARLING_BLUESKY__STREAM_RECONNECT_MAX_S", "0.1")
    monkeypatch.setenv("STARLING_BLUESKY__STREAM_CHECKPOINT_S", "0.3")


def jetstream_pool(bot: RunningBot) -> HostState:
    tracker = bot.app.outages.trackers.get(("bluesky", "all Jetstream hosts"))
    return tracker.state if tracker else HostState.UP


async def flowing_again(log: EventLog) -> None:
    """After a steady spell any event (here an identity event) tells the stream is healthy."""
    await asyncio.sleep(0.4)
    identity = {"did": ALICE["did"], "handle": ALICE["handle"], "seq": 1, "time": "2026-11-23"}
    await log.append({"did": ALICE["did"], "kind": "identity", "identity": identity})


def bluesky_posts(chat: RecordingChat) -> list[str]:
    return [s.message.text for s in chat.sent if s.message.network == "bluesky"]


async def _jetstream_outage(
    start_bot: StartBot,
    appview: FakeAppView,
    jetstreams: tuple[EventLog, list[FakeJetstream]],
    monkeypatch: pytest.MonkeyPatch,
    *,
    break_hosts: Callable[[FakeJetstream], None],
    mend_hosts: Callable[[FakeJetstream], None],
    minutes: int,
    expected: str,
) -> None:
    """One outage of every Jetstream host, as the channel sees it message by message."""
    log, hosts = jetstreams
    use_jetstream(monkeypatch, appview, hosts)
    clock = FakeClock()
    chat = RecordingChat()
    bot = await start_bot(chat, clock=clock)
    assert "as #1" in await bot.say("/follow bluesky @alice.test --every 1h")
    await eventually(lambda: any(h.requests for h in hosts))
    await log.post(ALICE["did"], "3lzzzzzzzzz40", "Before the outage")
    await chat.wait_for(1)

    for host in hosts:
        break_hosts(host)
        await host.drop_all()
    await eventually(lambda: jetstream_pool(bot) is HostState.DOWN)
    await bot.app.outages.settle()
    [notice] = notices(chat, "general")
    assert f"all Jetstream hosts (bluesky) {expected} since 14:02 UTC" in notice
    assert "(1 follow here affected)" in notice
    for n in range(3):
        await log.post(ALICE["did"], f"3lzzzzzzzzz5{n}", f"Missed {n}")

    clock.advance(minutes=minutes)
    await asyncio.sleep(0.3)  # the client keeps failing meanwhile
    # One message, edited in place.
    await refreshed_notice(bot, chat, "general", f"{minutes} min so far")

    for host in hosts:
        mend_hosts(host)
    await eventually(lambda: len(bluesky_posts(chat)) == 4)
    await flowing_again(log)
    await eventually(lambda: "back: resolved" in notices(chat, "general")[0])
    await bot.app.outages.settle()
    [final] = notices(chat, "general")
    assert (
        f"all Jetstream hosts (bluesky) are back: resolved after {minutes} min; "
        "3 posts caught up." in final
    )
    await asyncio.sleep(0.3)  # a doubled post would show up now
    assert bluesky_posts(chat) == ["Before the outage", "Missed 0", "Missed 1", "Missed 2"]
    assert [s.message.title for s in chat.sent if s.message.title.startswith("Outage")] == [
        "Outage: all Jetstream hosts (bluesky)"
    ]


async def test_jetstream_streams_that_keep_dropping_are_one_outage_then_caught_up(
    start_bot: StartBot,
    appview: FakeAppView,
    jetstreams: tuple[EventLog, list[FakeJetstream]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def drop(host: FakeJetstream) -> None:
        host.drop_after_events = 0  # every connection is cut right after the handshake

    def mend(host: FakeJetstream) -> None:
        host.drop_after_events = None

    await _jetstream_outage(
        start_bot, appview, jetstreams, monkeypatch,
        break_hosts=drop, mend_hosts=mend, minutes=30, expected="are not answering",
    )  # fmt: skip


async def test_jetstream_answering_429_for_minutes_is_one_outage_then_caught_up(
    start_bot: StartBot,
    appview: FakeAppView,
    jetstreams: tuple[EventLog, list[FakeJetstream]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def limit(host: FakeJetstream) -> None:
        host.refuse_with = HTTPStatus.TOO_MANY_REQUESTS

    def mend(host: FakeJetstream) -> None:
        host.refuse_with = None

    await _jetstream_outage(
        start_bot, appview, jetstreams, monkeypatch,
        break_hosts=limit, mend_hosts=mend, minutes=12, expected="are rate-limiting Starling",
    )  # fmt: skip


# --- Mastodon: streams that keep dropping, and an API answering 429 for minutes -------


@pytest_asyncio.fixture
async def mastodon() -> AsyncIterator[MastodonFake]:
    async with MastodonFake() as server:
        yield server


def use_mastodon(monkeypatch: pytest.MonkeyPatch, fake: MastodonFake, **options: Any) -> None:
    for name, value in plugin_env(fake, **options).items():
        monkeypatch.setenv(name, value)


def mastodon_posts(chat: RecordingChat) -> list[str]:
    return [s.message.text for s in chat.sent if s.message.network == "mastodon"]


def host_state(bot: RunningBot, network: str, host: str) -> HostState:
    tracker = bot.app.outages.trackers.get((network, host))
    return tracker.state if tracker else HostState.UP


async def test_a_mastodon_stream_that_keeps_dropping_is_one_outage_then_backfilled(
    start_bot: StartBot, mastodon: MastodonFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_mastodon(monkeypatch, mastodon)
    clock = FakeClock()
    chat = RecordingChat()
    bot = await start_bot(chat, clock=clock)
    # Polling is an hour away: the follow is linked to the stream's host by the stream.
    assert "as #1" in await bot.say("/follow mastodon #python --every 1h")
    await mastodon.wait_subscribed("hashtag", "python")
    mastodon.post("mastodonpy_test_2", "Live one #python")
    await chat.wait_for(1)

    stream_host = f"127.0.0.1:{mastodon.port}"
    mastodon.streams_keep_dropping = True
    mastodon.drop_streams()
    await eventually(lambda: host_state(bot, "mastodon", stream_host) is HostState.DOWN)
    await bot.app.outages.settle()
    [notice] = notices(chat, "general")
    assert f"{stream_host} (mastodon) is not answering since 14:02 UTC" in notice
    assert "(1 follow here affected)" in notice
    assert "dropped" in notice
    for n in range(3):
        mastodon.post("mastodonpy_test_2", f"Missed {n} #python")

    clock.advance(minutes=20)
    await asyncio.sleep(0.2)
    await refreshed_notice(bot, chat, "general", "20 min so far")

    mastodon.streams_keep_dropping = False
    await eventually(lambda: "back: resolved" in notices(chat, "general")[0])
    await bot.app.outages.settle()
    [final] = notices(chat, "general")
    assert f"{stream_host} (mastodon) is back: resolved after 20 min; 3 posts caught up." in final
    await asyncio.sleep(0.3)
    assert mastodon_posts(chat) == ["Live one #python"] + [f"Missed {n} #python" for n in range(3)]


async def test_a_mastodon_api_answering_429_for_minutes_is_one_outage_then_caught_up(
    start_bot: StartBot, mastodon: MastodonFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_mastodon(monkeypatch, mastodon, token=False)  # no token: polling only
    # The fake stamps X-RateLimit-Reset in real time, so the clock starts at real time.
    clock = FakeClock(start=datetime.now(UTC).replace(microsecond=0))
    since = hhmm(clock.now().timestamp())
    chat = RecordingChat()
    bot = await start_bot(chat, clock=clock)
    assert "as #1" in await bot.say("/follow mastodon #python --every 1h")
    await bot.poll_all()

    # Every call answers 429 with a reset 30 s ahead; Starling waits each one out, so
    # it asks about once a minute (the scheduler's polls in between are held back).
    mastodon.fail("/api/v1/timelines/tag/", 429, times=1000, reset_in_s=30)
    for minute in range(15):
        await bot.poll_all_tolerant()
        await bot.app.outages.settle()
        if minute == 3:
            mastodon.post("mastodonpy_test_2", "Missed 0 #python")
            mastodon.post("mastodonpy_test_2", "Missed 1 #python")
        clock.advance(minutes=1)
    await bot.app.outages.refresh()
    [notice] = notices(chat, "general")
    assert f"{mastodon.domain} (mastodon) is rate-limiting Starling since {since}" in notice
    assert "15 min so far" in notice
    assert "429" in notice

    mastodon._faults.clear()  # the fake keeps its faults in a list
    clock.advance(minutes=1)
    for _ in range(2):
        await bot.poll_all_tolerant()
    await bot.app.outages.settle()
    [final] = notices(chat, "general")
    assert "is back: resolved after 16 min; 2 posts caught up." in final
    assert sorted(mastodon_posts(chat)) == ["Missed 0 #python", "Missed 1 #python"]
