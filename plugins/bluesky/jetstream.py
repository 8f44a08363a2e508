"""Real-time posts from Jetstream, Bluesky's JSON firehose.

One websocket carries every followed account:
`/subscribe?wantedCollections=app.bsky.feed.post&wantedDids=…&cursor=<time_us>`
(past `URL_DID_LIMIT` accounts the list goes in an `options_update` message
after connecting with `requireHello=true`). Each event's `time_us` is kept per
account in the resource's cursor. On any drop the client moves to the next
configured host and resumes from the oldest position minus `rewind_s`: hosts
stamp `time_us` independently, so the rewind covers the few milliseconds they
differ by, and the relay's dedupe drops what is replayed twice. Polling runs
beside the stream and backfills anything older than a host still remembers.

Reposts (`app.bsky.feed.repost`) carry only the reposted post's uri and cid, so
they are held briefly and the posts fetched together (`app.bsky.feed.getPosts`,
25 at a time) before they are relayed, marked as reposts by the followed account,
just as polling shows them; the core's `--no-reposts` filter then applies.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
)

from bot.clock import Clock
from bot.errors import Outcome, UpstreamError
from bot.model import Post, Target, TargetKind, Tombstone
from bot.protocols import HealthRecorder, PostSink
from plugins.bluesky.convert import Links, from_record, from_view, post_uri
from plugins.bluesky.cursor import Position, decode, encode
from plugins.bluesky.ids import is_did
from plugins.bluesky.lexicon import (
    POST_COLLECTION,
    REASON_REPOST,
    FeedViewPost,
    JetstreamEvent,
    PostView,
    ProfileBasic,
    Reason,
    StrongRef,
)

log = logging.getLogger(__name__)

URL_DID_LIMIT = 100
ALL_HOSTS = "all Jetstream hosts"  # the unit announced when every configured host is down
STABLE_AFTER_S = 10.0

REPOST_COLLECTION = "app.bsky.feed.repost"
WANTED_COLLECTIONS = (POST_COLLECTION, REPOST_COLLECTION)
REPOST_BATCH = 25  # the most URIs one `app.bsky.feed.getPosts` takes
REPOST_WAIT_S = 0.25  # how long a repost waits for others to share its lookup

ProfileLookup = Callable[[str], Awaitable[ProfileBasic]]
PostsLookup = Callable[[list[str]], Awaitable[list[PostView]]]


class _RepostRecord(msgspec.Struct, rename="camel"):
    subject: StrongRef
    created_at: str = ""


class _RepostCommit(msgspec.Struct):
    record: _RepostRecord


class _RepostEvent(msgspec.Struct):
    """The part of a repost event the general decoder drops: the subject."""

    commit: _RepostCommit


_repost_decoder = msgspec.json.Decoder(_RepostEvent)


@dataclass(frozen=True, slots=True)
class _Repost:
    target: Target
    time_us: int
    subject: str  # the reposted post's at:// URI
    by: str  # the followed account that reposted it
    at: str  # when, as the repost record says


@dataclass(frozen=True, slots=True)
class JetstreamOptions:
    hosts: tuple[str, ...]
    connect_timeout_s: float
    ping_interval_s: float
    rewind_s: float
    reconnect_max_s: float
    checkpoint_s: float
    max_message_bytes: int
    user_agent: str


class Jetstream:
    """Runs one Jetstream connection at a time, rotating hosts on failure."""

    def __init__(
        self,
        network: str,
        options: JetstreamOptions,
        *,
        health: HealthRecorder,
        clock: Clock,
        links: Links,
        positions: dict[str, Position],
        profile: ProfileLookup,
        posts: PostsLookup | None = None,
    ) -> None:
        if not options.hosts:
            raise ValueError("at least one Jetstream host is needed")
        self._network = network
        self._options = options
        self._health = health
        self._clock = clock
        self._links = links
        self._positions = positions
        self._profile = profile
        self._posts = posts  # None: reposts are left to polling
        self._decoder = msgspec.json.Decoder(JetstreamEvent)
        self._host_index = 0
        self._rewind_us = int(options.rewind_s * 1_000_000)
        self.connections = 0  # opened so far (tests and /status read it)
        self.current_host = ""

    def host_names(self) -> list[str]:
        """The hosts as the health record names them."""
        return list(dict.fromkeys(urlsplit(url).netloc or url for url in self._options.hosts))

    def host_pools(self) -> dict[str, list[str]]:
        """Several hosts back each other up: only all of them down is an outage."""
        hosts = self.host_names()
        return {ALL_HOSTS: hosts} if len(hosts) > 1 else {}

    def stream_host(self, target: Target) -> str | None:
        """What a followed account's stream depends on: any configured host stands for
        the pool (`host_pools`), which the core announces."""
        if target.network != self._network or target.kind is not TargetKind.ACCOUNT:
            return None
        if not is_did(target.key):
            return None
        hosts = self.host_names()
        return hosts[0] if hosts else None

    async def run(
        self, targets: list[Target], cursors: Mapping[str, str | None], sink: PostSink
    ) -> None:
        """Stream posts of the followed accounts until cancelled."""
        by_did = {t.key: t for t in targets if t.kind is TargetKind.ACCOUNT and is_did(t.key)}
        if not by_did:
            await asyncio.Event().wait()
        for target in by_did.values():
            key = target.resource_key
            stored = decode(cursors.get(key))
            self._positions[key] = stored.merged(self._positions.get(key, Position()))
        failures = 0
        while True:
            url = self._options.hosts[self._host_index]
            started = time.monotonic()
            delivered = await self._connection(url, by_did, sink)
            if delivered or time.monotonic() - started >= STABLE_AFTER_S:
                failures = 0
            else:
                failures += 1
            self._host_index = (self._host_index + 1) % len(self._options.hosts)
            if failures >= len(self._options.hosts):
                rounds = failures // len(self._options.hosts)
                await self._clock.sleep(min(self._options.reconnect_max_s, 2.0 ** (rounds - 1)))

    def _subscribe_url(self, base: str, dids: list[str], cursor: int | None) -> str:
        params = [("wantedCollections", c) for c in self._collections()]
        if len(dids) <= URL_DID_LIMIT:
            params += [("wantedDids", did) for did in dids]
        else:
            params.append(("requireHello", "true"))
        if cursor is not None:
            params.append(("cursor", str(cursor)))
        return f"{base.rstrip('/')}/subscribe?{urlencode(params)}"

    def _collections(self) -> tuple[str, ...]:
        return WANTED_COLLECTIONS if self._posts is not None else (POST_COLLECTION,)

    def _resume_from(self, by_did: Mapping[str, Target]) -> int | None:
        known = [self._positions[t.resource_key].stream_us for t in by_did.values()]
        known = [us for us in known if us > 0]
        return max(0, min(known) - self._rewind_us) if known else None

    async def _connection(self, base: str, by_did: Mapping[str, Target], sink: PostSink) -> bool:
        """One connection's life; returns whether it delivered any event."""
        host = urlsplit(base).netloc or base
        dids = sorted(by_did)
        url = self._subscribe_url(base, dids, self._resume_from(by_did))
        started = time.monotonic()
        try:
            websocket = await connect(
                url,
                open_timeout=self._options.connect_timeout_s,
                ping_interval=self._options.ping_interval_s,
                ping_timeout=self._options.ping_interval_s,
                max_size=self._options.max_message_bytes,
                user_agent_header=self._options.user_agent,
                proxy=None,
            )
        except (OSError, TimeoutError, InvalidHandshake) as err:
            outcome, status, text = _connect_failure(err, host)
            self._record(host, outcome, started, status=status, detail=text)
            log.info("Jetstream %s: %s", host, text)
            return False
        self.connections += 1
        self.current_host = base
        self._record(host, Outcome.OK, started, status=101)
        delivered = False
        try:
            if len(dids) > URL_DID_LIMIT:
                await websocket.send(_options_update(dids, self._collections()))
            delivered = await self._read(websocket, host, by_did, sink)
            detail = "the host closed the stream"
        except ConnectionClosed as err:
            detail = f"the stream broke off ({err.rcvd.code if err.rcvd else 'no close frame'})"
        finally:
            self.current_host = ""
            await websocket.close()
        self._record(host, Outcome.STREAM_DROPPED, started, detail=detail)
        log.info("Jetstream %s: %s; moving to the next host", host, detail)
        return delivered

    async def _read(
        self,
        websocket: ClientConnection,
        host: str,
        by_did: Mapping[str, Target],
        sink: PostSink,
    ) -> bool:
        delivered = False
        last_time_us = 0
        reposts: list[_Repost] = []  # waiting for their posts, in stream order
        checkpoint_at = time.monotonic() + self._options.checkpoint_s
        # A stream that keeps flowing is a second success after the connect: it lets the
        # outage work see a host recovered (a healthy stream records nothing else).
        steady_at = time.monotonic() + min(STABLE_AFTER_S, self._options.checkpoint_s)
        while True:
            try:
                if reposts:
                    async with asyncio.timeout(REPOST_WAIT_S):
                        message = await websocket.recv()
                else:
                    message = await websocket.recv()
            except TimeoutError:
                await self._flush_reposts(reposts, sink)  # a quiet moment: look them up
                continue
            except ConnectionClosedOK:
                break
            if steady_at and time.monotonic() >= steady_at:
                steady_at = 0.0
                self._health.record(self._network, host, Outcome.OK, detail="streaming steadily")
            try:
                event = self._decoder.decode(message)
            except (msgspec.DecodeError, msgspec.ValidationError) as err:
                self._health.record(self._network, host, Outcome.PARSE, detail=str(err)[:200])
                continue
            delivered = True
            last_time_us = max(last_time_us, event.time_us)
            target = by_did.get(event.did)
            commit = event.commit
            if (
                target is not None
                and event.kind == "commit"
                and commit is not None
                and commit.operation == "create"
                and commit.collection == REPOST_COLLECTION
                and self._posts is not None
            ):
                repost = self._repost(target, event.did, event.time_us, message, host)
                if repost is not None:
                    reposts.append(repost)
                if len(reposts) >= REPOST_BATCH:
                    await self._flush_reposts(reposts, sink)
            elif (
                target is not None
                and event.kind == "commit"
                and commit is not None
                and commit.operation == "create"
                and commit.collection == POST_COLLECTION
                and commit.record is not None
            ):
                await self._flush_reposts(reposts, sink)  # what came first goes first
                key = target.resource_key
                position = self._positions.get(key, Position())
                if event.time_us >= position.stream_us - self._rewind_us:
                    profile = await self._profile(event.did)
                    post = from_record(
                        self._network, event.did, commit.rkey, commit.record, profile, self._links
                    )
                    position = position.merged(Position(stream_us=event.time_us))
                    self._positions[key] = position
                    await sink(target, [post], encode(position))
            elif (
                target is not None
                and commit is not None
                and commit.operation == "delete"
                and commit.collection == POST_COLLECTION
                and commit.rkey
            ):
                await self._flush_reposts(reposts, sink)
                # Only the post's identity is left; a replayed delete does nothing twice.
                gone = Tombstone(self._network, post_uri(event.did, commit.rkey))
                await sink(target, [], None, deleted=[gone])
            if time.monotonic() >= checkpoint_at:
                await self._flush_reposts(reposts, sink)  # before positions move past them
                await self._checkpoint(by_did, last_time_us, sink)
                checkpoint_at = time.monotonic() + self._options.checkpoint_s
        await self._flush_reposts(reposts, sink)
        return delivered

    def _repost(
        self, target: Target, did: str, time_us: int, message: str | bytes, host: str
    ) -> _Repost | None:
        """A followed account's repost, unless it is a replay already relayed."""
        position = self._positions.get(target.resource_key, Position())
        if time_us < position.stream_us - self._rewind_us:
            return None
        try:
            record = _repost_decoder.decode(message).commit.record
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            self._health.record(self._network, host, Outcome.PARSE, detail=str(err)[:200])
            return None
        if f"/{POST_COLLECTION}/" not in record.subject.uri:
            return None  # not a post (a malformed record): nothing to show
        return _Repost(target, time_us, record.subject.uri, did, record.created_at)

    async def _flush_reposts(self, reposts: list[_Repost], sink: PostSink) -> None:
        """Fetch the reposted posts in one lookup and relay each as its reposter's."""
        if not reposts or self._posts is None:
            return
        batch = list(reposts)
        reposts.clear()
        try:
            views = await self._posts(list(dict.fromkeys(r.subject for r in batch)))
        except UpstreamError as err:
            # The stream moves on; polling (author feeds list reposts) fills the gap.
            log.info("could not fetch %d reposted posts (%s); polling will", len(batch), err)
            views = []
        found = {view.uri: view for view in views}
        for repost in batch:
            key = repost.target.resource_key
            position = self._positions.get(key, Position()).merged(
                Position(stream_us=repost.time_us)
            )
            self._positions[key] = position
            posts: list[Post] = []
            view = found.get(repost.subject)
            if view is not None:  # None: deleted, or hidden from the AppView
                by = await self._profile(repost.by)
                reason = Reason(type=REASON_REPOST, by=by, indexed_at=repost.at)
                posts.append(from_view(self._network, FeedViewPost(view, reason), self._links))
            await sink(repost.target, posts, encode(position))

    async def _checkpoint(self, by_did: Mapping[str, Target], time_us: int, sink: PostSink) -> None:
        """Move quiet accounts' positions up to what the stream has passed, so a
        reconnect does not replay hours for an account that never posts."""
        lag_us = int(self._options.checkpoint_s * 1_000_000)
        for target in by_did.values():
            key = target.resource_key
            position = self._positions.get(key, Position())
            if time_us - position.stream_us > lag_us:
                position = position.merged(Position(stream_us=time_us))
                self._positions[key] = position
                await sink(target, [], encode(position))

    def _record(
        self,
        host: str,
        outcome: Outcome,
        started: float,
        *,
        status: int | None = None,
        detail: str = "",
    ) -> None:
        self._health.record(
            self._network,
            host,
            outcome,
            latency_s=time.monotonic() - started,
            status=status,
            detail=detail,
        )


