"""Official status pages as a second signal, read from a local server speaking their APIs."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import ValidationError

from bot.app import App
from bot.config import load_settings
from bot.errors import Outcome
from bot.statuspages import StatusPageConfig, StatusPages
from bot.testing import FakeClock, RecordingChat
from tests.fakes.statuspage_server import StatusPageServer

ZW = "\u2060"


@pytest_asyncio.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    """A whole app, not running: the status pages use its health book and clock."""
    settings = load_settings(data_dir=tmp_path / "data")
    built = await App.create(settings, chats={"test": RecordingChat()}, clock=FakeClock())
    try:
        yield built
    finally:
        await built.aclose()


@pytest_asyncio.fixture
async def server() -> AsyncIterator[StatusPageServer]:
    async with StatusPageServer() as running:
        yield running


def pages_for(app: App, config: dict[str, StatusPageConfig], **options: float) -> StatusPages:
    """Built as the app wires it: its health book and clock."""
    return StatusPages(config, app.health, app.clock, **options)


def outcomes(app: App, network: str) -> dict[Outcome, int]:
    return {
        outcome: count
        for (net, _host), entry in app.health.hosts.items()
        if net == network
        for outcome, count in entry.counts.items()
    }


async def test_an_incident_is_reported_then_resolved(app: App, server: StatusPageServer) -> None:
    pages = pages_for(app, {"bluesky": StatusPageConfig(kind="statuspage", url=server.base_url)})
    try:
        await pages.poll_once()
        calm = pages.latest("bluesky")
        assert calm is not None
        assert (calm.indicator, calm.description, calm.incidents) == (
            "none",
            "All Systems Operational",
            [],
        )
        assert calm.all_clear
        assert pages.quote("bluesky") == 'bluesky status page: "All Systems Operational"'

        server.use("statuspage_degraded")
        await pages.poll_once()
        report = pages.latest("bluesky")
        assert report is not None
        assert report.indicator == "minor"
        assert report.description == "Partially Degraded Service"
        [incident] = report.incidents
        assert incident.title == "Degraded performance"
        assert incident.status == "identified"
        assert incident.last_update.startswith("We have identified an overloaded database")
        assert incident.url == "https://stspg.io/abc123xyz"
        assert incident.updated_at is not None
        assert incident.updated_at.minute == 21
        assert report.components == [
            ("API", "degraded_performance"),
            ("Firehose and streaming", "partial_outage"),
        ]
        assert pages.quote("bluesky") == (
            'bluesky status page: "Partially Degraded Service" — '
            'incident "Degraded performance" (identified)'
        )
        assert pages.status_lines("bluesky") == [pages.quote("bluesky")]

        server.use("statuspage_resolved")
        await pages.poll_once()
        after = pages.latest("bluesky")
        assert after is not None
        assert after.all_clear
        assert server.hits["/api/v2/summary.json"] == 3, "one request per poll"
        # Recorded as its own network, never as a host of bluesky itself.
        assert outcomes(app, "status:bluesky") == {Outcome.OK: 3}
        assert outcomes(app, "bluesky") == {}
    finally:
        await pages.aclose()


async def test_a_page_without_summary_is_read_from_its_parts(
    app: App, server: StatusPageServer
) -> None:
    server.missing("/api/v2/summary.json")
    server.use("statuspage_degraded")
    pages = pages_for(app, {"mastodon": StatusPageConfig(kind="statuspage", url=server.base_url)})
    try:
        await pages.poll_once()
        await pages.poll_once()
        report = pages.latest("mastodon")
        assert report is not None
        assert report.description == "Partially Degraded Service"
        assert [i.title for i in report.incidents] == ["Degraded performance"]
        assert server.hits["/api/v2/summary.json"] == 1, "not asked again once missing"
        assert server.hits["/api/v2/status.json"] == 2
        assert server.hits["/api/v2/incidents/unresolved.json"] == 2
    finally:
        await pages.aclose()


async def test_slack_status_api(app: App, server: StatusPageServer) -> None:
    pages = pages_for(app, {"slack": StatusPageConfig(kind="slack", url=server.base_url)})
    try:
        await pages.poll_once()
        report = pages.latest("slack")
        assert report is not None
        assert report.all_clear
        assert report.description == "ok"

        server.use_slack("slack_active")
        await pages.poll_once()
        report = pages.latest("chat:slack")  # a chat platform's health network finds it too
        assert report is not None
        assert report.indicator == "minor"
        [incident] = report.incidents
        assert incident.title == "Some users may be having trouble sending messages"
        assert incident.status == "active"
        # The newest note, whitespace folded.
        assert incident.last_update == (
            "We've identified the cause of the message delays and are working on a fix. "
            "Apps posting through the Web API may also see errors."
        )
        assert pages.quote("chat:slack") == (
            'slack status page: "Active incident" — incident '
            '"Some users may be having trouble sending messages" (active)'
        )
        server.slack["active_incidents"][0]["type"] = "outage"
        await pages.poll_once()
        outage = pages.latest("slack")
        assert outage is not None
        assert outage.indicator == "major"
    finally:
        await pages.aclose()


async def test_mastodon_health(app: App, server: StatusPageServer) -> None:
    pages = pages_for(
        app, {"mastodon": StatusPageConfig(kind="mastodon_health", url=server.base_url + "/")}
    )
    try:
        await pages.poll_once()
        report = pages.latest("mastodon")
        assert report is not None
        assert (report.indicator, report.description) == ("none", "OK")

        server.health_status = 503
        await pages.poll_once()
        report = pages.latest("mastodon")
        assert report is not None
        assert report.indicator == "major"
        assert pages.quote("mastodon") == 'mastodon health check: "/health answered HTTP 503"'
        assert outcomes(app, "status:mastodon") == {Outcome.OK: 1, Outcome.HTTP_5XX: 1}
    finally:
        await pages.aclose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_status_page_is_recorded_as_such(app: App) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    pages = pages_for(app, {"bluesky": StatusPageConfig(kind="statuspage", url=url)})
    try:
        await pages.poll_once()
        assert pages.latest("bluesky") is None
        assert pages.quote("bluesky") is None
        failure = pages.failure("bluesky")
        assert failure is not None
        assert failure.startswith("127.0.0.1 unreachable since ")
        assert failure.endswith("refused the connection")
        entry = app.health.hosts[("status:bluesky", "127.0.0.1")]
        assert entry.last_outcome is Outcome.REFUSED
        assert "refused the connection" in entry.last_detail
        assert pages.status_lines("bluesky") == [f"status page {failure}"]
        assert ("bluesky", "127.0.0.1") not in app.health.hosts
    finally:
        await pages.aclose()


async def test_a_known_report_stays_while_fresh_and_failures_are_classified(
    app: App, server: StatusPageServer
) -> None:
    pages = pages_for(
        app,
        {"bluesky": StatusPageConfig(kind="statuspage", url=server.base_url)},
        interval_s=60,
        timeout_s=0.3,
    )
    clock = app.clock
    assert isinstance(clock, FakeClock)
    summary = "/api/v2/summary.json"
    try:
        server.use("statuspage_degraded")
        await pages.poll_once()
        for fault, expected, said in [
            (lambda: server.fail(summary, 503), Outcome.HTTP_5XX, "failing since"),
            (lambda: server.fail(summary, 429), Outcome.RATE_LIMITED, "failing since"),
            (lambda: server.garbage(summary), Outcome.PARSE, "failing since"),
            (lambda: server.stall(1.0), Outcome.TIMEOUT, "unreachable since"),
        ]:
            server.heal()
            fault()
            await pages.poll_once()
            assert app.health.hosts[("status:bluesky", "127.0.0.1")].last_outcome is expected
            failure = pages.failure("bluesky")
            assert failure is not None
            assert failure.startswith(f"127.0.0.1 {said} 14:02 UTC: ")
            # What the page said last is still the best word while it is recent.
            kept = pages.latest("bluesky")
            assert kept is not None
            assert kept.description == "Partially Degraded Service"
        assert failure.endswith("did not answer in time")
        clock.advance(minutes=4)
        assert pages.latest("bluesky") is None, "older than three polls: no longer quoted"
        server.heal()
        await pages.poll_once()
        assert pages.failure("bluesky") is None
        assert pages.latest("bluesky") is not None
    finally:
        await pages.aclose()


async def test_hostile_incident_text_is_defused_and_capped(
    app: App, server: StatusPageServer
) -> None:
    doc = server.use("statuspage_degraded")
    doc["status"]["description"] = "@here <!channel> all good \x1b[31m"
    doc["incidents"][0]["name"] = "@everyone <@U024BE7LH> " + "very long " * 60
    doc["incidents"][0]["incident_updates"][0]["body"] = "<script>alert(1)</script> " * 40
    pages = pages_for(app, {"bluesky": StatusPageConfig(kind="statuspage", url=server.base_url)})
    try:
        await pages.poll_once()
        report = pages.latest("bluesky")
        assert report is not None
        assert report.description == f"@{ZW}here <{ZW}!channel> all good"
        title = report.incidents[0].title
        assert title.startswith(f"@{ZW}everyone <{ZW}@U024BE7LH> very long")
        assert len(title) <= 160
        assert title.endswith("…")
        assert len(report.incidents[0].last_update) <= 300
        quote = pages.quote("bluesky")
        assert quote is not None
        assert len(quote) <= 300
        assert "@everyone" not in quote
        assert "<@U" not in quote
        assert "<!channel" not in quote
    finally:
        await pages.aclose()


async def test_run_polls_again_every_interval(app: App, server: StatusPageServer) -> None:
    pages = pages_for(
        app, {"bluesky": StatusPageConfig(kind="statuspage", url=server.base_url)}, interval_s=0.05
    )
    task = asyncio.create_task(pages.run())
    try:
        async with asyncio.timeout(5):
            while server.hits["/api/v2/summary.json"] < 3:
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pages.aclose()


def test_config_names_what_is_wrong() -> None:
    with pytest.raises(ValidationError, match="kind"):
        StatusPageConfig.model_validate({"kind": "rss", "url": "https://status.example"})
    with pytest.raises(ValidationError, match="base URL"):
        StatusPageConfig(kind="statuspage", url="status.example")
    with pytest.raises(ValidationError, match="extra"):
        StatusPageConfig.model_validate({"kind": "slack", "url": "https://x.example", "t": 1})
    assert StatusPageConfig(kind="slack", url=" https://slack-status.com/ ").url == (
        "https://slack-status.com"
    )
