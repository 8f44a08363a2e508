"""A local Jetstream: Bluesky's JSON firehose, on a random loopback port.

No Jetstream server installs from a package registry, so this speaks its wire
format as documented (github.com/bluesky-social/jetstream, README): clients
connect to `/subscribe?wantedCollections=…&wantedDids=…&cursor=<time_us>`
(`requireHello=true` holds events back until an `options_update` message), and
receive one JSON text frame per event:

    {"did": "did:plc:…", "time_us": 1725911162329308, "kind": "commit",
     "commit": {"rev": "…", "operation": "create", "collection": "app.bsky.feed.post",
                "rkey": "…", "record": {…}, "cid": "bafy…"}}

Several hosts can share one `EventLog`, each stamping `time_us` with its own
small skew, as real Jetstream instances do (each stamps events when it reads them
from the relay). A cursor replays the log from that time; then events go out live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


@dataclass(slots=True)
class LoggedEvent:
    time_us: int
    body: dict[str, Any]  # the event without time_us


@dataclass(slots=True)
class EventLog:
    """What the relay network produced, in order; shared by every fake host."""

    events: list[LoggedEvent] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def append(self, body: dict[str, Any]) -> int:
        now = time.time_ns() // 1000
        last = self.events[-1].time_us if self.events else 0
        stamp = max(now, last + 1)
        self.events.append(LoggedEvent(stamp, body))
        async with self.changed:
            self.changed.notify_all()
        return stamp

    async def post(self, did: str, rkey: str, text: str, **record: Any) -> int:
        """Append a post creation as a PDS would emit it (for tests without a real PDS)."""
        body = {
            "did": did,
            "kind": "commit",
            "commit": {
                "rev": f"3l{rkey[:11]}",
                "operation": "create",
                "collection": "app.bsky.feed.post",
                "rkey": rkey,
                "record": {
                    "$type": "app.bsky.feed.post",
                    "text": text,
                    "createdAt": "2026-01-01T00:00:00.000Z",
                    **record,
                },
                "cid": f"bafyrei{rkey}",
            },
        }
        return await self.append(body)

    async def repost(self, did: str, rkey: str, subject_uri: str, subject_cid: str) -> int:
        """Append a repost: the record names the reposted post only by uri and cid."""
        body = {
            "did": did,
            "kind": "commit",
            "commit": {
                "rev": f"3l{rkey[:11]}",
                "operation": "create",
                "collection": "app.bsky.feed.repost",
                "rkey": rkey,
                "record": {
                    "$type": "app.bsky.feed.repost",
                    "subject": {"uri": subject_uri, "cid": subject_cid},
                    "createdAt": "2026-01-02T00:00:00.000Z",
                },
                "cid": f"bafyrei{rkey}",
            },
        }
        return await self.append(body)


@dataclass(slots=True)
class Subscription:
    dids: set[str]
    collections: set[str]
    cursor: int | None
    require_hello: bool

    def wants(self, body: dict[str, Any]) -> bool:
        if self.dids and body.get("did") not in self.dids:
            return False
        commit = body.get("commit")
        if body.get("kind") != "commit" or not isinstance(commit, dict) or not self.collections:
            return True
        collection = str(commit.get("collection", ""))
        return any(
            collection == wanted or (wanted.endswith(".*") and collection.startswith(wanted[:-1]))
            for wanted in self.collections
        )


class FakeJetstream:
    """One Jetstream host. `skew_us` shifts the time stamps it gives events."""

    def __init__(self, log: EventLog, *, skew_us: int = 0) -> None:
        self.log = log
        self.skew_us = skew_us
        self.requests: list[dict[str, list[str]]] = []
        self.refuse_with: HTTPStatus | None = None
        self.paused = False  # True: hold new events back, like a host that lags
        # Fault injection: cut each connection (no close frame) after this many events;
        # 0 cuts it right after the handshake, like a stream that keeps dropping.
        self.drop_after_events: int | None = None
        self._server: Server | None = None
        self._connections: set[ServerConnection] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> FakeJetstream:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._check_request
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def resume(self) -> None:
        self.paused = False
        async with self.log.changed:
            self.log.changed.notify_all()

    async def drop_all(self) -> None:
        """Break every open connection, as a host restart would."""
        for connection in list(self._connections):
            connection.transport.abort()
        self._connections.clear()
        await asyncio.sleep(0)

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path != "/subscribe":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if self.refuse_with is not None:
            return connection.respond(self.refuse_with, "unavailable\n")
        return None

    def stamped(self, event: LoggedEvent) -> dict[str, Any]:
        return {"did": event.body["did"], "time_us": event.time_us + self.skew_us, **event.body}

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        query = parse_qs(urlsplit(connection.request.path).query)
        self.requests.append(query)
        cursor = query.get("cursor", [""])[0]
        sub = Subscription(
            dids=set(query.get("wantedDids", [])),
            collections=set(query.get("wantedCollections", [])),
            cursor=int(cursor) if cursor.isdigit() else None,
            require_hello=query.get("requireHello", ["false"])[0] == "true",
        )
        self._connections.add(connection)
        sender = asyncio.create_task(self._serve(connection, sub))
        closed = asyncio.create_task(connection.wait_closed())
        try:
            await asyncio.wait({sender, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, closed):
                task.cancel()
            await asyncio.gather(sender, closed, return_exceptions=True)
            self._connections.discard(connection)

    async def _serve(self, connection: ServerConnection, sub: Subscription) -> None:
        if self.drop_after_events == 0:
            connection.transport.abort()
            return
        with contextlib.suppress(ConnectionClosed):
            if sub.require_hello:
                hello = json.loads(await connection.recv())
                if hello.get("type") == "options_update":
                    payload = hello.get("payload", {})
                    sub.dids = set(payload.get("wantedDids", []))
                    sub.collections = set(payload.get("wantedCollections", []))
            await self._send_from(connection, sub)

    async def _send_from(self, connection: ServerConnection, sub: Subscription) -> None:
        if sub.cursor is None:
            index = len(self.log.events)  # live only: no replay
        else:
            index = next(
                (
                    i
                    for i, e in enumerate(self.log.events)
                    if e.time_us + self.skew_us >= sub.cursor
                ),
                len(self.log.events),
            )
        sent = 0
        while True:
            while index < len(self.log.events) and not self.paused:
                event = self.log.events[index]
                index += 1
                if sub.wants(event.body):
                    await connection.send(json.dumps(self.stamped(event)))
                    sent += 1
                    if self.drop_after_events is not None and sent >= self.drop_after_events:
                        connection.transport.abort()  # mid-stream, without a close frame
                        return
            async with self.log.changed:
                await self.log.changed.wait_for(
                    lambda seen=index: seen < len(self.log.events) and not self.paused
                )


@contextlib.asynccontextmanager
async def jetstream_hosts(count: int, *, skews_us: tuple[int, ...] = ()) -> Any:
    """`count` fake hosts over one shared log; yields (log, [hosts])."""
    log = EventLog()
    hosts = [
        await FakeJetstream(log, skew_us=skews_us[i] if i < len(skews_us) else 0).start()
        for i in range(count)
    ]
    try:
        yield log, hosts
    finally:
        for host in hosts:
            await host.stop()
