"""The opt-in web server: /healthz, /metrics and the status page, against a running Starling."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from bot.app import App
from bot.config import ConfigError, Settings, load_settings
from bot.errors import Outcome
from bot.metrics import Metrics
from bot.statuspages import StatusPageConfig, StatusPages
from bot.testing import FakeClock, RecordingChat
from bot.web import StatusServer
from tests.conftest import RunningBot, StartBot
from tests.fakes.statuspage_server import StatusPageServer
from tests.feedserver import FeedServer

SCRIPT = "<script>alert(1)</script>"


def wire(app: App, status_pages: StatusPages | None = None) -> StatusServer:
    """What the app does when `web_port` is set (see the report for the exact wiring)."""
    metrics = Metrics(
        scheduler=app.scheduler,
        dispatcher=app.dispatcher,
        relay=app.relay,
        outages=app.outages,
        health=app.health,
        supervisor=app.supervisor,
        status_pages=status_pages,
    )
    app.health.listeners.append(metrics.observe)
    return StatusServer(
        store=app.store,
        health=app.health,
        outages=app.outages,
        metrics=metrics,
        clock=app.clock,
        networks=list(app.networks),
        chats=list(app.chats),
        status_pages=status_pages,
        host="127.0.0.1",
        port=0,
    )


def watch_running_tasks(server: StatusServer) -> None:
    """The app hands over its scheduler and chat tasks; here they are found by name."""
    for task in asyncio.all_tasks():
        if task.get_name() == "scheduler" or task.get_name().startswith("chat-"):
            server.watch(task.get_name().replace("chat-", "chat "), task)


@pytest_asyncio.fixture
async def servers() -> AsyncIterator[list[StatusServer]]:
    started: list[StatusServer] = []
    yield started
    for server in started:
        await server.stop()


async def serve(started: list[StatusServer], server: StatusServer) -> httpx.AsyncClient:
    await server.start()
    started.append(server)
    assert server.port > 0
    return httpx.AsyncClient(base_url=server.url, timeout=10)


async def _fail_polls(bot: RunningBot, times: int) -> None:
    for _ in range(times):
        await bot.poll_all_tolerant()
    await bot.app.outages.settle()


# --- /healthz --------------------------------------------------------------------------


async def test_healthz_is_ok_while_running_and_503_when_a_chat_stops(
    start_bot: StartBot, servers: list[StatusServer], feed_server: FeedServer
) -> None:
    chat = RecordingChat()
    bot = await start_bot(chat)
    server = wire(bot.app)
    async with await serve(servers, server) as http:
        starting = await http.get("/healthz")
        assert starting.status_code == 503
        assert starting.json()["reasons"] == [
            "starting: the scheduler and chats are not running yet"
        ]

        watch_running_tasks(server)
        feed_server.add_feed("a").add_item()
        await bot.say(f"/follow feeds {feed_server.feed_url('a')}")
        await feed_server.stop()  # an upstream outage is not Starling being unhealthy
        await _fail_polls(bot, 3)
        assert bot.app.outages.open
        ok = await http.get("/healthz")
        assert ok.status_code == 200
        body = ok.json()
        assert body["status"] == "ok"
        assert (body["subscriptions"], body["resources"], body["open_outages"]) == (1, 1, 1)
        assert body["outbox_rows"] == 0
        assert "reasons" not in body

        await chat.aclose()  # the chat's run() returns: it no longer takes commands
        async with asyncio.timeout(5):
            while (answer := await http.get("/healthz")).status_code == 200:
                await asyncio.sleep(0.02)
        assert answer.status_code == 503
        assert "chat test has stopped" in answer.json()["reasons"]


async def test_healthz_is_503_when_the_database_does_not_answer(
    tmp_path: Path, servers: list[StatusServer]
) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    app = await App.create(settings, chats={"test": RecordingChat()}, clock=FakeClock())
    server = wire(app)
    running: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    server.watch("scheduler", running)
    async with await serve(servers, server) as http:
        assert (await http.get("/healthz")).status_code == 200
        await app.aclose()  # the database is gone
        answer = await http.get("/healthz")
        assert answer.status_code == 503
        [reason] = answer.json()["reasons"]
        assert reason.startswith("the database failed:")
    running.cancel()


async def test_a_port_in_use_is_a_config_error(tmp_path: Path, servers: list[StatusServer]) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    app = await App.create(settings, chats={"test": RecordingChat()}, clock=FakeClock())
    try:
        first = wire(app)
        await serve(servers, first)
        second = StatusServer(
            store=app.store, health=app.health, outages=app.outages, metrics=first._metrics,
            clock=app.clock, networks=[], chats=[], port=first.port,
        )  # fmt: skip
        with pytest.raises(ConfigError, match=f"web_port: cannot listen on 127.0.0.1:{first.port}"):
            await second.start()
    finally:
        await app.aclose()


# --- /metrics --------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_after_feed_polls(
    start_bot: StartBot, feed_server: FeedServer, servers: list[StatusServer]
) -> None:
    bot = await start_bot()
    server = wire(bot.app)
    a, b = feed_server.add_feed("a"), feed_server.add_feed("b")
    a.add_item()
    b.add_item()
    async with await serve(servers, server) as http:
        await bot.say(f"/follow feeds {feed_server.feed_url('a')}")
        await bot.say(f"/follow feeds {feed_server.feed_url('b')}", channel="other")
        for _ in range(3):
            a.add_item()
            await bot.poll_all()

        answer = await http.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        found = samples(answer.text)
        book = bot.app.health.hosts[("feeds", "127.0.0.1")].counts
        assert sum(book.values()) >= 8  # two /follow fetches, six polls
        ok = value(found, "starling_upstream_requests_total", network="feeds", outcome="ok")
        unchanged = value(
            found, "starling_upstream_requests_total", network="feeds", outcome="not_modified"
        )
        assert (ok, unchanged) == (book[Outcome.OK], book[Outcome.NOT_MODIFIED])
        assert (
            value(found, "starling_upstream_request_seconds_count", network="feeds")
            == ok + unchanged
        )
        assert not any("host" in dict(labels) for name, labels in found if "upstream" in name)
        assert value(found, "starling_resources", network="feeds") == 2
        assert value(found, "starling_subscriptions", network="feeds") == 2
        assert value(found, "starling_deliveries_total") == bot.app.dispatcher.delivered == 3
        assert (
            value(found, "starling_upstream_requests_total", network="chat:test", outcome="ok") == 3
        )
        assert value(found, "starling_hosts", network="feeds", state="up") == 1
        assert not any(name == "starling_host_up" for name, _ in found)

        await feed_server.stop()
        await _fail_polls(bot, 3)
        found = samples((await http.get("/metrics")).text)
        assert (
            value(found, "starling_upstream_requests_total", network="feeds", outcome="refused")
            == 6
        )
        assert value(found, "starling_host_up", host="127.0.0.1", network="feeds") == 0
        assert value(found, "starling_hosts", network="feeds", state="down") == 1
        assert value(found, "starling_outages_open", network="feeds") == 1
        assert value(found, "starling_outbox_rows") == 0


async def test_host_series_stay_bounded(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    app = await App.create(settings, chats={"test": RecordingChat()}, clock=FakeClock())
    try:
        server = wire(app)
        for n in range(150):
            for _ in range(3):
                app.health.record("feeds", f"blog{n}.example", Outcome.TIMEOUT, latency_s=20)
        found = samples(server._metrics.render().decode())
        assert value(found, "starling_hosts", network="feeds", state="down") == 150
        assert sum(1 for name, _ in found if name == "starling_host_up") == 100
        assert (
            value(found, "starling_upstream_request_seconds_bucket", network="feeds", le="10.0")
            == 0
        )
        assert (
            value(found, "starling_upstream_request_seconds_bucket", network="feeds", le="20.0")
            == 450
        )
    finally:
        await app.aclose()


# --- the status page -------------------------------------------------------------------


def day_cells(page: str, network: str) -> list[str]:
    """The state of each of a network's 30 day cells, oldest first."""
    section = page.split(f"<h2>{network} ", 1)[1].split("</section>", 1)[0]
    days = section.split("<div class=days>", 1)[1].split("</div>", 1)[0]
    return [part.split("'", 1)[0] for part in days.split("<span class='d ")[1:]]


