"""A Mastodon 4.x server on a random loopback port, built from real recorded exchanges.

Everything it says comes from the VCR cassettes in `tests/fixtures/mastodon/`
(recorded against a real Mastodon 4.7 by Mastodon.py's test suite, MIT): fixed
endpoints (`/api/v1/instance`, `/api/v2/instance`, `/health`, account lookups,
error bodies) are replayed as recorded, headers included, keyed by method, path
and the query parameters that matter. Endpoints whose answer depends on state
(timelines, search, posting, deleting, the streaming websocket) are computed
from a store seeded with the recorded statuses, built from the recorded status
JSON, and answered with the recorded headers of that endpoint; pagination follows
Mastodon's `min_id`/`max_id`/`since_id` rules and Link headers, and streaming
frames have the recorded shape (`*.ws.yaml`).

The recording's origin `http://localhost:3000` is rewritten to `public_url`
(default `https://mastodon.example`), its domain to `domain`, and its streaming
origin `ws://localhost:4000` to this server's own websocket URL. Tests reach it
through the plugin's `instances` mapping (`mastodon.example` → this server).

Faults: `fail(path, status)` (429 with `X-RateLimit-Reset`, 5xx), `stall(path,
seconds)` (answers late, after doing the work, so client timeouts can be tested),
`rate_limit(limit, window_s)` (Mastodon's limiter with live headers),
`drop_streams()` (abort every websocket without a close frame) and
`streaming_available = False` (refuse new websockets with 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import html
import json
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import yaml
from aiohttp import WSMsgType, web

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mastodon"
RECORDED_ORIGIN = "http://localhost:3000"
RECORDED_STREAMING = "ws://localhost:4000"
RECORDED_DOMAIN = "localhost:3000"
TOKEN = "fake-mastodon-token"
OWNER_ID = "117440810532227399"  # mastodonpy_test, whose token the recordings used
# Headers that describe the recorded transfer, not the answer.
_TRANSFER_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"}
)
# Query parameters that select a different recorded answer.
_SIGNIFICANT = ("acct", "q", "type")
_STREAMS = frozenset(
    {
        "user", "user:notification", "public", "public:local", "public:remote",
        "public:media", "public:local:media", "public:remote:media", "hashtag",
        "hashtag:local", "list", "direct",
    }
)  # fmt: skip
_LINKIFY = re.compile(
    r"(?P<url>https?://[^\s<]+)|(?<![\w/])#(?P<tag>\w+)|(?<![\w/])@(?P<user>\w+)(?:@(?P<host>[\w.-]+\w))?"
)


@dataclass(frozen=True)
class Recorded:
    """One recorded request and its response, hosts rewritten for this server."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    headers: list[tuple[str, str]]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def _norm_path(path: str) -> str:
    return path.rstrip("/") or "/"


