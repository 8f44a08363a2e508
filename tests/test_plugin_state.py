"""Plugin state in the store (`ctx.state`): namespaced, durable, wired by the app.

The X plugin keeps its daily read count there; a whole bot is restarted on the
same database and `/status` still shows the reads already spent, and an older
release's `x-reads.json` is imported once.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from bot.pluginstate import MemoryState, StateHub
from bot.protocols import PluginContext
from bot.store import open_store
from tests.conftest import StartBot
from tests.fakes.x_server import XServer, serving
from tests.test_x_relay import start_with_x


@pytest_asyncio.fixture
async def x_server() -> AsyncIterator[XServer]:
    async with serving() as server:
        yield server


async def test_state_is_namespaced_durable_and_prunable(tmp_path: Path) -> None:
    path = str(tmp_path / "starling.db")
    store = await open_store(path)
    hub = StateHub()
    x, nostr = hub.for_plugin("x"), hub.for_plugin("nostr")
    with pytest.raises(RuntimeError, match="before the store is open"):
        await x.get("reads")
    hub.attach(store)
    await x.put("reads", '{"n": 1}')
    await x.put("reads", '{"n": 2}')
    await nostr.put("journal:abc", "event")
    assert await nostr.get("reads") is None, "one plugin cannot see another's keys"
    await store.close()

    store = await open_store(path)
    hub.attach(store)
    assert await x.get("reads") == '{"n": 2}'
    assert await store.schema_version() >= 8
    assert await nostr.prune(older_than_s=3600) == 0
    assert await nostr.prune(older_than_s=-1) == 1, "everything is older than the future"
    assert await nostr.get("journal:abc") is None
    await x.delete("reads")
    assert await x.get("reads") is None
    await store.close()


async def test_a_bare_context_keeps_state_in_memory() -> None:
    ctx = PluginContext("x", {}, None, None, False, "")  # type: ignore[arg-type]
    assert isinstance(ctx.state, MemoryState)
    await ctx.state.put("k", "v")
    assert await ctx.state.get("k") == "v"
    assert await ctx.state.prune(older_than_s=-1) == 1


async def test_the_x_read_count_survives_a_restart_of_the_whole_bot(
    start_bot: StartBot,
    x_server: XServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    today = datetime.now(UTC).date().isoformat()
    data = tmp_path / "data"
    data.mkdir()
    (data / "x-reads.json").write_text(json.dumps({"day": today, "reads": 5, "posts": 2}))

    bot = await start_with_x(start_bot, x_server, monkeypatch, max_reads_per_day=50)
    # An hour between polls: the restarted bot's own first poll cannot come before the
    # `/status` below (the first poll is spread over the interval); `poll_all` forces one.
    answer = await bot.say("/follow x @Twitter --every 1h")
    assert answer.startswith("Following @Twitter on x as #1")
    assert "x: 7 of 50 daily reads used" in await bot.say("/status")
    await bot.stop()
    assert not (data / "x-reads.json").exists()
    assert (data / "x-reads.json.imported").exists()

    again = await start_with_x(start_bot, x_server, monkeypatch, max_reads_per_day=50)
    # Before any request of the new run: the count is read from the database.
    assert "x: 7 of 50 daily reads used" in await again.say("/status")
    await again.poll_all()
    used = re.search(r"x: (\d+) of 50 daily reads used", await again.say("/status"))
    assert used is not None
    assert int(used.group(1)) >= 8, "counting goes on from 7, not from 0"
    stored = await again.app.store.plugin_state_get("x", "reads")
    assert stored is not None
    assert json.loads(stored)["reads"] == int(used.group(1))