async def test_status_page_lists_a_down_host_and_the_outage_with_its_duration(
    start_bot: StartBot, feed_server: FeedServer, servers: list[StatusServer]
) -> None:
    clock = FakeClock()
    feed_server.add_feed("a").add_item()
    feed_server.add_feed("b").add_item()
    bot = await start_bot(clock=clock)
    server = wire(bot.app)
    async with await serve(servers, server) as http:
        await bot.say(f"/follow feeds {feed_server.feed_url('a')}")
        await bot.say(f"/follow feeds {feed_server.feed_url('b')}")
        await bot.poll_all()
        await bot.app.health.flush(bot.app.store)
        calm = (await http.get("/")).text
        assert "<p>1 host up.</p>" in calm
        assert "None recorded." in calm
        assert day_cells(calm, "feeds") == ["none"] * 29 + ["up"]

        await feed_server.stop()
        await _fail_polls(bot, 3)
        await bot.app.health.flush(bot.app.store)
        server.invalidate()
        answer = await http.get("/")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert "script-src" not in answer.headers["content-security-policy"]
        down = answer.text
        assert "<p>0 hosts up, 1 not up:</p>" in down
        assert (
            "<li><b>127.0.0.1</b> <span class='badge down'>down</span> since 2026-11-23 14:02"
            in down
        )
        assert "refused" in down
        assert "ongoing, 1 min so far" in down
        assert day_cells(down, "feeds")[-1] == "down"

        clock.advance(minutes=42)
        await feed_server.start()
        await bot.poll_all()
        await bot.app.outages.settle()
        await bot.app.relay.poll(next(iter(bot.app.scheduler.states.values())))
        await bot.app.outages.settle()
        assert not bot.app.outages.open
        server.invalidate()
        back = (await http.get("/")).text
        assert "<p>1 host up.</p>" in back
        row = back.split("<h2>Recent outages</h2>", 1)[1]
        assert "<td>127.0.0.1</td><td>feeds</td><td>2026-11-23 14:02 UTC</td><td>42 min</td>" in row
        assert day_cells(back, "feeds")[-1] == "down", "the day keeps its outage"
        tip = back.split("<span class='d down' title='", 1)[1].split("'", 1)[0]
        assert "outage of 127.0.0.1: 42 min" in tip