def _options_update(dids: list[str], collections: tuple[str, ...]) -> str:
    payload = {"wantedCollections": list(collections), "wantedDids": dids}
    return msgspec.json.encode({"type": "options_update", "payload": payload}).decode()


def _connect_failure(err: BaseException, host: str) -> tuple[Outcome, int | None, str]:
    if isinstance(err, InvalidStatus):
        status = err.response.status_code
        outcome = Outcome.for_status(status)
        if outcome is Outcome.RATE_LIMITED:
            return outcome, status, f"{host} is rate limiting (429)"
        if outcome is Outcome.AUTH:
            return outcome, status, f"{host} refused the connection ({status})"
        return outcome, status, f"{host} answered {status} instead of a websocket"
    if isinstance(err, TimeoutError):
        return Outcome.TIMEOUT, None, f"{host} did not answer in time"
    if isinstance(err, socket.gaierror):
        return Outcome.DNS, None, f"{host} could not be found (DNS lookup failed)"
    if isinstance(err, ssl.SSLError):
        return Outcome.TLS, None, f"the TLS handshake with {host} failed"
    if isinstance(err, InvalidHandshake):
        return Outcome.PARSE, None, f"{host} did not speak the websocket protocol"
    return Outcome.REFUSED, None, f"{host} refused the connection"
