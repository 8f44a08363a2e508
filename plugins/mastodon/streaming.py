"""Live statuses over Mastodon's streaming API: one multiplexed websocket per instance.

Only instances Starling has a token for are streamed. Hashtags subscribe to the
`hashtag` stream; followed accounts are picked out of `public:local` (or `user`,
see `account_stream`). Each (re)connection subscribes first, then backfills every
target over REST from its last cursor. Live statuses flow at once for targets whose
backfill is done; a target still backfilling has its live statuses held back and
delivered right after its own backfill, so per-target order holds and the cursor
handed to the core never jumps past a status that was not delivered. A target whose
backfill fails still gets its live statuses, but its cursor stays where it was, so
polling (which carries on beside the stream) or the next connection fills the gap.

Edits (`status.update`) travel like new statuses; the core sees the newer
`edited_at` and edits the chat message. Deletes (`delete`, only an id) go to the
sink as tombstones. Polling cannot see deletes, so only a live stream mirrors them.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect

from bot.errors import Outcome, UpstreamError, UserError
from bot.model import Target, Tombstone
from bot.netguard import BlockedAddressError
from bot.protocols import PluginContext, PostSink
from plugins.mastodon.client import ApiError
from plugins.mastodon.config import MastodonSettings
from plugins.mastodon.guard import vetted_addresses
from plugins.mastodon.statuses import newest_id
from plugins.mastodon.targets import parse_key

if TYPE_CHECKING:
    from plugins.mastodon.source import MastodonSource

log = logging.getLogger(__name__)

STABLE_AFTER_S = 30.0
BACKFILL_CONCURRENCY = 4
MAX_FRAME_BYTES = 4_000_000
MAX_ID_CHARS = 64


class _RedactAuthorization(logging.Filter):
    """websockets logs handshake headers at DEBUG; the bearer token must never be logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "authorization":
            record.args = (args[0], "[redacted]")
        return True


_ws_log = logging.getLogger("plugins.mastodon.websocket")
_ws_log.addFilter(_RedactAuthorization())


class _Dropped(Exception):
    """The server closed the stream (cleanly or not) after it was open."""


class _Marker(enum.Enum):
    BACKFILL_ENDED = "the backfill task finished (or crashed)"


_BACKFILL_ENDED = _Marker.BACKFILL_ENDED


@dataclass(slots=True)
class _Backlog:
    """One connection's backfill state, by resource key.

    `pending`: backfill not delivered yet, so live statuses wait in `held`.
    `gaps`: backfill failed, so live statuses go through without moving the cursor.
    """

    pending: set[str]
    held: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    gaps: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Route:
    """Which targets of one instance a live status can belong to."""

    by_tag: dict[str, list[Target]] = field(default_factory=dict)
    by_account: dict[str, list[Target]] = field(default_factory=dict)

    def targets_for(self, stream: Any, status: dict[str, Any]) -> list[Target]:
        found: list[Target] = []
        if not status.get("reblog"):
            tags = {
                str(t.get("name", "")).lower()
                for t in status.get("tags") or []
                if isinstance(t, dict)
            }
            if (
                isinstance(stream, list)
                and len(stream) > 1
                and str(stream[0]).startswith("hashtag")
            ):
                tags.add(str(stream[1]).lower())
            for tag in tags:
                found += self.by_tag.get(tag, [])
        account = status.get("account")
        if isinstance(account, dict):
            found += self.by_account.get(str(account.get("id", "")), [])
        return list(dict.fromkeys(found))