async def test_status_page_escapes_hostile_hosts_and_incidents(
    start_bot: StartBot, servers: list[StatusServer]
) -> None:
    async with StatusPageServer() as official:
        doc = official.use("statuspage_degraded")
        doc["incidents"][0]["name"] = f"{SCRIPT} Degraded"
        doc["incidents"][0]["shortlink"] = "javascript:alert(1)"
        doc["incidents"][0]["incident_updates"][0]["body"] = "<img src=x onerror=alert(2)>"
        bot = await start_bot()
        pages = StatusPages(
            {"feeds": StatusPageConfig(kind="statuspage", url=official.base_url)},
            bot.app.health,
            bot.app.clock,
        )
        server = wire(bot.app, pages)
        try:
            await pages.poll_once()
            for _ in range(3):
                bot.app.health.record(
                    "feeds",
                    f"{SCRIPT}.example",
                    Outcome.TIMEOUT,
                    detail="<img src=y onerror=alert(3)>",
                )
            await bot.app.outages.settle()
            async with await serve(servers, server) as http:
                page = (await http.get("/")).text
        finally:
            await pages.aclose()
    assert "<script" not in page
    assert "<img" not in page
    assert "javascript:" not in page
    assert "<b>&lt;script&gt;alert(1)&lt;/script&gt;.example</b>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Degraded" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "Partially Degraded Service" in page
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;.example</td>" in page


