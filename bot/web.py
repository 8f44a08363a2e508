"""An opt-in HTTP server in the bot's own process: `/healthz`, `/metrics` and `/`.

`/healthz` answers whether Starling itself works: its scheduler and chats are
running and its database answers. An upstream outage is not Starling being
unhealthy (it is what Starling is there to report), so it never turns this red.
`/` is a small server-rendered status page: each network's hosts that are not up,
what the official status page says, 30 days of history and the recent outages.
No JavaScript; everything that came from upstream is HTML-escaped.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from bot import __version__
from bot.clock import Clock
from bot.config import ConfigError
from bot.health import HealthBook
from bot.metrics import CONTENT_TYPE, Metrics
from bot.outage import HostState, HostTracker, OutageWatch
from bot.statuspages import StatusPages, StatusReport
from bot.store.base import HealthDay, Store, StoredOutage
from bot.timefmt import duration

log = logging.getLogger(__name__)

DAYS = 30
MINUTES_PER_DAY = 24 * 60
CACHE_S = 60.0  # the 30-day history and the outage list are read at most this often
OUTBOX_EVERY_S = 30.0  # /metrics reads the stored outbox depth at most this often
STORE_TIMEOUT_S = 2.0
RECENT_OUTAGES = 15
OUTAGE_SCAN = 200  # outages read to colour the 30 days
HOSTS_LISTED = 50
DEGRADED_DAY_RATE = 0.05  # a day with this share of outage-signalling failures is amber
DEGRADED_DAY_MIN = 3  # … and at least this many
_WORST = (HostState.DOWN, HostState.RECOVERING, HostState.DEGRADED)


@runtime_checkable
class HealthHistory(Protocol):
    """The per-day health rows (the SQLite store keeps them at each flush)."""

    async def health_days(self, since_day: int) -> list[HealthDay]: ...


@dataclass(slots=True)
class DayCounts:
    ok: int = 0
    failed: int = 0  # outage-signalling failures (timeouts, refusals, 5xx, …)
    other: int = 0  # failures about one resource (404, parse errors)
    latency_s: float = 0.0

    @property
    def requests(self) -> int:
        return self.ok + self.failed + self.other

    def add(self, row: HealthDay) -> None:
        if row.outcome in ("ok", "not_modified"):
            self.ok += row.count
        elif row.outcome in _SIGNALS:
            self.failed += row.count
        else:
            self.other += row.count
        self.latency_s += row.latency_sum


_SIGNALS = frozenset(
    {"timeout", "refused", "dns", "tls", "http_5xx", "rate_limited", "auth", "stream_dropped"}
)


class HealthTimeline:
    """Per network and UTC day, the request outcomes of the last 30 days.

    Read from the per-day rollup (`health_days`): at most networks × 30 × outcomes
    rows at each refresh, so the page stays fast with 100k hosts, whose per-minute
    rows would run to millions.
    """

    def __init__(self, history: HealthHistory, clock: Clock, *, settle_minutes: int = 2) -> None:
        self._history = history
        self._clock = clock
        self._days: dict[tuple[str, int], DayCounts] = {}
        # `settle_minutes` is accepted for compatibility: per-day rows are exact at
        # every flush, so nothing has to settle any more.

    def first_day(self) -> int:
        return int(self._clock.now().timestamp() // 60) // MINUTES_PER_DAY - (DAYS - 1)

    async def refresh(self) -> None:
        days: dict[tuple[str, int], DayCounts] = {}
        for row in await self._history.health_days(self.first_day()):
            counts = days.get((row.network, row.day))
            if counts is None:
                counts = days[(row.network, row.day)] = DayCounts()
            counts.add(row)
        self._days = days

    def day(self, network: str, day: int) -> DayCounts:
        return self._days.get((network, day)) or DayCounts()

    def networks(self) -> set[str]:
        return {net for net, _ in self._days}


class StatusServer:
    """`/healthz`, `/metrics` and the status page, served from the bot's own loop."""

    def __init__(
        self,
        *,
        store: Store,
        health: HealthBook,
        outages: OutageWatch,
        metrics: Metrics,
        clock: Clock,
        networks: Sequence[str],
        chats: Sequence[str],
        status_pages: StatusPages | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        settle_minutes: int = 2,
    ) -> None:
        self._store = store
        self._health = health
        self._outages = outages
        self._metrics = metrics
        self._clock = clock
        self._networks = sorted(networks)
        self._chats = sorted(chats)
        self._pages = status_pages
        self._host = host
        self._wanted_port = port
        self._timeline = (
            HealthTimeline(store, clock, settle_minutes=settle_minutes)
            if isinstance(store, HealthHistory)
            else None
        )
        self._watched: dict[str, asyncio.Future[Any]] = {}
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._started = time.monotonic()
        self._cached_at = float("-inf")
        self._history: list[StoredOutage] = []
        self._refreshing = asyncio.Lock()
        self._outbox_at = float("-inf")

    # --- lifecycle ------------------------------------------------------------------

    def watch(self, name: str, task: asyncio.Future[Any]) -> None:
        """A task Starling needs (the scheduler, each chat): healthy only while it runs."""
        self._watched[name] = task

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[_headers])
        app.router.add_get("/", self._page)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_text)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._wanted_port).start()
        except OSError as err:
            await runner.cleanup()
            where = f"{self._host}:{self._wanted_port}"
            raise ConfigError(
                f"web_port: cannot listen on {where} ({err.strerror or err}); "
                "choose another web_port, or 0 to turn the web server off"
            ) from None
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._started = time.monotonic()
        log.info("status page, /healthz and /metrics on %s", self.url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # --- /healthz and /metrics ------------------------------------------------------

    async def problems(self) -> list[str]:
        """Why Starling itself is not healthy; empty when it is."""
        reasons = [f"{name} has stopped" for name, task in self._watched.items() if task.done()]
        if not self._watched:
            reasons.append("starting: the scheduler and chats are not running yet")
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                self._metrics.outbox_rows = await self._store.outbox_depth()
            self._outbox_at = time.monotonic()
        except TimeoutError:
            reasons.append(f"the database did not answer within {STORE_TIMEOUT_S:.0f} s")
        except Exception as err:
            reasons.append(f"the database failed: {type(err).__name__}: {err}"[:200])
        return reasons

    async def _healthz(self, request: web.Request) -> web.Response:
        reasons = await self.problems()
        body: dict[str, Any] = {
            "status": "unhealthy" if reasons else "ok",
            "version": __version__,
            "uptime_s": round(time.monotonic() - self._started),
            **self._metrics.summary(),
            "outbox_rows": self._metrics.outbox_rows,
        }
        if reasons:
            body["reasons"] = reasons
        return web.json_response(
            body, status=503 if reasons else 200, dumps=lambda v: json.dumps(v, indent=1)
        )

    async def _metrics_text(self, request: web.Request) -> web.Response:
        if time.monotonic() - self._outbox_at >= OUTBOX_EVERY_S:
            try:
                async with asyncio.timeout(STORE_TIMEOUT_S):
                    self._metrics.outbox_rows = await self._store.outbox_depth()
                self._outbox_at = time.monotonic()
            except Exception:
                log.warning("could not read the outbox depth for /metrics", exc_info=True)
        body = self._metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    # --- the status page ------------------------------------------------------------

    async def _refresh(self) -> None:
        async with self._refreshing:
            if time.monotonic() - self._cached_at < CACHE_S:
                return
            if self._timeline is not None:
                await self._timeline.refresh()
            self._history = await self._store.recent_outages(OUTAGE_SCAN)
            self._cached_at = time.monotonic()

    def invalidate(self) -> None:
        """Read history again at the next request (tests; after a long clock jump)."""
        self._cached_at = float("-inf")

    async def _page(self, request: web.Request) -> web.Response:
        await self._refresh()
        now = self._clock.now().timestamp()
        summary = self._metrics.summary()
        parts = [
            _HEAD,
            "<h1>Starling status</h1>",
            f"<p class=meta>{_e(_stamp(now))} · Starling {_e(__version__)} · "
            f"{summary['subscriptions']} subscriptions over {summary['resources']} sources · "
            f"{summary['outbox_queued']} queued for chat · "
            f"{summary['delivered']} delivered since start</p>",
        ]
        known = Counter(network for network, _host in self._health.hosts)
        quiet = []
        for network in self._rows():
            if self._has_news(network, known):
                parts.append(self._network_section(network, known[network], now))
            else:
                quiet.append(network.replace("chat:", "chat "))
        if quiet:
            parts.append(f"<p class=meta>No requests yet: {_e(', '.join(quiet))}.</p>")
        parts.append(self._outage_table(now))
        parts.append(_LEGEND)
        parts.append("</body></html>")
        return web.Response(text="\n".join(parts), content_type="text/html", charset="utf-8")

    def _rows(self) -> list[str]:
        """The installed networks, then the chat platforms (`chat:<name>`)."""
        return [*self._networks, *(f"chat:{name}" for name in self._chats)]

    def _has_news(self, network: str, known: Counter[str]) -> bool:
        """Networks nobody follows and nothing was heard of share one line."""
        return (
            known[network] > 0
            or bool(self._outages.state_of(network))
            or (self._timeline is not None and network in self._timeline.networks())
            or (self._pages is not None and bool(self._pages.page_url(network)))
        )

    def _network_section(self, network: str, known: int, now: float) -> str:
        unwell = sorted(
            (t for t in self._outages.state_of(network) if t.state is not HostState.UP),
            key=lambda t: (_WORST.index(t.state), t.host),
        )
        state = unwell[0].state.value if unwell else ("up" if known else "none")
        label = network.replace("chat:", "chat ")
        up = max(0, known - len(unwell))
        lines = [
            f"<section><h2>{_e(label)} <span class='badge {state}'>"
            f"{_e(state if state != 'none' else 'no requests yet')}</span></h2>",
            f"<p>{up} host{'s' if up != 1 else ''} up"
            + (f", {len(unwell)} not up:" if unwell else ".")
            + "</p>",
        ]
        if unwell:
            lines.append("<ul class=hosts>")
            lines += [self._host_item(t, now) for t in unwell[:HOSTS_LISTED]]
            if len(unwell) > HOSTS_LISTED:
                lines.append(f"<li>… and {len(unwell) - HOSTS_LISTED} more</li>")
            lines.append("</ul>")
        if self._pages is not None:
            lines.append(self._official(network))
        lines.append(self._days(network, now))
        lines.append("</section>")
        return "\n".join(line for line in lines if line)

    def _host_item(self, tracker: HostTracker, now: float) -> str:
        since = tracker.failing_since
        outage = self._outages.open.get((tracker.network, tracker.host))
        if outage is not None:
            since = outage.started_at
        when = f" since {_e(_stamp(since))} ({duration(now - since)})" if since else ""
        error = tracker.last_detail or tracker.last_outcome.value
        return (
            f"<li><b>{_e(tracker.host)}</b> <span class='badge {tracker.state.value}'>"
            f"{tracker.state.value}</span>{when} — last error: {_e(error)}</li>"
        )

    def _official(self, network: str) -> str:
        pages = self._pages
        if pages is None or not pages.page_url(network):
            return ""
        link = f"<a href='{_e(pages.page_url(network))}' rel=noreferrer>status page</a>"
        failure = pages.failure(network)
        report = pages.latest(network)
        if report is None:
            why = _e(failure) if failure else "not read yet"
            return f"<p class=official>Official {link}: {why}</p>"
        lines = [
            f"<p class=official>Official {link}: <span class='ind {report.indicator}'>"
            f"“{_e(report.description)}”</span>"
            + (f" <small>(last read failed: {_e(failure)})</small>" if failure else "")
            + "</p>"
        ]
        lines += _incidents(report)
        return "\n".join(lines)

    def _days(self, network: str, now: float) -> str:
        if self._timeline is None:
            return "<p class=meta>No history: this store keeps no per-day health.</p>"
        first = self._timeline.first_day()
        outages = _outage_minutes(self._history, network, first, now)
        cells = []
        for day in range(first, first + DAYS):
            counts = self._timeline.day(network, day)
            down = outages.get(day, {})
            state = _day_state(counts, down)
            cells.append(
                f"<span class='d {state}' title='{_e(_day_tip(day, counts, down))}'></span>"
            )
        return (
            "<div class=days>" + "".join(cells) + "</div>"
            "<div class=axis><span>30 days ago</span><span>today</span></div>"
        )

    def _outage_table(self, now: float) -> str:
        recent = self._history[:RECENT_OUTAGES]
        if not recent:
            return "<section><h2>Recent outages</h2><p>None recorded.</p></section>"
        rows = []
        for past in recent:
            if past.ended_at is None:
                lasted = f"ongoing, {duration(now - past.started_at)} so far"
            else:
                lasted = duration(past.ended_at - past.started_at)
            rows.append(
                f"<tr><td>{_e(past.host)}</td><td>{_e(past.network)}</td>"
                f"<td>{_e(_stamp(past.started_at))}</td><td>{_e(lasted)}</td>"
                f"<td>{past.caught_up}</td><td>{_e(past.detail[:200])}</td></tr>"
            )
        return (
            "<section><h2>Recent outages</h2><table><thead><tr><th>host</th><th>network</th>"
            "<th>started</th><th>lasted</th><th>posts caught up</th><th>last error</th></tr>"
            "</thead><tbody>" + "".join(rows) + "</tbody></table></section>"
        )


def _incidents(report: StatusReport) -> list[str]:
    lines: list[str] = []
    if report.incidents:
        lines.append("<ul class=incidents>")
        for incident in report.incidents:
            title = _e(incident.title)
            if incident.url:
                title = f"<a href='{_e(incident.url)}' rel=noreferrer>{title}</a>"
            when = (
                f", updated {_e(_stamp(incident.updated_at.timestamp()))}"
                if incident.updated_at
                else ""
            )
            lines.append(
                f"<li>{title} <small>({_e(incident.status)}"
                f"{when})</small>"
                + (f"<br>{_e(incident.last_update)}" if incident.last_update else "")
                + "</li>"
            )
        lines.append("</ul>")
    if report.components:
        named = ", ".join(f"{_e(name)} ({_e(status)})" for name, status in report.components)
        lines.append(f"<p class=meta>Components not operational: {named}</p>")
    return lines


def _outage_minutes(
    history: Iterable[StoredOutage], network: str, first_day: int, now: float
) -> dict[int, dict[str, float]]:
    """Per day of the window, each host's minutes of recorded outage that day."""
    days: dict[int, dict[str, float]] = {}
    for outage in history:
        if outage.network != network:
            continue
        start, end = outage.started_at, outage.ended_at if outage.ended_at is not None else now
        day = max(first_day, int(start // 86400))
        while day * 86400 < end and day < first_day + DAYS:
            overlap = min(end, (day + 1) * 86400) - max(start, day * 86400)
            if overlap > 0:
                hosts = days.setdefault(day, {})
                hosts[outage.host] = hosts.get(outage.host, 0.0) + overlap / 60
            day += 1
    return days


def _day_state(counts: DayCounts, outages: dict[str, float]) -> str:
    if outages:
        return "down"
    if not counts.requests:
        return "none"
    judged = counts.ok + counts.failed
    if counts.failed >= DEGRADED_DAY_MIN and counts.failed >= DEGRADED_DAY_RATE * judged:
        return "degraded"
    return "up"


def _day_tip(day: int, counts: DayCounts, outages: dict[str, float]) -> str:
    date = datetime.fromtimestamp(day * 86400, UTC).strftime("%a %d %b %Y")
    if not counts.requests and not outages:
        return f"{date}: no requests"
    parts = [f"{date}: {counts.requests:,} requests"]
    if counts.requests:
        share = counts.failed / max(1, counts.ok + counts.failed)
        parts.append(f"{counts.failed:,} failed ({share:.1%})")
        parts.append(f"average {counts.latency_s / counts.requests:.2f} s")
    for host, minutes in sorted(outages.items(), key=lambda item: -item[1])[:5]:
        parts.append(f"outage of {host}: {duration(minutes * 60)}")
    return "; ".join(parts)


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


@web.middleware
async def _headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault(
        "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


_HEAD = """<!doctype html><html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width, initial-scale=1">
<meta http-equiv=refresh content=60><title>Starling status</title><style>
body{font:15px/1.45 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.1rem;margin:1.6rem 0 .3rem}section{margin-bottom:1.2rem}
.meta,small{color:#666}.badge{font-size:.75rem;padding:.1rem .45rem;border-radius:.6rem;color:#fff}
.up{background:#2e9e5b}.degraded,.recovering{background:#d19a00}.down{background:#d64545}
.none{background:#c9c9c9}.badge.none{color:#333}
.days{display:flex;gap:2px;margin:.4rem 0 0}.d{flex:1;height:1.6rem;border-radius:2px}
.axis{display:flex;justify-content:space-between;font-size:.75rem;color:#777}
.ind.none{background:none;color:#2e7d4f}.ind.minor,.ind.maintenance{background:none;color:#a07000}
.ind.major,.ind.critical{background:none;color:#c03030}ul{margin:.3rem 0;padding-left:1.2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
td,th{text-align:left;padding:.25rem .4rem;border-bottom:1px solid #e3e3e3;vertical-align:top}
</style></head><body>"""

_LEGEND = (
    "<p class=meta>Each cell is one UTC day: <span class='badge up'>up</span> "
    "<span class='badge degraded'>degraded</span> (at least 5 % of requests failed the way an "
    "outage does) <span class='badge down'>down</span> (Starling recorded an outage of one of "
    "the network's hosts) <span class='badge none'>no requests</span>. "
    "Hover a cell for its figures. The page reloads every minute.</p>"
)
