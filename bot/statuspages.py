"""Official status pages: what a service says about itself, as a second signal.

Starling's own request outcomes decide whether a host is down (`bot.outage`); a
service's status page only adds its own word to the announcement, to `/status`
and to the web status page (`bluesky status page: "Partial System Outage"`).
Three kinds are read: Atlassian Statuspage's public v2 API, Slack's status API
and a Mastodon instance's `/health`. Everything they say is untrusted text:
defused and capped.
A status page that cannot be fetched is recorded in the health book under the
network `status:<network>`, so it never counts against the network itself (and
never makes `/post` divert around a network whose API is fine).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec
from pydantic import BaseModel, ConfigDict, field_validator

from bot import __version__
from bot.clock import Clock
from bot.errors import Outcome
from bot.protocols import HealthRecorder
from bot.render import cap, defuse
from bot.timefmt import hhmm

if TYPE_CHECKING:  # httpx (~3 MiB with its CLI deps) loads on the first poll only
    import httpx

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 2_000_000
TITLE_LIMIT = 160
BODY_LIMIT = 300
DESCRIPTION_LIMIT = 80
MAX_INCIDENTS = 5
QUOTE_LIMIT = 300
USER_AGENT = f"Starling/{__version__} (status pages)"

# Worst last: the order used to compare indicators across kinds.
INDICATORS = ("none", "maintenance", "minor", "major", "critical")

_T = TypeVar("_T")
_UNREACHABLE = frozenset({Outcome.TIMEOUT, Outcome.REFUSED, Outcome.DNS, Outcome.TLS})
Kind = Literal["statuspage", "slack", "mastodon_health"]


class StatusPageConfig(BaseModel):
    """One network's official status page (`status_pages.<network>` in the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    url: str

    @field_validator("url")
    @classmethod
    def _http_base(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("give the status page's base URL, like https://status.example.com")
        return value.strip().rstrip("/")


@dataclass(frozen=True, slots=True)
class Incident:
    title: str
    status: str
    updated_at: datetime | None
    last_update: str
    impact: str = ""
    url: str = ""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What a status page said at `fetched_at`; every string is already defused."""

    network: str
    indicator: str  # none, maintenance, minor, major or critical
    description: str
    incidents: list[Incident] = field(default_factory=list)
    components: list[tuple[str, str]] = field(default_factory=list)  # (name, status), not ok
    page_url: str = ""
    fetched_at: float = 0.0

    @property
    def all_clear(self) -> bool:
        return self.indicator == "none" and not self.incidents


# --- the wire formats (only the fields Starling reads; unknown fields are ignored) --


class _SpPage(msgspec.Struct):
    name: str | None = None
    url: str | None = None


class _SpStatus(msgspec.Struct):
    indicator: str | None = None
    description: str | None = None


class _SpUpdate(msgspec.Struct):
    body: str | None = None
    status: str | None = None
    created_at: str | None = None
    display_at: str | None = None


class _SpIncident(msgspec.Struct):
    name: str | None = None
    status: str | None = None
    impact: str | None = None
    shortlink: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    incident_updates: list[_SpUpdate] = []


class _SpComponent(msgspec.Struct):
    name: str | None = None
    status: str | None = None
    group: bool | None = None


class _SpSummary(msgspec.Struct):
    page: _SpPage | None = None
    status: _SpStatus | None = None
    components: list[_SpComponent] = []
    incidents: list[_SpIncident] = []


class _SlackNote(msgspec.Struct):
    body: str | None = None
    date_created: str | None = None


class _SlackIncident(msgspec.Struct):
    title: str | None = None
    type: str | None = None
    status: str | None = None
    url: str | None = None
    date_updated: str | None = None
    notes: list[_SlackNote] = []


class _SlackCurrent(msgspec.Struct):
    status: str | None = None
    active_incidents: list[_SlackIncident] = []


class _FetchFailed(Exception):
    """A status page request failed; already recorded in the health book."""

    def __init__(self, outcome: Outcome, text: str) -> None:
        super().__init__(text)
        self.outcome = outcome


@dataclass(slots=True)
class _Page:
    network: str
    config: StatusPageConfig
    host: str
    report: StatusReport | None = None
    error: str = ""
    failing_since: float | None = None
    outcome: Outcome = Outcome.OK
    summary_missing: bool = False  # a Statuspage without summary.json: read the parts


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    started: float


def _clean(text: str | None, limit: int) -> str:
    return cap(" ".join(defuse(text or "").split()), limit)


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _latest_first(items: list[tuple[datetime | None, str]]) -> str:
    """The newest entry's text; lists without dates keep their own order."""
    dated = [(at, text) for at, text in items if at is not None]
    if dated:
        return max(dated, key=lambda pair: pair[0])[1]
    return items[0][1] if items else ""


class StatusPages:
    """Polls the configured status pages; `latest(network)` is what each said last."""

    def __init__(
        self,
        pages: Mapping[str, StatusPageConfig],
        health: HealthRecorder,
        clock: Clock,
        *,
        interval_s: float = 180.0,
        timeout_s: float = 10.0,
    ) -> None:
        self._health = health
        self._clock = clock
        self.interval_s = interval_s
        self._timeout_s = timeout_s
        self._pages = {
            network: _Page(network, config, urlsplit(config.url).hostname or config.url)
            for network, config in sorted(pages.items())
        }
        self._client: httpx.AsyncClient | None = None

    @property
    def networks(self) -> list[str]:
        return list(self._pages)

    def _page(self, network: str) -> _Page | None:
        return self._pages.get(network) or self._pages.get(network.removeprefix("chat:"))

    def page_url(self, network: str) -> str:
        page = self._page(network)
        return page.config.url if page else ""

    def latest(self, network: str) -> StatusReport | None:
        """The last report, while it is fresh (younger than three poll intervals).

        A chat platform's health network (`chat:slack`) finds the page of `slack`.
        """
        page = self._page(network)
        if page is None or page.report is None:
            return None
        if self._clock.now().timestamp() - page.report.fetched_at > 3 * self.interval_s:
            return None
        return page.report

    def failure(self, network: str) -> str | None:
        """Why the status page could not be read, while it cannot."""
        page = self._page(network)
        if page is None or page.failing_since is None:
            return None
        state = "unreachable" if page.outcome in _UNREACHABLE else "failing"
        return f"{page.host} {state} since {hhmm(page.failing_since)}: {page.error}"

    def quote(self, network: str) -> str | None:
        """The status page's own word, for an outage announcement."""
        report = self.latest(network)
        page = self._page(network)
        if report is None or page is None:
            return None
        what = "health check" if page.config.kind == "mastodon_health" else "status page"
        text = f'{page.network} {what}: "{report.description}"'
        if report.incidents:
            first = report.incidents[0]
            text += f' — incident "{first.title}" ({first.status})'
            if len(report.incidents) > 1:
                text += f" and {len(report.incidents) - 1} more"
        return cap(text, QUOTE_LIMIT)

    def status_lines(self, network: str) -> list[str]:
        """Lines for `/status` under the network's own line."""
        failure = self.failure(network)
        if failure is not None:
            return [f"status page {failure}"]
        quote = self.quote(network)
        return [quote] if quote else []

    # --- polling --------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await self._clock.sleep(self.interval_s)

    async def poll_once(self) -> None:
        """Fetch every page once, at the same time; one failing page stops no other."""
        await asyncio.gather(*(self._poll(page) for page in self._pages.values()))

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout_s),
                follow_redirects=True,
                max_redirects=3,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json, text/plain"},
            )
        return self._client

    async def _poll(self, page: _Page) -> None:
        try:
            if page.config.kind == "statuspage":
                report = await self._statuspage(page)
            elif page.config.kind == "slack":
                report = await self._slack(page)
            else:
                report = await self._mastodon(page)
        except _FetchFailed as err:
            if page.failing_since is None:
                page.failing_since = self._clock.now().timestamp()
                log.warning("status page of %s: %s %s", page.network, page.host, err)
            page.error, page.outcome = str(err), err.outcome
            return
        except Exception:  # a bug reading one page must not stop the others
            log.exception("status page of %s could not be read", page.network)
            return
        page.report, page.error, page.failing_since = report, "", None

    async def _get(self, page: _Page, path: str) -> _Answer:
        """GET one document. Transport errors and refusals are recorded and raised; a
        404 is recorded and returned (the caller may fall back); anything else is
        returned for the caller to read, and to record with `_accept` or `_decode`."""
        import httpx

        url = page.config.url + path
        started = time.monotonic()
        try:
            async with self._http().stream("GET", url) as response:
                body = await self._read(response, page, started)
        except _FetchFailed:
            raise
        except httpx.TimeoutException:
            raise self._fail(page, Outcome.TIMEOUT, "did not answer in time", started) from None
        except httpx.ConnectError as err:
            outcome, text = _connect_failure(err)
            raise self._fail(page, outcome, text, started) from None
        except httpx.HTTPError as err:
            text = f"broke off the connection ({type(err).__name__})"
            raise self._fail(page, Outcome.REFUSED, text, started) from None
        status = response.status_code
        answer = _Answer(status, body, started)
        if status == 404:
            self._record(page, Outcome.HTTP_4XX, started, status, f"{path} not found")
        elif status >= 400 and not (page.config.kind == "mastodon_health" and status >= 500):
            outcome = (
                Outcome.RATE_LIMITED
                if status == 429
                else Outcome.HTTP_5XX
                if status >= 500
                else Outcome.AUTH
                if status in (401, 403)
                else Outcome.HTTP_4XX
            )
            raise self._fail(page, outcome, f"answered HTTP {status}", started, status)
        return answer

    async def _read(self, response: httpx.Response, page: _Page, started: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                text = f"sent more than {MAX_BODY_BYTES} bytes"
                raise self._fail(page, Outcome.TOO_LARGE, text, started, response.status_code)
            chunks.append(chunk)
        return b"".join(chunks)

    def _record(
        self, page: _Page, outcome: Outcome, started: float, status: int | None, detail: str
    ) -> None:
        self._health.record(
            f"status:{page.network}",
            page.host,
            outcome,
            latency_s=time.monotonic() - started,
            status=status,
            detail=detail if outcome.is_failure else "",
        )

    def _fail(
        self,
        page: _Page,
        outcome: Outcome,
        text: str,
        started: float,
        status: int | None = None,
    ) -> _FetchFailed:
        self._record(page, outcome, started, status, f"{page.host} {text}")
        return _FetchFailed(outcome, text)

    def _accept(self, page: _Page, answer: _Answer) -> None:
        outcome = Outcome.HTTP_5XX if answer.status >= 500 else Outcome.OK
        detail = f"{page.host} answered HTTP {answer.status}"
        self._record(page, outcome, answer.started, answer.status, detail)

    def _decode(self, page: _Page, answer: _Answer, into: type[_T], path: str) -> _T:
        """Read a JSON answer; the request counts as a success only once it is read."""
        try:
            value = msgspec.json.decode(answer.body, type=into)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            text = f"sent {path} in a form Starling cannot read ({str(err)[:120]})"
            raise self._fail(page, Outcome.PARSE, text, answer.started, answer.status) from None
        self._accept(page, answer)
        return value

    def _report(
        self,
        page: _Page,
        indicator: str,
        description: str,
        incidents: list[Incident],
        components: list[tuple[str, str]] | None = None,
    ) -> StatusReport:
        return StatusReport(
            network=page.network,
            indicator=indicator if indicator in INDICATORS else "minor",
            description=_clean(description, DESCRIPTION_LIMIT) or indicator,
            incidents=incidents[:MAX_INCIDENTS],
            components=components or [],
            page_url=page.config.url,
            fetched_at=self._clock.now().timestamp(),
        )

    # --- the three kinds ------------------------------------------------------------

    async def _statuspage(self, page: _Page) -> StatusReport:
        """`summary.json` carries status, components and unresolved incidents at once;
        pages that lack it are read from `status.json` and `incidents/unresolved.json`."""
        if not page.summary_missing:
            answer = await self._get(page, "/api/v2/summary.json")
            if answer.status != 404:
                summary = self._decode(page, answer, _SpSummary, "summary.json")
            else:
                page.summary_missing = True
        if page.summary_missing:
            answer = await self._get(page, "/api/v2/status.json")
            if answer.status == 404:
                page.summary_missing = False  # try summary.json again next time
                raise _FetchFailed(Outcome.HTTP_4XX, "has no Statuspage API (404)")
            summary = self._decode(page, answer, _SpSummary, "status.json")
            answer = await self._get(page, "/api/v2/incidents/unresolved.json")
            if answer.status != 404:
                unresolved = self._decode(page, answer, _SpSummary, "incidents/unresolved.json")
                summary.incidents = unresolved.incidents
        state = summary.status or _SpStatus()
        incidents = [
            _statuspage_incident(inc)
            for inc in summary.incidents
            if (inc.status or "") not in ("resolved", "postmortem", "completed")
        ]
        components = [
            (_clean(c.name, 80), _clean(c.status, 40))
            for c in summary.components
            if c.status and c.status != "operational" and not c.group
        ]
        return self._report(
            page, state.indicator or "none", state.description or "", incidents, components
        )

    async def _slack(self, page: _Page) -> StatusReport:
        answer = await self._get(page, "/api/v2.0.0/current")
        if answer.status == 404:
            raise _FetchFailed(Outcome.HTTP_4XX, "has no Slack status API (404)")
        current = self._decode(page, answer, _SlackCurrent, "api/v2.0.0/current")
        incidents = [_slack_incident(inc) for inc in current.active_incidents]
        word = (current.status or "").lower()
        if word == "ok" and not incidents:
            return self._report(page, "none", "ok", [])
        types = {i.impact for i in incidents}
        indicator = "major" if "outage" in types else "minor"
        described = "Active outage" if "outage" in types else "Active incident"
        return self._report(page, indicator, described if incidents else word, incidents)

    async def _mastodon(self, page: _Page) -> StatusReport:
        answer = await self._get(page, "/health")
        if answer.status == 404:
            raise _FetchFailed(Outcome.HTTP_4XX, "has no /health (404)")
        self._accept(page, answer)
        if answer.status >= 500:
            return self._report(page, "major", f"/health answered HTTP {answer.status}", [])
        word = answer.body.decode("utf-8", "replace").strip()[:DESCRIPTION_LIMIT]
        return self._report(page, "none" if word == "OK" else "minor", word or "OK", [])


def _statuspage_incident(inc: _SpIncident) -> Incident:
    updates = [(_when(u.display_at or u.created_at), u.body or "") for u in inc.incident_updates]
    return Incident(
        title=_clean(inc.name, TITLE_LIMIT),
        status=_clean(inc.status, 40),
        updated_at=_when(inc.updated_at),
        last_update=_clean(_latest_first(updates), BODY_LIMIT),
        impact=_clean(inc.impact, 20),
        url=_web_url(inc.shortlink),
    )


def _slack_incident(inc: _SlackIncident) -> Incident:
    notes = [(_when(n.date_created), n.body or "") for n in inc.notes]
    return Incident(
        title=_clean(inc.title, TITLE_LIMIT),
        status=_clean(inc.status or "active", 40),
        updated_at=_when(inc.date_updated),
        last_update=_clean(_latest_first(notes), BODY_LIMIT),
        impact=_clean(inc.type, 20),
        url=_web_url(inc.url),
    )


def _web_url(url: str | None) -> str:
    if not url or len(url) > 500 or not url.startswith(("https://", "http://")):
        return ""
    return url if not any(ch.isspace() or ch in '<>"' for ch in url) else ""


def _connect_failure(err: httpx.ConnectError) -> tuple[Outcome, str]:
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return Outcome.TLS, "failed the TLS handshake"
        text = str(cause).lower()
        if "name or service not known" in text or "getaddrinfo" in text or "nodename" in text:
            return Outcome.DNS, "could not be found (DNS lookup failed)"
        cause = cause.__cause__ or cause.__context__
    return Outcome.REFUSED, "refused the connection"