async def test_the_30_days_are_read_from_the_daily_rollup_and_coloured(
    tmp_path: Path, servers: list[StatusServer]
) -> None:
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    clock = FakeClock(start=today - timedelta(days=3))
    settings = load_settings(data_dir=tmp_path / "data")
    app = await App.create(settings, chats={"test": RecordingChat()}, clock=clock)
    health, store = app.health, app.store

    def requests(ok: int, failed: int, other: int = 0) -> None:
        for _ in range(ok):
            health.record("feeds", "blog.example", Outcome.OK, latency_s=0.5)
        for _ in range(failed):
            health.record("feeds", "blog.example", Outcome.HTTP_5XX, latency_s=0.5)
        for _ in range(other):  # a 404 is about one feed, not the host
            health.record("feeds", "blog.example", Outcome.HTTP_4XX, latency_s=0.5)

    try:
        requests(100, 1)  # three days ago: fine
        await health.flush(store)
        clock.advance(days=1)
        requests(90, 10)  # two days ago: 10 % failed
        await health.flush(store)
        clock.advance(days=2)  # yesterday: nothing at all
        requests(50, 0, other=50)  # today: many 404s, still up
        await health.flush(store)
        server = wire(app)
        # The page reads the per-day rollup only: per-minute rows are not needed for it.
        async with app.store._transaction() as db:  # type: ignore[attr-defined]
            await db.execute("DELETE FROM health_minutes")
        async with await serve(servers, server) as http:
            page = (await http.get("/")).text
            assert day_cells(page, "feeds") == ["none"] * 26 + ["up", "degraded", "none", "up"]
            tip = page.split("<span class='d degraded' title='", 1)[1].split("'", 1)[0]
            assert "100 requests; 10 failed (10.0%); average 0.50 s" in tip
            assert (
                "<p class=meta>No requests yet: bluesky, mastodon, nostr, x, chat test.</p>" in page
            )

            requests(0, 10)  # failures today, seen once they settle and the cache expires
            await health.flush(store)
            assert day_cells((await http.get("/")).text, "feeds")[-1] == "up", "cached"
            clock.advance(minutes=5)
            server.invalidate()
            assert day_cells((await http.get("/")).text, "feeds")[-1] == "degraded"
            clock.advance(days=27)  # the oldest day leaves the window
            server.invalidate()
            assert day_cells((await http.get("/")).text, "feeds") == [
                "degraded", "none", "degraded", *["none"] * 27
            ]  # fmt: skip
    finally:
        await app.aclose()


# --- the app's own wiring (runs once App builds these from its settings) -----------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(
    "web_port" not in Settings.model_fields, reason="App does not build the web server yet"
)
async def test_the_app_serves_the_web_and_quotes_status_pages(
    start_bot: StartBot, feed_server: FeedServer
) -> None:
    async with StatusPageServer() as official:
        official.use("statuspage_degraded")
        chat = RecordingChat()
        port = _free_port()
        feed_server.add_feed("a").add_item()
        bot = await start_bot(
            chat,
            clock=FakeClock(),
            web_port=port,
            status_pages={"feeds": {"kind": "statuspage", "url": official.base_url}},
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            async with asyncio.timeout(10):
                while (await http.get("/healthz")).status_code != 200:
                    await asyncio.sleep(0.05)
            await bot.say(f"/follow feeds {feed_server.feed_url('a')}")
            async with asyncio.timeout(10):
                while not official.hits["/api/v2/summary.json"]:
                    await asyncio.sleep(0.05)
            await feed_server.stop()
            await _fail_polls(bot, 3)
            [notice] = [s.message.text for s in chat.sent if s.message.title.startswith("Outage")]
            assert notice.endswith(
                'Posts will be caught up when it is back. feeds status page: "Partially '
                'Degraded Service" — incident "Degraded performance" (identified).'
            )
            status = await bot.say("/status")
            assert '  feeds status page: "Partially Degraded Service"' in status
            metrics = samples((await http.get("/metrics")).text)
            assert value(metrics, "starling_status_page_indicator", network="feeds") == 2
            assert value(metrics, "starling_host_up", network="feeds", host="127.0.0.1") == 0
            assert "Degraded performance" in (await http.get("/")).text
        await bot.stop()
        async with httpx.AsyncClient() as after:
            with pytest.raises(httpx.ConnectError):
                await after.get(f"http://127.0.0.1:{port}/healthz")
