"""A local feed server for tests and benchmarks, on a random loopback port.

It behaves like a real feed host: strong ETags and Last-Modified with 304s,
redirects, slow and broken answers, gzip, oversized bodies. Tests mutate feeds in
memory and count requests per path (`server.hits`) to assert conditional GET and
one-fetch-per-resource behaviour. Registered as a pytest plugin for the
`feed_server` fixture; `python -m tests.feedserver --port 0 --feeds N` runs it
standalone for subprocess end-to-end tests and benchmarks, with N synthetic feeds
at `/synth/<i>` and a small JSON control API under `/_control/`. With
`--publish-rate R` a background task publishes R new synthetic items per second at
real times, each stamped with that time, so a benchmark can measure publish → chat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import json
import random
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDictProxy

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FeedKind = Literal["rss", "atom", "json"]
CONTENT_TYPES: dict[str, str] = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}
STATIC_TYPES: dict[str, str] = {
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
# Fixed so documents, and so ETags, are reproducible across runs.
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _strong_etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _not_modified(request: web.Request, etag: str, last_modified: datetime) -> bool:
    """RFC 9110 precedence: If-None-Match wins; If-Modified-Since only without it."""
    headers = request.headers
    inm = headers.get("If-None-Match")
    if inm is not None:
        if inm.strip() == "*":
            return True
        return any(tag.strip().removeprefix("W/") == etag for tag in inm.split(","))
    ims = headers.get("If-Modified-Since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return last_modified <= since
    return False


@dataclass(slots=True)
class FeedItem:
    guid: str
    title: str
    link: str | None
    content: str
    published: datetime
    updated: datetime
    omit_guid: bool = False


@dataclass(frozen=True, slots=True)
class Rendered:
    """A pre-rendered document: served as is until the feed changes."""

    body: bytes
    etag: str
    last_modified: datetime
    headers: dict[str, str]


class Feed:
    """One mutable in-memory feed; every change bumps Last-Modified by at least 1 s.

    The bump keeps If-Modified-Since correct even for two changes within the same
    second, which HTTP dates cannot tell apart.
    """

    def __init__(self, server: FeedServer, name: str, kind: FeedKind, title: str) -> None:
        if kind not in CONTENT_TYPES:
            raise ValueError(f"unknown feed kind {kind!r}")
        self.server = server
        self.name = name
        self.kind: FeedKind = kind
        self.title = title
        self.items: list[FeedItem] = []
        self.last_modified = EPOCH
        self._serial = 0
        self._rendered: Rendered | None = None

    def _touch(self) -> datetime:
        now = datetime.now(UTC).replace(microsecond=0)
        self.last_modified = max(now, self.last_modified + timedelta(seconds=1))
        self._rendered = None
        return self.last_modified

    def add_item(
        self,
        guid: str | None = None,
        title: str | None = None,
        link: str | None = None,
        content: str | None = None,
        published: datetime | None = None,
        *,
        omit_guid: bool = False,
    ) -> FeedItem:
        """Add an item; defaults are unique and `published` is the new Last-Modified."""
        self._serial += 1
        serial = self._serial
        when = self._touch()
        item = FeedItem(
            guid=guid if guid is not None else f"{self.name}-{serial}",
            title=title if title is not None else f"Item {serial} of {self.name}",
            link=link,
            content=content if content is not None else f"<p>Body of item {serial}.</p>",
            published=published or when,
            updated=published or when,
            omit_guid=omit_guid,
        )
        self.items.append(item)
        return item

    def _find(self, guid: str) -> FeedItem:
        for item in self.items:
            if item.guid == guid:
                return item
        raise KeyError(guid)

    def update_item(
        self,
        guid: str,
        *,
        title: str | None = None,
        content: str | None = None,
        link: str | None = None,
        updated: datetime | None = None,
    ) -> FeedItem:
        """Edit an item in place: same guid, new `updated` and content."""
        item = self._find(guid)
        when = self._touch()
        if title is not None:
            item.title = title
        if content is not None:
            item.content = content
        if link is not None:
            item.link = link
        item.updated = updated or when
        return item

    def remove_item(self, guid: str) -> None:
        self.items.remove(self._find(guid))
        self._touch()

    def item_link(self, item: FeedItem) -> str:
        return item.link or self.server.url(f"/items/{self.name}/{item.guid}")

    def rendered(self) -> Rendered:
        if self._rendered is None:
            body = self.render()
            etag = _strong_etag(body)
            self._rendered = Rendered(
                body=body,
                etag=etag,
                last_modified=self.last_modified,
                headers={
                    "Content-Type": CONTENT_TYPES[self.kind],
                    "ETag": etag,
                    "Last-Modified": _http_date(self.last_modified),
                    "Cache-Control": "max-age=0",
                },
            )
        return self._rendered

    def render(self) -> bytes:
        """The feed document, newest item first."""
        items = sorted(self.items, key=lambda it: it.published, reverse=True)
        if self.kind == "rss":
            return self._render_rss(items)
        if self.kind == "atom":
            return self._render_atom(items)
        return self._render_json(items)

    def _render_rss(self, items: list[FeedItem]) -> bytes:
        home = self.server.url(f"/html?feed={self.name}")
        out = [
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">\n<channel>\n',
            f"<title>{escape(self.title)}</title>\n<link>{escape(home)}</link>\n",
            f"<description>Test feed {escape(self.name)}</description>\n",
            f"<lastBuildDate>{_http_date(self.last_modified)}</lastBuildDate>\n",
            f"<atom:link href={quoteattr(self.server.url(f'/feeds/{self.name}'))}"
            ' rel="self" type="application/rss+xml"/>\n',
        ]
        for item in items:
            out.append(
                f"<item>\n<title>{escape(item.title)}</title>\n"
                f"<link>{escape(self.item_link(item))}</link>\n"
            )
            if not item.omit_guid:
                out.append(f'<guid isPermaLink="false">{escape(item.guid)}</guid>\n')
            out.append(
                f"<pubDate>{_http_date(item.published)}</pubDate>\n"
                f"<description>{escape(item.content)}</description>\n</item>\n"
            )
        out.append("</channel>\n</rss>\n")
        return "".join(out).encode()

    def _render_atom(self, items: list[FeedItem]) -> bytes:
        self_url = self.server.url(f"/feeds/{self.name}")
        out = [
            '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">\n',
            f"<title>{escape(self.title)}</title>\n<id>urn:starling-test:{escape(self.name)}</id>\n",
            f"<updated>{_iso(self.last_modified)}</updated>\n",
            f'<link rel="self" href={quoteattr(self_url)}/>\n',
            f'<link rel="alternate" href={quoteattr(self.server.url("/html"))}/>\n',
            "<author><name>Feed Server</name></author>\n",
        ]
        for item in items:
            out.append(f"<entry>\n<title>{escape(item.title)}</title>\n")
            if not item.omit_guid:
                out.append(f"<id>{escape(item.guid)}</id>\n")
            out.append(
                f'<link rel="alternate" href={quoteattr(self.item_link(item))}/>\n'
                f"<published>{_iso(item.published)}</published>\n"
                f"<updated>{_iso(item.updated)}</updated>\n"
                f'<content type="html">{escape(item.content)}</content>\n</entry>\n'
            )
        out.append("</feed>\n")
        return "".join(out).encode()

    def _render_json(self, items: list[FeedItem]) -> bytes:
        doc: dict[str, Any] = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": self.title,
            "home_page_url": self.server.url("/html"),
            "feed_url": self.server.url(f"/feeds/{self.name}"),
            "items": [],
        }
        for item in items:
            entry: dict[str, Any] = {
                "url": self.item_link(item),
                "title": item.title,
                "content_html": item.content,
                "date_published": _iso(item.published),
                "date_modified": _iso(item.updated),
            }
            if not item.omit_guid:
                entry["id"] = item.guid
            doc["items"].append(entry)
        return json.dumps(doc, ensure_ascii=False, indent=1).encode()


class FeedServer:
    """An aiohttp.web feed host on 127.0.0.1 (or `host`), port chosen by the OS.

    `synth_feeds` serves `/synth/<i>` for i in range(N) with pre-rendered
    documents; each request changes that feed (one new item, one dropped) with
    probability `synth_change`, so benchmarks can dial the share of 200s vs 304s.

    `synth_publish_rate` > 0 publishes that many new items per second while the
    server runs, at random times (a Poisson process) into random synthetic feeds,
    independent of requests: items appear when a real author would post them, so a
    poller's delay after publication can be measured. Each such item's link carries
    its publish time (`?published_ms=<wall clock ms>`), and `synth_published` (also
    `GET /_control/synth/published`) lists every one as (feed, version, ms).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        synth_feeds: int = 0,
        synth_change: float = 0.0,
        synth_items: int = 10,
        seed: int = 0,
        static_root: Path = FIXTURES,
        synth_publish_rate: float = 0.0,
    ) -> None:
        self.host = host
        self.static_root = static_root.resolve()
        self.port = port
        self.feeds: dict[str, Feed] = {}
        self.hits: Counter[str] = Counter()
        self.last_headers: dict[str, CIMultiDictProxy[str]] = {}
        self.in_flight = 0
        self.hang_s = 0.0  # > 0: every /feeds/ answer waits this long (a host that hangs)
        self.peak_in_flight = 0
        self.synth_change = synth_change
        self.synth_items = synth_items
        self._synth_versions = [0] * synth_feeds
        self._synth_cache: dict[int, tuple[int, Rendered]] = {}
        self._rng = random.Random(seed)
        self.synth_publish_rate = synth_publish_rate
        self.synth_published: list[tuple[int, int, int]] = []  # (feed, version, ms)
        # Publish time of each timed item still in its feed's document, by feed and version.
        self._synth_stamps: dict[int, dict[int, int]] = {}
        # Its own generator, so the per-request changes draw the same sequence as before.
        self._publish_rng = random.Random(seed + 1)
        self._publisher: asyncio.Task[None] | None = None
        self._static_etags: dict[Path, tuple[float, bytes, str]] = {}
        self._gzip_bomb: dict[int, bytes] = {}
        self._runner: web.AppRunner | None = None
        self._base = ""

    # -- lifecycle -------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self._base:
            raise RuntimeError("FeedServer is not started")
        return self._base

    def url(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + path

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self._base = f"http://{host}:{self.port}"
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, backlog=1024)
        await site.start()
        if self.synth_publish_rate > 0 and self._synth_versions:
            self._publisher = asyncio.create_task(self._publish_forever())

    async def stop(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FeedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- feeds -----------------------------------------------------------

    def add_feed(self, name: str, kind: FeedKind = "rss", title: str | None = None) -> Feed:
        if name in self.feeds:
            raise ValueError(f"feed {name!r} exists")
        feed = Feed(self, name, kind, title if title is not None else f"Feed {name}")
        self.feeds[name] = feed
        return feed

    def feed_url(self, name: str) -> str:
        return self.url(f"/feeds/{name}")

    # -- app -------------------------------------------------------------

    def _counted(self, handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            path = request.path
            self.hits[path] += 1
            self.last_headers[path] = request.headers
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                return await handler(request)
            finally:
                self.in_flight -= 1

        return wrapper

    def _app(self) -> web.Application:
        app = web.Application()
        c = self._counted
        app.router.add_get("/feeds/{name}", c(self._feed))
        app.router.add_get("/synth/{i}", c(self._synth))
        app.router.add_get("/static/{path:.+}", c(self._static))
        app.router.add_get("/redirect/{n}/{name}", c(self._redirect))
        app.router.add_get("/moved/{name}", c(self._moved))
        app.router.add_get("/loop", c(self._loop))
        app.router.add_get("/slow/{seconds}/{name}", c(self._slow))
        app.router.add_get("/slow-body/{seconds}/{name}", c(self._slow_body))
        app.router.add_get("/status/{code}", c(self._status))
        app.router.add_get("/huge", c(self._huge))
        app.router.add_get("/gzip/{name}", c(self._gzip))
        app.router.add_get("/gzip-bomb", c(self._gzip_bomb_handler))
        app.router.add_get("/html", c(self._html))
        app.router.add_get("/garbage", c(self._garbage))
        app.router.add_get("/redirect-to", c(self._redirect_to))
        app.router.add_get("/items/{name}/{guid}", c(self._item_page))
        app.router.add_post("/_control/feeds/{name}", self._ctl_add_feed)
        app.router.add_post("/_control/feeds/{name}/items", self._ctl_add_item)
        app.router.add_post("/_control/feeds/{name}/items/{guid}", self._ctl_update_item)
        app.router.add_delete("/_control/feeds/{name}/items/{guid}", self._ctl_remove_item)
        app.router.add_get("/_control/hits", self._ctl_hits)
        app.router.add_get("/_control/synth/published", self._ctl_synth_published)
        return app

    def _get_feed(self, request: web.Request) -> Feed:
        feed = self.feeds.get(request.match_info["name"])
        if feed is None:
            raise web.HTTPNotFound(text="no such feed\n")
        return feed

    @staticmethod
    def _serve(request: web.Request, doc: Rendered) -> web.Response:
        if _not_modified(request, doc.etag, doc.last_modified):
            return web.Response(status=304, headers=doc.headers)
        return web.Response(body=doc.body, headers=doc.headers)

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        return self._serve(request, self._get_feed(request).rendered())

    async def _synth(self, request: web.Request) -> web.StreamResponse:
        try:
            i = int(request.match_info["i"])
            version = self._synth_versions[i]
        except (ValueError, IndexError):
            raise web.HTTPNotFound(text="no such synthetic feed\n") from None
        if self.synth_change and self._rng.random() < self.synth_change:
            version += 1
            self._synth_versions[i] = version
        cached = self._synth_cache.get(i)
        if cached is None or cached[0] != version:
            cached = (version, self._render_synth(i, version))
            self._synth_cache[i] = cached
        return self._serve(request, cached[1])

    async def _publish_forever(self) -> None:
        """New items at `synth_publish_rate` per second, on a schedule that does not drift."""
        loop = asyncio.get_running_loop()
        rng = self._publish_rng
        due = loop.time()
        while True:
            due += rng.expovariate(self.synth_publish_rate)
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.publish_synth(rng.randrange(len(self._synth_versions)))

    def publish_synth(self, i: int) -> int:
        """Publish one new item in synthetic feed `i` now; returns its publish time (ms).

        The version bump changes the ETag and Last-Modified, as a per-request change does.
        """
        version = self._synth_versions[i] + 1
        stamp = time.time_ns() // 1_000_000
        self._synth_versions[i] = version
        stamps = self._synth_stamps.setdefault(i, {})
        stamps[version] = stamp
        for old in [v for v in stamps if v <= version - self.synth_items]:
            del stamps[old]  # no longer in the document
        self.synth_published.append((i, version, stamp))
        return stamp

    def _render_synth(self, i: int, version: int) -> Rendered:
        last_modified = EPOCH + timedelta(minutes=version)
        link = f"{self._base}/synth/{i}"
        parts = [
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
            f"<title>Synthetic feed {i}</title><link>{link}</link>"
            f"<description>synthetic</description>"
        ]
        stamps = self._synth_stamps.get(i, {})
        for v in range(version, max(version - self.synth_items, -1), -1):
            when = _http_date(EPOCH + timedelta(minutes=v))
            stamp = stamps.get(v)
            query = f"?published_ms={stamp}" if stamp is not None else ""
            parts.append(
                f"<item><title>Post {v} of feed {i}</title><link>{link}/{v}{query}</link>"
                f'<guid isPermaLink="false">synth-{i}-{v}</guid><pubDate>{when}</pubDate>'
                f"<description>Body {v}</description></item>"
            )
        parts.append("</channel></rss>\n")
        body = "".join(parts).encode()
        etag = f'"s{i}-v{version}"'
        headers = {
            "Content-Type": CONTENT_TYPES["rss"],
            "ETag": etag,
            "Last-Modified": _http_date(last_modified),
        }
        return Rendered(body=body, etag=etag, last_modified=last_modified, headers=headers)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        root = self.static_root
        path = (root / request.match_info["path"]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise web.HTTPNotFound(text="no such fixture\n")
        mtime = path.stat().st_mtime
        cached = self._static_etags.get(path)
        if cached is None or cached[0] != mtime:
            body = path.read_bytes()
            cached = (mtime, body, _strong_etag(body))
            self._static_etags[path] = cached
        _, body, etag = cached
        last_modified = datetime.fromtimestamp(int(mtime), UTC)
        doc = Rendered(
            body=body,
            etag=etag,
            last_modified=last_modified,
            headers={
                "Content-Type": STATIC_TYPES.get(path.suffix, "application/octet-stream"),
                "ETag": etag,
                "Last-Modified": _http_date(last_modified),
            },
        )
        return self._serve(request, doc)

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        name = request.match_info["name"]
        if n <= 0:
            return await self._feed(request)
        target = f"/redirect/{n - 1}/{name}" if n > 1 else f"/feeds/{name}"
        raise web.HTTPFound(target)

    async def _moved(self, request: web.Request) -> web.StreamResponse:
        target = f"/feeds/{request.match_info['name']}"
        if request.query.get("code") == "308":
            raise web.HTTPPermanentRedirect(target)
        raise web.HTTPMovedPermanently(target)

    async def _loop(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/loop")

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(float(request.match_info["seconds"]))
        return await self._feed(request)

    async def _slow_body(self, request: web.Request) -> web.StreamResponse:
        """Headers at once, then the body trickles: a total deadline must still apply."""
        doc = self._get_feed(request).rendered()
        resp = web.StreamResponse(headers=doc.headers)
        resp.content_length = len(doc.body)
        await resp.prepare(request)
        half = len(doc.body) // 2
        try:
            await resp.write(doc.body[:half])
            await asyncio.sleep(float(request.match_info["seconds"]))
            await resp.write(doc.body[half:])
        except ConnectionError:
            return resp
        await resp.write_eof()
        return resp

    async def _status(self, request: web.Request) -> web.StreamResponse:
        code = int(request.match_info["code"])
        if not 200 <= code <= 599:
            raise web.HTTPBadRequest(text="status must be 200-599\n")
        headers: dict[str, str] = {}
        retry_after = request.query.get("retry_after")
        if retry_after:
            headers["Retry-After"] = retry_after
        if code in (204, 304):
            return web.Response(status=code, headers=headers)
        if code in (301, 302, 303, 307, 308) and "location" in request.query:
            headers["Location"] = request.query["location"]
        return web.Response(status=code, text=f"status {code}\n", headers=headers)

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        """`?mb=20` of XML-ish filler; chunked unless `?length=1` announces the size."""
        size = int(float(request.query.get("mb", "20")) * 1_000_000)
        resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES["rss"]})
        if request.query.get("length") == "1":
            resp.content_length = size
        await resp.prepare(request)
        chunk = b"<!-- " + b"x" * (65_536 - 9) + b" -->\n"
        sent = 0
        try:
            while sent < size:
                piece = chunk[: size - sent]
                await resp.write(piece)
                sent += len(piece)
            await resp.write_eof()
        except ConnectionError:
            pass
        return resp

    async def _gzip(self, request: web.Request) -> web.StreamResponse:
        doc = self._get_feed(request).rendered()
        if _not_modified(request, doc.etag, doc.last_modified):
            return web.Response(status=304, headers=doc.headers)
        headers = dict(doc.headers, **{"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
        return web.Response(body=gzip.compress(doc.body, 6), headers=headers)

    async def _gzip_bomb_handler(self, request: web.Request) -> web.StreamResponse:
        """Small on the wire, `?mb=20` once decompressed: the size cap must count the latter."""
        mb = int(request.query.get("mb", "20"))
        body = self._gzip_bomb.get(mb)
        if body is None:
            body = gzip.compress(b" " * (mb * 1_000_000), 9)
            self._gzip_bomb[mb] = body
        headers = {"Content-Type": CONTENT_TYPES["rss"], "Content-Encoding": "gzip"}
        return web.Response(body=body, headers=headers)

    async def _html(self, request: web.Request) -> web.StreamResponse:
        name = request.query.get("feed") or next(iter(self.feeds), "")
        link = ""
        if name in self.feeds:
            feed = self.feeds[name]
            mime = CONTENT_TYPES[feed.kind].split(";")[0]
            link = (
                f'<link rel="alternate" type="{mime}" title={quoteattr(feed.title)}'
                f" href={quoteattr(f'/feeds/{name}')}>"
            )
        body = (
            "<!doctype html>\n<html><head><meta charset=utf-8><title>A web page</title>"
            f"{link}</head><body><h1>Not a feed</h1><p>Just a page.</p></body></html>\n"
        )
        return web.Response(text=body, content_type="text/html")

    async def _garbage(self, request: web.Request) -> web.StreamResponse:
        """Claims to be RSS but is not XML at all."""
        body = b"\x00\xff<rss><channel><title>broken\x01\x02 &&& <<<" + bytes(range(256)) * 4
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPES["rss"]})

    async def _redirect_to(self, request: web.Request) -> web.StreamResponse:
        url = request.query.get("url")
        if not url:
            raise web.HTTPBadRequest(text="url= is required\n")
        code = int(request.query.get("code", "302"))
        if code not in (301, 302, 303, 307, 308):
            raise web.HTTPBadRequest(text="code must be a redirect status\n")
        return web.Response(status=code, headers={"Location": url})

    async def _item_page(self, request: web.Request) -> web.StreamResponse:
        feed = self._get_feed(request)
        try:
            item = feed._find(request.match_info["guid"])
        except KeyError:
            raise web.HTTPNotFound(text="no such item\n") from None
        body = f"<!doctype html>\n<title>{escape(item.title)}</title>\n{item.content}\n"
        return web.Response(text=body, content_type="text/html")

    # -- control API (for a server running in another process) -----------

    async def _ctl_add_feed(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self.feeds:
            kind = request.query.get("kind", "rss")
            if kind not in CONTENT_TYPES:
                raise web.HTTPBadRequest(text="kind must be rss, atom or json\n")
            self.add_feed(name, kind, request.query.get("title"))  # type: ignore[arg-type]
        return web.json_response({"url": self.feed_url(name)})

    async def _ctl_add_item(self, request: web.Request) -> web.StreamResponse:
        feed = self._get_feed(request)
        data = await request.json() if request.can_read_body else {}
        item = feed.add_item(
            guid=data.get("guid"),
            title=data.get("title"),
            link=data.get("link"),
            content=data.get("content"),
        )
        return web.json_response({"guid": item.guid, "link": feed.item_link(item)})

    async def _ctl_update_item(self, request: web.Request) -> web.StreamResponse:
        feed = self._get_feed(request)
        data = await request.json() if request.can_read_body else {}
        try:
            item = feed.update_item(
                request.match_info["guid"], title=data.get("title"), content=data.get("content")
            )
        except KeyError:
            raise web.HTTPNotFound(text="no such item\n") from None
        return web.json_response({"guid": item.guid})

    async def _ctl_remove_item(self, request: web.Request) -> web.StreamResponse:
        try:
            self._get_feed(request).remove_item(request.match_info["guid"])
        except KeyError:
            raise web.HTTPNotFound(text="no such item\n") from None
        return web.json_response({})

    async def _ctl_hits(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(dict(self.hits))

    async def _ctl_synth_published(self, request: web.Request) -> web.StreamResponse:
        """Timed items as [feed, version, ms], optionally only `since_ms` <= ms < `until_ms`."""
        try:
            since = int(request.query.get("since_ms", "0"))
            until = int(request.query.get("until_ms", str(2**63)))
        except ValueError:
            raise web.HTTPBadRequest(text="since_ms and until_ms are integers\n") from None
        items = [list(p) for p in self.synth_published if since <= p[2] < until]
        return web.json_response(items)


@pytest_asyncio.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    """A started FeedServer on 127.0.0.1, stopped after the test."""
    server = FeedServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _serve_forever(args: argparse.Namespace) -> None:
    server = FeedServer(
        host=args.host,
        port=args.port,
        synth_feeds=args.feeds,
        synth_change=args.change,
        synth_items=args.items,
        seed=args.seed,
        synth_publish_rate=args.publish_rate,
    )
    for kind in ("rss", "atom", "json"):
        feed = server.add_feed(f"demo-{kind}", kind)
        for _ in range(3):
            feed.add_item()
    await server.start()
    print(server.base_url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve test feeds on loopback.")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--feeds", type=int, default=0, help="synthetic feeds at /synth/<i>")
    parser.add_argument(
        "--change", type=float, default=0.0, help="chance a /synth request sees a new item"
    )
    parser.add_argument("--items", type=int, default=10, help="items per synthetic feed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--publish-rate",
        type=float,
        default=0.0,
        help="new /synth items per second, at random times into random feeds, each "
        "stamped with its publish time (link ?published_ms=)",
    )
    args = parser.parse_args(argv)
    if not (args.host.startswith("127.") or args.host in ("::1", "localhost")):
        parser.error("--host must be a loopback address")
    asyncio.run(_serve_forever(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
