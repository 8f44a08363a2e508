"""The Mastodon stream's backfill does not hold back live statuses of other accounts.

Every (re)connection backfills each followed account over REST. A live status for
an account whose backfill is done must arrive at once, even while slow backfills
of other accounts are still running; a live status for an account still being
backfilled waits for that backfill, so it arrives after it, once. Runs the real
plugin against the fake Mastodon, with `stall` making some accounts' reads slow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest_asyncio

from bot.clock import SystemClock
from bot.health import HealthBook
from bot.model import Post, Target, TargetKind
from bot.protocols import PluginContext
from plugins.mastodon import MastodonNetwork, create
from plugins.mastodon.statuses import id_order
from tests.fakes.mastodon_server import MastodonFake, plugin_config

SLOW_ACCOUNTS = 6
SLOW_READ_S = 1.0  # with 4 reads at a time, the backfill takes at least 2 s


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[MastodonFake]:
    async with MastodonFake(seed="none") as server:
        yield server


@pytest_asyncio.fixture
async def network(fake: MastodonFake, tmp_path: Path) -> AsyncIterator[MastodonNetwork]:
    ctx = PluginContext(
        "mastodon", plugin_config(fake), HealthBook(SystemClock()), SystemClock(), True,
        str(tmp_path),
    )  # fmt: skip
    net = create(ctx)
    yield net
    await net.aclose()


class Delivered:
    """What the stream handed the core: (account, text) in order, and the last cursors."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.cursors: dict[str, str | None] = {}
        self.changed = asyncio.Condition()

    async def sink(self, target: Target, posts: list[Post], cursor: str | None) -> None:
        async with self.changed:
            self.texts += [(target.display, p.text) for p in posts]
            self.cursors[target.resource_key] = cursor
            self.changed.notify_all()

    async def until(self, done: Callable[[], bool], within_s: float = 5.0) -> None:
        async with asyncio.timeout(within_s), self.changed:
            await self.changed.wait_for(done)

    def has(self, text: str) -> bool:
        return any(t == text for _, t in self.texts)


async def _requested(fake: MastodonFake, path: str, count: int, within_s: float = 5.0) -> None:
    """Wait until the fake has received `count` requests for `path`."""
    async with asyncio.timeout(within_s):
        while sum(r.path == path for r in fake.requests) < count:
            await asyncio.sleep(0.01)


def _statuses_path(account_id: str) -> str:
    return f"/api/v1/accounts/{account_id}/statuses"


async def test_live_statuses_flow_while_slow_backfills_run_and_a_reconnect_loses_nothing(
    fake: MastodonFake, network: MastodonNetwork
) -> None:
    assert network.source is not None
    fast = fake.add_account("fast")
    slow = [fake.add_account(f"slow{i}") for i in range(SLOW_ACCOUNTS)]
    targets = [
        await network.source.resolve(TargetKind.ACCOUNT, f"@{a['acct']}") for a in [fast, *slow]
    ]
    fake.post("fast", "fast: before the stream")
    for account in slow:
        fake.post(account["acct"], f"{account['acct']}: before the stream")
        fake.stall(_statuses_path(account["id"]), SLOW_READ_S)
    delivered = Delivered()
    cursors: dict[str, str | None] = {t.resource_key: "0" for t in targets}
    stream = asyncio.create_task(network.source.stream(targets, cursors, delivered.sink))
    try:
        await fake.wait_subscribed("public:local")
        await delivered.until(lambda: delivered.has("fast: before the stream"))
        # slow0 was read in the first batch (its answer is computed, then stalled),
        # so a status it posts now is new to the backfill and must wait behind it.
        await _requested(fake, _statuses_path(slow[0]["id"]), 1)
        fake.post("slow0", "slow0: live during its backfill")
        fake.post("fast", "fast: live during the others' backfill")
        await delivered.until(
            lambda: delivered.has("fast: live during the others' backfill"), within_s=1.0
        )
        assert not delivered.has("slow0: live during its backfill")
        assert not delivered.has(f"slow{SLOW_ACCOUNTS - 1}: before the stream")  # still going

        await delivered.until(lambda: delivered.has("slow0: live during its backfill"))
        await delivered.until(
            lambda: all(delivered.has(f"{a['acct']}: before the stream") for a in slow)
        )
        slow0 = [text for who, text in delivered.texts if who == targets[1].display]
        assert slow0 == ["slow0: before the stream", "slow0: live during its backfill"]

        # Drop the stream; what is posted while it is down comes from the backfill.
        fake.streaming_available = False
        fake.drop_streams()
        fake.post("fast", "fast: while down")
        for account in slow:
            fake.post(account["acct"], f"{account['acct']}: while down")
            fake.stall(_statuses_path(account["id"]), SLOW_READ_S)
        await asyncio.sleep(0.2)  # the plugin's reconnects are refused meanwhile
        fake.streaming_available = True
        await delivered.until(lambda: delivered.has("fast: while down"))
        fake.post("fast", "fast: live after the reconnect")
        await delivered.until(lambda: delivered.has("fast: live after the reconnect"), 1.0)
        assert not delivered.has(f"slow{SLOW_ACCOUNTS - 1}: while down")  # still going
        await delivered.until(lambda: all(delivered.has(f"{a['acct']}: while down") for a in slow))
        await asyncio.sleep(0.2)  # anything doubled would arrive now
    finally:
        stream.cancel()
        await asyncio.gather(stream, return_exceptions=True)

    texts = [text for _, text in delivered.texts]
    assert len(texts) == len(set(texts)), "a status was delivered twice"
    assert sorted(texts) == sorted(
        ["fast: before the stream", "fast: live during the others' backfill",
         "fast: while down", "fast: live after the reconnect",
         "slow0: live during its backfill"]
        + [f"{a['acct']}: {when}" for a in slow for when in ("before the stream", "while down")]
    )  # fmt: skip
    for target, account in zip(targets, [fast, *slow], strict=True):
        newest = max(
            (s["id"] for s in fake.statuses.values() if s["account"]["id"] == account["id"]),
            key=id_order,
        )
        assert delivered.cursors[target.resource_key] == newest


async def test_a_failed_backfill_still_relays_live_statuses_but_keeps_the_cursor(
    fake: MastodonFake, network: MastodonNetwork
) -> None:
    """Statuses since the cursor are unknown, so the cursor stays for polling to fill in."""
    assert network.source is not None
    account = fake.add_account("flaky")
    target = await network.source.resolve(TargetKind.ACCOUNT, "@flaky")
    fake.post("flaky", "flaky: posted before the stream")
    fake.fail(_statuses_path(account["id"]), 503)
    delivered = Delivered()
    stream = asyncio.create_task(
        network.source.stream([target], {target.resource_key: "0"}, delivered.sink)
    )
    try:
        await fake.wait_subscribed("public:local")
        await _requested(fake, _statuses_path(account["id"]), 1)
        fake.post("flaky", "flaky: live")
        await delivered.until(lambda: delivered.has("flaky: live"))
    finally:
        stream.cancel()
        await asyncio.gather(stream, return_exceptions=True)
    assert [text for _, text in delivered.texts] == ["flaky: live"]
    assert delivered.cursors[target.resource_key] == "0"  # not past the missed status
    polled = await network.source.fetch(target, delivered.cursors[target.resource_key])
    assert sorted(p.text for p in polled.posts) == [
        "flaky: live",
        "flaky: posted before the stream",
    ]