@functools.cache
def _parsed(name: str) -> Any:
    """Parsed once per test run: the big cassettes take a while to read."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load((FIXTURES / f"{name}.yaml").read_text(encoding="utf-8"), Loader=loader)


def load_cassette(name: str, rewrite: dict[str, str] | None = None) -> list[Recorded]:
    """The interactions of `tests/fixtures/mastodon/<name>.yaml`, with hosts rewritten."""
    data = _parsed(name)
    out: list[Recorded] = []

    def sub(value: str) -> str:
        for old, new in (rewrite or {}).items():
            value = value.replace(old, new)
        return value

    for item in data["interactions"]:
        request, response = item["request"], item["response"]
        parts = urlsplit(sub(request["uri"]))
        headers = [
            (name, sub(str(value)))
            for name, values in (response.get("headers") or {}).items()
            if name.lower() not in _TRANSFER_HEADERS
            for value in values
        ]
        out.append(
            Recorded(
                method=request["method"],
                path=_norm_path(parts.path),
                query=dict(parse_qsl(parts.query)),
                status=int(response["status"]["code"]),
                headers=headers,
                body=sub(response["body"].get("string") or ""),
            )
        )
    return out


def load_ws_cassette(name: str) -> dict[str, Any]:
    """A recorded websocket session (`*.ws.yaml`): frames sent and received."""
    data: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.ws.yaml").read_text("utf-8"))
    return data


def id_key(status_id: str) -> tuple[int, str]:
    return (len(status_id), status_id)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass
class _Fault:
    method: str | None
    path: str
    times: int
    status: int | None = None
    delay_s: float = 0.0
    reset_in_s: float = 60.0
    body: str = ""


@dataclass
class _Stream:
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    subscriptions: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class MastodonFake:
    """A stateful Mastodon speaking the recorded wire format. See the module docstring."""

    def __init__(
        self,
        *,
        domain: str = "mastodon.example",
        public_url: str = "",
        token: str = TOKEN,
        seed: Literal["all", "toots", "none"] = "all",
        search_enabled: bool = False,
        require_token: bool = False,
    ) -> None:
        self.domain = domain
        # GoToSocial's default: every API read but /api/v1/instance needs a token.
        self.require_token = require_token
        self.public_url = public_url or f"https://{domain}"
        self.token = token
        self.search_enabled = search_enabled
        self.streaming_available = True
        # Fault injection: every new stream opens, then breaks off without a close frame.
        self.streams_keep_dropping = False
        self.seed = seed
        self.requests: list[LoggedRequest] = []
        self.accounts: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.follows: set[str] = set()
        self._unresolved: set[str] = set()
        self.created_via_api: list[str] = []
        self.stream_connections = 0
        self._idempotency: dict[tuple[str, str], str] = {}
        self._faults: list[_Fault] = []
        self._rate: tuple[int, float] | None = None
        self._rate_used = 0
        self._rate_reset: datetime | None = None
        self._streams: list[_Stream] = []
        self._sending: set[asyncio.Future[None]] = set()
        self._stream_changed = asyncio.Condition()
        self._last_id = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.replay: list[Recorded] = []
        self._templates: dict[str, Recorded] = {}
        self.media: dict[str, dict[str, Any]] = {}  # uploaded via POST /api/v2/media

    # --- lifecycle ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> MastodonFake:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._load_recordings()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        for stream in list(self._streams):
            await stream.ws.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _rewrite(self) -> dict[str, str]:
        return {
            RECORDED_STREAMING: self.ws_url,
            RECORDED_ORIGIN: self.public_url,
            RECORDED_DOMAIN: self.domain,
        }

    def cassette(self, name: str) -> list[Recorded]:
        return load_cassette(name, self._rewrite())

    def _load_recordings(self) -> None:
        c = self.cassette
        lookup = c("test_account_lookup")
        search = c("test_search")
        pages = c("test_fetch_next_previous")
        hashtag = c("test_hashtag_tl")
        post = c("test_status_post[None-public]")
        cw_post = c("test_status_post[Content warning-public]")
        media = c("test_status_delete_media")
        direct = c("test_account_statuses_exclude_direct")
        health = c("test_health")
        stream_health = c("test_stream_healthy")
        # Fixed answers, replayed as recorded.
        self.replay = [
            *c("test_instance"),
            *c("test_instance_v1"),
            *health,
            stream_health[2],
            lookup[0],
            lookup[2],
            lookup[3],
        ]
        self._templates = {
            "not_found": lookup[1],
            "status_missing": c("test_status_missing")[0],
            "unauthorized": c("test_home_tl_anonymous_throws")[0],
            "too_long": c("test_lang_for_errors")[1],
            "timeline": pages[11],
            "hashtag": hashtag[2],
            "search": search[2],
            "lookup": lookup[2],
            "post": post[0],
            "delete": post[1],
        }
        # Accounts and statuses as the recordings show them.
        for account in [lookup[2].json(), *search[0].json()["accounts"]]:
            self.accounts.setdefault(account["id"], account)
        recorded: list[dict[str, Any]] = []
        for page in (pages[11], pages[12]):
            recorded += page.json()
        if self.seed == "all":
            recorded += hashtag[2].json()
            recorded += [post[0].json(), cw_post[0].json(), media[2].json()]
            recorded += [direct[0].json(), direct[2].json()]
        if self.seed != "none":
            for status in recorded:
                self._store(status)
        self.status_template = post[0].json()
        self.media_template = media[2].json()["media_attachments"][0]

    async def __aenter__(self) -> MastodonFake:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- test controls ------------------------------------------------------------

    def fail(
        self,
        path: str,
        status: int,
        *,
        times: int = 1,
        method: str | None = None,
        reset_in_s: float = 60.0,
        body: str = "",
    ) -> None:
        """The next `times` requests whose path starts with `path` answer `status`.

        429 comes as Mastodon's limiter sends it (JSON, `X-RateLimit-Reset`); anything
        else as a proxy's HTML error page, or `body` (as HTML) when given.
        """
        self._faults.append(
            _Fault(method, path, times, status=status, reset_in_s=reset_in_s, body=body)
        )

    def stall(
        self, path: str, seconds: float, *, times: int = 1, method: str | None = None
    ) -> None:
        """Do the work, then answer only after `seconds` (past the client's timeout)."""
        self._faults.append(_Fault(method, path, times, delay_s=seconds))

    def rate_limit(self, limit: int, window_s: float = 300.0) -> None:
        """Count API calls like Mastodon's limiter: `limit` per window, then 429."""
        self._rate = (limit, window_s)
        self._rate_used = 0
        self._rate_reset = None

    def drop_streams(self) -> None:
        """Cut every websocket without a close frame, like a lost connection."""
        for stream in self._streams:
            if stream.transport is not None:
                stream.transport.abort()
        self._streams.clear()

    async def wait_subscribed(self, stream: str, tag: str = "", *, within_s: float = 10.0) -> None:
        """Wait until a connected client has subscribed to `stream` (and `tag`)."""
        async with asyncio.timeout(within_s), self._stream_changed:
            await self._stream_changed.wait_for(
                lambda: any((stream, tag) in s.subscriptions for s in self._streams)
            )

    def account(self, acct: str) -> dict[str, Any]:
        for account in self.accounts.values():
            if account["acct"].lower() == acct.lower().lstrip("@"):
                return account
        raise KeyError(acct)

    def add_account(
        self,
        username: str,
        *,
        display_name: str = "",
        suspended: bool = False,
        remote_domain: str = "",
        known: bool = True,
    ) -> dict[str, Any]:
        """A new account shaped like the recorded ones (local unless `remote_domain`).

        A remote account that is not `known` yet is invisible to lookups, as on
        Mastodon, until a search with `resolve=true` fetches it (WebFinger).
        """
        account = copy.deepcopy(self.account("mastodonpy_test_2"))
        account_id = self._next_id()
        acct = f"{username}@{remote_domain}" if remote_domain else username
        origin = f"https://{remote_domain}" if remote_domain else self.public_url
        account.update(
            id=account_id,
            username=username,
            acct=acct,
            display_name=display_name,
            url=f"{origin}/@{username}",
            uri=f"{origin}/users/{username}",
            statuses_count=0,
        )
        if suspended:
            # What Mastodon serialises for an unavailable account: flagged, emptied.
            account.update(suspended=True, display_name="", note="", fields=[], emojis=[])
        if not known:
            self._unresolved.add(account_id)
        self.accounts[account_id] = account
        return account

    def post(
        self,
        acct: str,
        text: str,
        *,
        spoiler_text: str = "",
        visibility: str = "public",
        reply_to: str | None = None,
        media: list[tuple[str, str]] | None = None,
        quote_of: str | None = None,
        emojis: list[str] | None = None,
    ) -> dict[str, Any]:
        """A new status by `acct` (as if posted on the server), streamed to subscribers."""
        status = self._make_status(
            self.account(acct),
            text,
            spoiler_text=spoiler_text,
            visibility=visibility,
            reply_to=reply_to,
            media=media or [],
            quote_of=quote_of,
            emojis=emojis or [],
        )
        self._store(status)
        self._broadcast(status)
        return status

    def boost(self, acct: str, status_id: str) -> dict[str, Any]:
        """`acct` reblogs a status: a new status wrapping the original."""
        booster = self.account(acct)
        original = self.statuses[status_id]
        wrapper = self._make_status(
            booster,
            "",
            spoiler_text="",
            visibility="public",
            reply_to=None,
            media=[],
            quote_of=None,
            emojis=[],
        )
        activity = (
            f"{self.public_url}/users/{booster['username']}/statuses/{wrapper['id']}/activity"
        )
        wrapper.update(
            reblog=original,
            content="",
            url=activity,
            uri=activity,
            tags=[],
            mentions=[],
            language=None,
        )
        self._store(wrapper)
        self._broadcast(wrapper)
        return wrapper

    # --- statuses -----------------------------------------------------------------

    def _next_id(self) -> str:
        """Mastodon's snowflake ids: milliseconds << 16, always increasing."""
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        self._last_id = max(now_ms << 16, self._last_id + 1)
        return str(self._last_id)

    def _store(self, status: dict[str, Any]) -> None:
        self.statuses[status["id"]] = status
        self._last_id = max(self._last_id, int(status["id"]))

    def _content(self, text: str) -> tuple[str, list[dict[str, str]], list[dict[str, Any]]]:
        """Mastodon's HTML for plain text: paragraphs, links, hashtags, mentions."""
        tags: list[dict[str, str]] = []
        mentions: list[dict[str, Any]] = []

        def link(match: re.Match[str]) -> str:
            if match.group("url"):
                url = match.group("url")
                scheme, _, rest = url.partition("://")
                return (
                    f'<a href="{url}" target="_blank" rel="nofollow noopener" translate="no">'
                    f'<span class="invisible">{scheme}://</span><span class="">{rest}</span>'
                    '<span class="invisible"></span></a>'
                )
            if match.group("tag"):
                name = match.group("tag")
                tags.append({"name": name.lower(), "url": f"{self.public_url}/tags/{name.lower()}"})
                return (
                    f'<a href="{self.public_url}/tags/{name}" class="mention hashtag" '
                    f'rel="tag">#<span>{name}</span></a>'
                )
            user, host = match.group("user"), match.group("host")
            acct = f"{user}@{host}" if host and host != self.domain else user
            try:
                account = self.account(acct)
            except KeyError:
                return match.group(0)
            mentions.append(
                {
                    "id": account["id"],
                    "username": account["username"],
                    "url": account["url"],
                    "acct": account["acct"],
                }
            )
            return (
                f'<span class="h-card" translate="no"><a href="{account["url"]}" '
                f'class="u-url mention">@<span>{account["username"]}</span></a></span>'
            )

        paragraphs = []
        for paragraph in text.split("\n\n"):
            body = _LINKIFY.sub(link, html.escape(paragraph, quote=False))
            paragraphs.append("<p>" + body.replace("\n", "<br />") + "</p>")
        return "".join(paragraphs), tags, mentions

    def _make_status(
        self,
        account: dict[str, Any],
        text: str,
        *,
        spoiler_text: str,
        visibility: str,
        reply_to: str | None,
        media: list[tuple[str, str]],
        quote_of: str | None,
        emojis: list[str],
    ) -> dict[str, Any]:
        status = copy.deepcopy(self.status_template)
        status_id = self._next_id()
        content, tags, mentions = self._content(text) if text else ("", [], [])
        parent = self.statuses.get(reply_to or "")
        attachments = []
        for kind, description in media:
            attachment = copy.deepcopy(self.media_template)
            attachment.update(id=self._next_id(), type=kind, description=description or None)
            attachments.append(attachment)
        status.update(
            id=status_id,
            created_at=_iso(datetime.now(UTC)),
            in_reply_to_id=parent["id"] if parent else None,
            in_reply_to_account_id=parent["account"]["id"] if parent else None,
            sensitive=bool(spoiler_text),
            spoiler_text=spoiler_text,
            visibility=visibility,
            uri=f"{self.public_url}/ap/users/{account['id']}/statuses/{status_id}",
            url=f"{self.public_url}/@{account['acct']}/{status_id}",
            content=content,
            account=account,
            media_attachments=attachments,
            mentions=mentions,
            tags=tags,
            emojis=[
                {
                    "shortcode": code,
                    "url": f"{self.public_url}/emoji/{code}.png",
                    "static_url": f"{self.public_url}/emoji/{code}.png",
                    "visible_in_picker": True,
                }
                for code in emojis
            ],
            quote=(
                {"state": "accepted", "quoted_status": self.statuses[quote_of]}
                if quote_of
                else None
            ),
        )
        return status

    # --- dispatch -----------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        token = token or request.query.get("access_token", "")
        return bool(token) and token == self.token

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = _norm_path(request.path)
        self.requests.append(
            LoggedRequest(request.method, path, dict(request.query), dict(request.headers))
        )
        if path == "/api/v1/streaming":
            return await self._streaming(request)
        fault = self._take_fault(request.method, path)
        if fault is not None and fault.status is not None:
            return self._fault_response(fault)
        if path.startswith("/api/") and (limited := self._count_rate()) is not None:
            return limited
        open_path = path.startswith("/api/v1/instance")
        if self.require_token and not open_path and not self._authorized(request):
            return self._recorded(self._templates["unauthorized"])
        response = await self._answer(request, path)
        self._stamp_rate(response)
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        return response

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.times > 0 and path.startswith(fault.path) and fault.method in (None, method):
                fault.times -= 1
                return fault
        return None

    def _fault_response(self, fault: _Fault) -> web.Response:
        status = fault.status or 500
        if status == 429:
            reset = datetime.now(UTC) + timedelta(seconds=fault.reset_in_s)
            return web.json_response(
                {"error": "Too many requests"},
                status=429,
                headers={
                    "X-RateLimit-Limit": "300",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": _iso(reset),
                },
            )
        page = f"<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>"
        return web.Response(status=status, content_type="text/html", text=fault.body or page)

    def _count_rate(self) -> web.Response | None:
        if self._rate is None:
            return None
        limit, window = self._rate
        now = datetime.now(UTC)
        if self._rate_reset is None or now >= self._rate_reset:
            self._rate_used, self._rate_reset = 0, now + timedelta(seconds=window)
        self._rate_used += 1
        if self._rate_used > limit:
            response = web.json_response({"error": "Too many requests"}, status=429)
            self._stamp_rate(response)
            return response
        return None

    def _stamp_rate(self, response: web.StreamResponse) -> None:
        if self._rate is None or self._rate_reset is None:
            return
        limit = self._rate[0]
        response.headers["X-RateLimit-Limit"] = str(limit)
        response.headers["X-RateLimit-Remaining"] = str(max(0, limit - self._rate_used))
        response.headers["X-RateLimit-Reset"] = _iso(self._rate_reset)

    def _recorded(
        self,
        record: Recorded,
        *,
        body: Any = None,
        status: int | None = None,
        drop: tuple[str, ...] = ("link", "etag"),
    ) -> web.Response:
        """An answer with a recorded exchange's headers (and its body unless given)."""
        response = web.Response(
            status=status or record.status,
            text=record.body if body is None else json.dumps(body, separators=(",", ":")),
        )
        response.headers.popall("Content-Type", None)
        for name, value in record.headers:
            if name.lower() not in drop:
                response.headers.add(name, value)
        return response

    def _replayed(self, method: str, path: str, query: dict[str, str]) -> Recorded | None:
        wanted = {k: query.get(k) for k in _SIGNIFICANT}
        for record in self.replay:
            significant = {k: record.query.get(k) for k in _SIGNIFICANT}
            if record.method == method and record.path == path and significant == wanted:
                return record
        return None

    async def _answer(self, request: web.Request, path: str) -> web.Response:
        method, query = request.method, dict(request.query)
        authorized = self._authorized(request)
        segments = path.strip("/").split("/")
        if path == "/api/v1/accounts/verify_credentials" and not authorized:
            return self._recorded(self._templates["unauthorized"])
        if path == "/api/v1/accounts/lookup":
            return self._lookup(query)
        recorded = self._replayed(method, path, query)
        if recorded is not None:
            return self._recorded(recorded, drop=())
        if method == "GET" and segments[:3] == ["api", "v1", "accounts"] and len(segments) == 5:
            return self._account_statuses(segments[3], segments[4], query, authorized)
        if (
            method == "GET"
            and segments[:4] == ["api", "v1", "timelines", "tag"]
            and len(segments) == 5
        ):
            return self._tag_timeline(segments[4], query)
        if method == "GET" and path == "/api/v1/timelines/home":
            if not authorized:
                return self._recorded(self._templates["unauthorized"])
            return self._timeline(path, [s for s in self._newest_first() if self._home(s)], query)
        if method == "GET" and path == "/api/v2/search":
            return self._search(query, authorized)
        if method == "POST" and path == "/api/v2/media":
            return await self._upload_media(request)
        if segments[:3] == ["api", "v1", "statuses"]:
            return await self._statuses(request, segments[3:], authorized)
        return self._recorded(self._templates["status_missing"])

    # --- read endpoints -----------------------------------------------------------

    def _lookup(self, query: dict[str, str]) -> web.Response:
        recorded = self._replayed("GET", "/api/v1/accounts/lookup", query)
        if recorded is not None:
            return self._recorded(recorded, drop=())
        acct = query.get("acct", "").lstrip("@").lower()
        user, _, host = acct.partition("@")
        wanted = user if host in ("", self.domain) else acct
        for account in self.accounts.values():
            if account["acct"].lower() == wanted and account["id"] not in self._unresolved:
                return self._recorded(self._templates["lookup"], body=account)
        return self._recorded(self._templates["not_found"])

    def _newest_first(self) -> list[dict[str, Any]]:
        return sorted(self.statuses.values(), key=lambda s: id_key(s["id"]), reverse=True)

    def _home(self, status: dict[str, Any]) -> bool:
        return status["account"]["id"] in self.follows | {OWNER_ID}

    def _timeline(
        self,
        path: str,
        statuses: list[dict[str, Any]],
        query: dict[str, str],
        template: str = "timeline",
    ) -> web.Response:
        """Mastodon's paging: `min_id` gives the page just after it, others the newest."""
        limit = max(1, min(int(query.get("limit") or 20), 40))
        max_id, since_id, min_id = query.get("max_id"), query.get("since_id"), query.get("min_id")
        if max_id:
            statuses = [s for s in statuses if id_key(s["id"]) < id_key(max_id)]
        if since_id:
            statuses = [s for s in statuses if id_key(s["id"]) > id_key(since_id)]
        if min_id:
            newer = [s for s in reversed(statuses) if id_key(s["id"]) > id_key(min_id)]
            page = list(reversed(newer[:limit]))
        else:
            page = statuses[:limit]
        response = self._recorded(self._templates[template], body=page)
        if page:
            base = f"{self.public_url}{path}?limit={limit}"
            response.headers["Link"] = (
                f'<{base}&max_id={page[-1]["id"]}>; rel="next", '
                f'<{base}&min_id={page[0]["id"]}>; rel="prev"'
            )
        return response

    def _account_statuses(
        self, account_id: str, what: str, query: dict[str, str], authorized: bool
    ) -> web.Response:
        if what != "statuses" or account_id not in self.accounts:
            return self._recorded(self._templates["not_found"])
        visible = {"public", "unlisted"} | ({"private", "direct"} if authorized else set())
        statuses = [
            s
            for s in self._newest_first()
            if s["account"]["id"] == account_id
            and s["visibility"] in visible
            and not (query.get("exclude_replies") in ("1", "true") and s["in_reply_to_id"])
            and not (query.get("exclude_reblogs") in ("1", "true") and s["reblog"])
        ]
        return self._timeline(f"/api/v1/accounts/{account_id}/statuses", statuses, query)

    def _tag_timeline(self, tag: str, query: dict[str, str]) -> web.Response:
        statuses = [
            s
            for s in self._newest_first()
            if not s["reblog"]
            and s["visibility"] == "public"
            and tag.lower() in {t["name"] for t in s["tags"]}
        ]
        return self._timeline(f"/api/v1/timelines/tag/{tag}", statuses, query, "hashtag")

    def _search(self, query: dict[str, str], authorized: bool) -> web.Response:
        resolve = query.get("resolve") in ("1", "true")
        if not authorized and (resolve or int(query.get("offset") or 0) > 0):
            return web.json_response(
                {
                    "error": "Search queries that resolve remote resources are not supported "
                    "without authentication"
                },
                status=401,
            )
        kind, text = query.get("type", ""), query.get("q", "").strip()
        result: dict[str, Any] = {"accounts": [], "statuses": [], "hashtags": [], "collections": []}
        if kind in ("", "accounts"):
            wanted = text.lstrip("@").lower()
            user, _, host = wanted.partition("@")
            local = host in ("", self.domain)
            result["accounts"] = [
                a
                for a in self.accounts.values()
                if (local and user in a["acct"].lower() and "@" not in a["acct"])
                or (
                    not local
                    and a["acct"].lower() == wanted
                    and (resolve or a["id"] not in self._unresolved)
                )
            ]
            if resolve:
                self._unresolved -= {a["id"] for a in result["accounts"]}
        if kind in ("", "statuses") and text.startswith(("https://", "http://")):
            # A post's link is resolved whether or not full-text search is on.
            result["statuses"] = [
                self._public(s) for s in self.statuses.values() if text in (s["url"], s["uri"])
            ]
        elif kind in ("", "statuses") and self.search_enabled and authorized:
            needle = text.lower()
            matches = [
                s
                for s in self._newest_first()
                if s["visibility"] == "public"
                and not s["reblog"]
                and needle in s["content"].lower()
            ]
            page = self._timeline("/api/v2/search", matches, query)
            result["statuses"] = json.loads(page.text or "[]")
        return self._recorded(self._templates["search"], body=result)

    # --- write endpoints ----------------------------------------------------------

    async def _statuses(
        self, request: web.Request, rest: list[str], authorized: bool
    ) -> web.Response:
        method = request.method
        if method == "POST" and not rest:
            if not authorized:
                return self._recorded(self._templates["unauthorized"])
            return await self._create(request)
        status = self.statuses.get(rest[0]) if rest else None
        if status is None or len(rest) != 1:
            return self._recorded(self._templates["status_missing"])
        if method == "GET":
            return self._recorded(self._templates["lookup"], body=status)
        if method == "DELETE":
            if not authorized:
                return self._recorded(self._templates["unauthorized"])
            if status["account"]["id"] != OWNER_ID:
                return self._recorded(self._templates["not_found"])
            del self.statuses[rest[0]]
            deleted = dict(status)
            deleted.pop("content", None)
            deleted["text"] = deleted.pop("_source_text", "")
            return self._recorded(self._templates["delete"], body=deleted)
        return self._recorded(self._templates["status_missing"])

    async def _create(self, request: web.Request) -> web.Response:
        """`POST /api/v1/statuses`, honouring `Idempotency-Key` like Mastodon (per account)."""
        form = await request.post()
        key = request.headers.get("Idempotency-Key", "")
        if key and (self.token, key) in self._idempotency:
            existing = self.statuses[self._idempotency[(self.token, key)]]
            return self._recorded(self._templates["post"], body=self._public(existing))
        text = str(form.get("status", ""))
        if len(text) > 500:
            return self._recorded(self._templates["too_long"])
        status = self._make_status(
            self.accounts[OWNER_ID],
            text,
            spoiler_text=str(form.get("spoiler_text", "")),
            visibility=str(form.get("visibility", "public")),
            reply_to=str(form.get("in_reply_to_id", "")) or None,
            media=[],
            quote_of=str(form.get("quoted_status_id", "")) or None,
            emojis=[],
        )
        status["_source_text"] = text
        status["media_attachments"] = [
            self._public(self.media[str(m)])
            for m in form.getall("media_ids[]", [])
            if str(m) in self.media
        ]
        self._store(status)
        self.created_via_api.append(status["id"])
        if key:
            self._idempotency[(self.token, key)] = status["id"]
        self._broadcast(status)
        return self._recorded(self._templates["post"], body=self._public(status))

    async def _upload_media(self, request: web.Request) -> web.Response:
        """`POST /api/v2/media` (multipart `file`, `description`): a processed image, as
        Mastodon answers (200) for small pictures; the bytes are kept as `_data`."""
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            body = {"error": "Validation failed: File can't be blank"}
            return web.json_response(body, status=422)
        attachment = copy.deepcopy(self.media_template)
        media_id = self._next_id()
        attachment.update(
            id=media_id,
            type="image",
            description=str(form.get("description", "")) or None,
            url=f"{self.public_url}/media/{media_id}",
            preview_url=f"{self.public_url}/media/{media_id}/small",
        )
        attachment["_data"] = upload.file.read()
        attachment["_mime"] = upload.content_type
        self.media[media_id] = attachment
        return web.json_response(self._public(attachment))

    @staticmethod
    def _public(status: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in status.items() if not k.startswith("_")}

    # --- streaming ----------------------------------------------------------------

    async def _streaming(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._recorded(self._templates["unauthorized"])
        if not self.streaming_available:
            return web.Response(status=503, text="streaming is down")
        ws = web.WebSocketResponse(autoping=True)
        transport = request.transport
        await ws.prepare(request)
        stream = _Stream(ws, transport)
        self._streams.append(stream)
        self.stream_connections += 1
        if self.streams_keep_dropping and transport is not None:
            transport.abort()  # right after the handshake, before any subscription
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                await self._on_frame(stream, message.data)
        finally:
            if stream in self._streams:
                self._streams.remove(stream)
        return ws

    async def _on_frame(self, stream: _Stream, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            return
        name, tag = str(frame.get("stream", "")), str(frame.get("tag", ""))
        if frame.get("type") not in ("subscribe", "unsubscribe"):
            return
        if name not in _STREAMS:
            await stream.ws.send_str(json.dumps({"error": "Unknown stream type", "status": 400}))
            return
        if name.startswith("hashtag") and not tag:
            await stream.ws.send_str(
                json.dumps({"error": "No tag for stream provided", "status": 400})
            )
            return
        entry = (name, tag)
        if frame["type"] == "subscribe" and entry not in stream.subscriptions:
            stream.subscriptions.append(entry)
        elif frame["type"] == "unsubscribe" and entry in stream.subscriptions:
            stream.subscriptions.remove(entry)
        async with self._stream_changed:
            self._stream_changed.notify_all()

    def _matches(self, name: str, tag: str, status: dict[str, Any]) -> bool:
        public = status["visibility"] == "public" and not status["reblog"]
        local = "@" not in status["account"]["acct"]
        if name in ("hashtag", "hashtag:local"):
            tagged = tag.lower() in {t["name"] for t in status["tags"]}
            return public and tagged and (local or name == "hashtag")
        if name == "public":
            return public
        if name == "public:local":
            return public and local
        if name == "public:remote":
            return public and not local
        if name == "user":
            return self._home(status)
        return False

    def _broadcast(self, status: dict[str, Any]) -> None:
        payload = json.dumps(self._public(status), separators=(",", ":"))
        for stream in list(self._streams):
            for name, tag in stream.subscriptions:
                if self._matches(name, tag, status):
                    frame = {
                        "stream": [name, tag] if tag else [name],
                        "event": "update",
                        "payload": payload,
                    }
                    task = asyncio.ensure_future(self._send(stream, json.dumps(frame)))
                    self._sending.add(task)
                    task.add_done_callback(self._sending.discard)

    def edit_status(self, status_id: str, text: str) -> dict[str, Any]:
        """The author edits a status: new content and `edited_at`, streamed as
        `status.update` (the whole status again), like Mastodon 3.5 and later."""
        status = self.statuses[status_id]
        content, tags, mentions = self._content(text)
        status.update(
            content=content, tags=tags, mentions=mentions, edited_at=_iso(datetime.now(UTC))
        )
        payload = json.dumps(self._public(status), separators=(",", ":"))
        self._announce(status, "status.update", payload)
        return status

    def delete_status(self, status_id: str) -> None:
        """The author deletes a status: gone from every timeline, and Mastodon streams a
        `delete` event whose payload is only the status id."""
        status = self.statuses.pop(status_id)
        self._announce(status, "delete", status_id)

    def _announce(self, status: dict[str, Any], event: str, payload: str) -> None:
        """Send one event to every stream subscription that saw `status`."""
        for stream in list(self._streams):
            for name, tag in stream.subscriptions:
                if self._matches(name, tag, status):
                    frame = {
                        "stream": [name, tag] if tag else [name],
                        "event": event,
                        "payload": payload,
                    }
                    task = asyncio.ensure_future(self._send(stream, json.dumps(frame)))
                    self._sending.add(task)
                    task.add_done_callback(self._sending.discard)

    @staticmethod
    async def _send(stream: _Stream, text: str) -> None:
        # A client that is gone loses what it did not get, like on a real dropped stream.
        with contextlib.suppress(ConnectionError, RuntimeError):
            await stream.ws.send_str(text)


def plugin_config(fake: MastodonFake, *, token: bool = True, **overrides: Any) -> dict[str, Any]:
    """A `[mastodon]` table pointing the default instance at `fake` (fast reconnects)."""
    config: dict[str, Any] = {
        "instance": f"https://{fake.domain}",
        "instances": {fake.domain: fake.base_url},
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.5,
        "timeout_s": 5,
    }
    if token:
        config["token"] = fake.token
    config.update(overrides)
    return config


def plugin_env(fake: MastodonFake, *, token: bool = True, **overrides: Any) -> dict[str, str]:
    """The same table as `STARLING_MASTODON__*` environment variables."""
    return {
        f"STARLING_MASTODON__{name.upper()}": json.dumps(value)
        if isinstance(value, dict)
        else str(value)
        for name, value in plugin_config(fake, token=token, **overrides).items()
    }