class StreamManager:
    """Runs one `InstanceStream` per streamable instance for the current target list."""

    def __init__(
        self, source: MastodonSource, ctx: PluginContext, settings: MastodonSettings
    ) -> None:
        self._source = source
        self._ctx = ctx
        self._settings = settings
        self.live: dict[str, str] = {}  # domain → what /status says about its stream
        self._instances: dict[str, InstanceStream] = {}  # domain → its stream (for outages)

    def status_lines(self) -> list[str]:
        """For /status: whether each instance's stream is connected."""
        if not self._source.directory.any_token:
            return ["live: polling only (no token, so no streaming)"]
        if not self._settings.stream:
            return ["live: polling only (stream = false)"]
        return [f"live: {domain} {state}" for domain, state in sorted(self.live.items())]

    def streamable(self, target: Target) -> bool:
        try:
            key = parse_key(target.key)
        except ValueError:
            return False
        if not self._settings.stream or not self._source.directory.get(key.domain).has_token:
            return False
        if key.kind == "tags":
            return True
        return key.kind == "accounts" and self._settings.account_stream != "off"

    async def run(
        self, targets: list[Target], cursors: Mapping[str, str | None], sink: PostSink
    ) -> None:
        by_domain: dict[str, list[Target]] = {}
        for target in targets:
            if self.streamable(target):
                by_domain.setdefault(parse_key(target.key).domain, []).append(target)
        self.live = dict.fromkeys(by_domain, "connecting")
        if not by_domain:
            return
        async with asyncio.TaskGroup() as group:
            for domain, domain_targets in by_domain.items():
                stream = InstanceStream(
                    self._source, self._ctx, self._settings, domain, domain_targets, cursors, sink,
                    self.live,
                )  # fmt: skip
                self._instances[domain] = stream
                group.create_task(stream.run(), name=f"mastodon-stream-{domain}")

    def stream_host(self, target: Target) -> str | None:
        """The host whose stream serves `target`: the outage work links the follow to it."""
        if not self.streamable(target):
            return None
        domain = parse_key(target.key).domain
        stream = self._instances.get(domain)
        return stream.host if stream is not None else domain


class InstanceStream:
    """One websocket to one instance, reconnecting with backoff until cancelled."""

    def __init__(
        self,
        source: MastodonSource,
        ctx: PluginContext,
        settings: MastodonSettings,
        domain: str,
        targets: list[Target],
        cursors: Mapping[str, str | None],
        sink: PostSink,
        live: dict[str, str],
    ) -> None:
        self._source = source
        self._ctx = ctx
        self._settings = settings
        self._live = live
        self.domain = domain
        self._targets = targets
        self._cursors: dict[str, str | None] = {
            t.resource_key: cursors.get(t.resource_key) for t in targets
        }
        self._sink = sink
        self._route = _Route()
        self._subscriptions: list[dict[str, str]] = []
        for target in targets:
            key = parse_key(target.key)
            if key.kind == "tags":
                self._route.by_tag.setdefault(key.value, []).append(target)
                self._subscriptions.append(
                    {"type": "subscribe", "stream": "hashtag", "tag": key.value}
                )
            else:
                self._route.by_account.setdefault(key.value, []).append(target)
        if self._route.by_account:
            self._subscriptions.append({"type": "subscribe", "stream": settings.account_stream})
        self._endpoint: tuple[str, bool] | None = None
        self.host = domain

    # --- connection loop ----------------------------------------------------------

    async def run(self) -> None:
        delay = self._settings.reconnect_min_s
        while True:
            opened_at: float | None = None
            started = time.monotonic()
            try:
                url, trusted = await self._streaming_endpoint()
                async with await self._connect(url, trusted) as ws:
                    opened_at = time.monotonic()
                    self._record(Outcome.OK, started, status=101)
                    count = len(self._subscriptions)
                    self._live[self.domain] = (
                        f"streaming from {self.host} ({count} subscription{'s' * (count != 1)})"
                    )
                    await self._session(ws)
            except asyncio.CancelledError:
                raise
            except (UpstreamError, UserError) as err:
                # REST failures (instance info, backfill) are recorded by the client.
                log.warning("mastodon stream %s: %s", self.domain, err)
            except (OSError, TimeoutError, websockets.WebSocketException, _Dropped) as exc:
                outcome, message, status = _classify(
                    exc, self.host, connected=opened_at is not None
                )
                self._record(outcome, started, status=status, detail=message)
                log.warning("mastodon stream %s: %s", self.domain, message)
                self._live[self.domain] = f"stream down, reconnecting ({message})"
            if opened_at is not None and time.monotonic() - opened_at >= STABLE_AFTER_S:
                delay = self._settings.reconnect_min_s
            await self._ctx.clock.sleep(delay)
            delay = min(delay * 2, self._settings.reconnect_max_s)

    async def _streaming_endpoint(self) -> tuple[str, bool]:
        """Where the instance streams (`streaming_url`, else what the instance says)."""
        if self._endpoint is not None:
            return self._endpoint
        instance = self._source.directory.get(self.domain)
        if self.domain == self._source.directory.default_domain and self._settings.streaming_url:
            base, trusted = self._settings.streaming_url, True
        else:
            base = await self._advertised_streaming_url() or instance.base_url
            trusted = instance.trusted and _netloc(base) == _netloc(instance.base_url)
        base = base.rstrip("/")
        if base.startswith("http"):
            base = "ws" + base[len("http") :]
        self._endpoint = (base + "/api/v1/streaming", trusted)
        self.host = urlsplit(base).netloc or self.domain
        return self._endpoint

    async def _advertised_streaming_url(self) -> str:
        client = self._source.client(self.domain)
        try:
            info = (await client.get("/api/v2/instance", expect=dict)).data
            urls = (info.get("configuration") or {}).get("urls") or {}
            if isinstance(urls.get("streaming"), str):
                return str(urls["streaming"])
        except ApiError as err:
            if err.status not in (404, 410) and err.outcome is not Outcome.PARSE:
                raise
        v1 = await self._source.instance_info(self.domain)
        urls = v1.get("urls") or {}
        value = urls.get("streaming_api") if isinstance(urls, dict) else None
        return value if isinstance(value, str) else ""

    async def _connect(self, url: str, trusted: bool) -> connect:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise UpstreamError(Outcome.PARSE, f"{self.domain} streams at an invalid URL")
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        extra: dict[str, Any] = {}
        if not trusted:
            addresses = await vetted_addresses(
                parts.hostname, port, allow_private=self._ctx.allow_private_addresses
            )
            extra = {"host": addresses[0], "port": port}
        token = self._source.directory.get(self.domain).token
        return connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"} if token else None,
            user_agent_header=self._settings.user_agent,
            proxy=None,
            open_timeout=self._settings.timeout_s,
            max_size=MAX_FRAME_BYTES,
            logger=_ws_log,
            **extra,
        )

    # --- one connection -------------------------------------------------------------

    async def _session(self, ws: ClientConnection) -> None:
        for message in self._subscriptions:
            await ws.send(json.dumps(message))
        backlog = _Backlog({t.resource_key for t in self._targets})
        queue: asyncio.Queue[str | bytes | _Marker | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for frame in ws:
                    queue.put_nowait(frame)
            finally:
                queue.put_nowait(None)

        reader = asyncio.create_task(read(), name=f"mastodon-ws-read-{self.domain}")
        backfill = asyncio.create_task(
            self._backfill(backlog), name=f"mastodon-backfill-{self.domain}"
        )
        # A crashed backfill must end the session, even while no frame arrives.
        backfill.add_done_callback(lambda _: queue.put_nowait(_BACKFILL_ENDED))
        try:
            while (frame := await queue.get()) is not None:
                if frame is _BACKFILL_ENDED:
                    backfill.result()
                    continue
                await self._handle(frame, backlog)
            await reader  # re-raises how the connection ended
            raise _Dropped(f"{self.host} closed the stream")
        finally:
            reader.cancel()
            backfill.cancel()

    async def _backfill(self, backlog: _Backlog) -> None:
        """Fetch over REST whatever was posted since each target's cursor.

        Each target is released as soon as its own backfill is delivered: its held
        live statuses follow, and later ones go straight through `_handle`.
        """
        slots = asyncio.Semaphore(BACKFILL_CONCURRENCY)

        async def one(target: Target) -> None:
            async with slots:
                cursor = self._cursors.get(target.resource_key)
                try:
                    result = await self._source.fetch(target, cursor)
                except UpstreamError as err:
                    log.info("mastodon backfill of %s skipped: %s", target.display, err)
                    # Statuses since `cursor` are unknown: deliver live ones, keep the cursor.
                    backlog.gaps.add(target.resource_key)
                else:
                    if result.posts or result.cursor != cursor:
                        await self._deliver(target, result.posts, result.cursor, backlog)
            await self._release(target, backlog)

        await asyncio.gather(*(one(t) for t in self._targets))
        # Subscribed and caught up: a second success after the connect, so the outage
        # work sees the stream recovered (a healthy stream records nothing else).
        self._record(Outcome.OK, time.monotonic(), detail="stream caught up")

    async def _release(self, target: Target, backlog: _Backlog) -> None:
        """Deliver a target's held live statuses in arrival order, then let live ones through."""
        key = target.resource_key
        while held := backlog.held.pop(key, None):
            posts, newest = self._source.to_posts(held, self.domain)
            await self._deliver(target, posts, newest, backlog)
        backlog.pending.discard(key)  # no await since the last check: nothing slips past

    async def _handle(self, frame: str | bytes, backlog: _Backlog) -> None:
        try:
            message = json.loads(frame)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if "error" in message:
            status = message.get("status")
            detail = f"{self.host} refused a subscription: {str(message['error'])[:200]}"
            self._record(
                Outcome.HTTP_4XX,
                time.monotonic(),
                status=status if isinstance(status, int) else None,
                detail=detail,
            )
            log.warning("mastodon stream %s", detail)
            return
        event = message.get("event")
        payload = message.get("payload")
        if event == "delete":
            await self._deleted(payload)
            return
        if event not in ("update", "status.update"):
            return  # notifications, filters, announcements: nothing to relay
        # `status.update` is an edit: the whole status again, with a newer `edited_at`,
        # so it takes the same route and the core edits the message that carried it.
        try:
            status_obj = json.loads(payload) if isinstance(payload, str) else payload
        except ValueError:
            return
        if not isinstance(status_obj, dict) or not status_obj.get("id"):
            return
        targets = self._route.targets_for(message.get("stream"), status_obj)
        for target in targets:
            if target.resource_key in backlog.pending:
                backlog.held.setdefault(target.resource_key, []).append(status_obj)
                continue
            posts, newest = self._source.to_posts([status_obj], self.domain)
            await self._deliver(target, posts, newest, backlog)

    async def _deleted(self, payload: Any) -> None:
        """A status deleted upstream: Mastodon sends only its id, so the core finds the
        messages that carried it. The tombstone needs no target; any of ours will do."""
        native_id = str(payload).strip() if isinstance(payload, (str, int)) else ""
        if not native_id or len(native_id) > MAX_ID_CHARS or not self._targets:
            return
        target = self._targets[0]
        gone = Tombstone(self._source.network, native_id)
        await self._sink(target, [], self._cursors.get(target.resource_key), deleted=[gone])

    async def _deliver(
        self, target: Target, posts: list[Any], newest: str | None, backlog: _Backlog
    ) -> None:
        key = target.resource_key
        cursor = self._cursors.get(key)
        if key not in backlog.gaps:
            cursor = self._cursors[key] = newest_id([newest] if newest else [], cursor)
        await self._sink(target, posts, cursor)

    def _record(
        self, outcome: Outcome, started: float, *, status: int | None = None, detail: str = ""
    ) -> None:
        self._ctx.health.record(
            self._source.network,
            self.host,
            outcome,
            latency_s=time.monotonic() - started,
            status=status,
            detail=detail,
        )


def _netloc(url: str) -> str:
    parts = urlsplit(url)
    return (parts.hostname or "") + (f":{parts.port}" if parts.port else "")


def _classify(exc: BaseException, host: str, *, connected: bool) -> tuple[Outcome, str, int | None]:
    """A websocket failure as (outcome, one-line message, HTTP status)."""
    if connected:
        return (
            Outcome.STREAM_DROPPED,
            f"the stream from {host} dropped ({type(exc).__name__})",
            None,
        )
    if isinstance(exc, websockets.InvalidStatus):
        status = exc.response.status_code
        outcome = Outcome.for_status(status)
        if outcome is Outcome.AUTH:
            return outcome, f"{host} refused the stream ({status}): check the token", status
        if outcome is Outcome.RATE_LIMITED:
            return outcome, f"{host} rate limited the stream", status
        return outcome, f"{host} answered {status} to the stream", status
    if isinstance(exc, BlockedAddressError):
        return Outcome.BLOCKED, str(exc), None
    if isinstance(exc, TimeoutError):
        return Outcome.TIMEOUT, f"{host} did not open the stream in time", None
    if isinstance(exc, socket.gaierror):
        return Outcome.DNS, f"{host} could not be found (DNS lookup failed)", None
    if isinstance(exc, ssl.SSLError):
        return Outcome.TLS, f"the TLS handshake with {host} failed", None
    if isinstance(exc, websockets.InvalidHandshake):
        return Outcome.PARSE, f"{host} does not speak the websocket protocol", None
    if isinstance(exc, websockets.ConnectionClosed):
        return Outcome.STREAM_DROPPED, f"the stream from {host} dropped", None
    if isinstance(exc, OSError):
        return Outcome.REFUSED, f"{host} refused the stream connection", None
    return Outcome.STREAM_DROPPED, f"the stream from {host} failed ({type(exc).__name__})", None
