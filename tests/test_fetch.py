"""FeedFetcher against the local feed server: what a member would see in chat.

Every socket connect in these tests goes through a tripwire that refuses any
address off loopback, so a guard regression fails the test instead of sending
traffic to 10.x or 169.254.x.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.abc import AbstractResolver, ResolveResult

from bot.errors import Outcome, UpstreamError
from plugins.feeds.fetch import FeedFetcher, parse_retry_after
from tests.feedserver import FeedServer


@dataclass(frozen=True)
class Rec:
    network: str
    host: str
    outcome: Outcome
    latency_s: float
    status: int | None
    detail: str


class RecordingHealth:
    """Test double of the HealthRecorder protocol."""

    def __init__(self) -> None:
        self.records: list[Rec] = []

    def record(
        self,
        network: str,
        host: str,
        outcome: Outcome,
        *,
        latency_s: float = 0.0,
        status: int | None = None,
        detail: str = "",
    ) -> None:
        self.records.append(Rec(network, host, outcome, latency_s, status, detail))

    def summary(self) -> list[tuple[str, Outcome, int | None]]:
        return [(r.host, r.outcome, r.status) for r in self.records]


class MapResolver(AbstractResolver):
    """Made-up names pointing at loopback; never consults real DNS."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addr = self.table[host]
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        return [ResolveResult(hostname=host, host=addr, port=port, family=fam, proto=0, flags=0)]

    async def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a socket tried to connect to; anything off loopback is refused."""
    seen: list[Any] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        seen.append(address)
        if isinstance(address, tuple):
            ip = ipaddress.ip_address(str(address[0]).split("%")[0])
            if not ip.is_loopback:
                raise AssertionError(f"test tried to connect off loopback: {address!r}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


@pytest.fixture
def health() -> RecordingHealth:
    return RecordingHealth()


MakeFetcher = Callable[..., FeedFetcher]


@pytest_asyncio.fixture
async def make_fetcher(health: RecordingHealth) -> AsyncIterator[MakeFetcher]:
    made: list[FeedFetcher] = []

    def make(**kwargs: Any) -> FeedFetcher:
        kwargs.setdefault("network", "feeds")
        kwargs.setdefault("health", health)
        kwargs.setdefault("allow_private", True)
        kwargs.setdefault("timeout_s", 5)
        fetcher = FeedFetcher(**kwargs)
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        await fetcher.aclose()


@pytest.fixture
def fetcher(make_fetcher: MakeFetcher) -> FeedFetcher:
    return make_fetcher()


async def upstream_error(fetcher: FeedFetcher, url: str, **kwargs: Any) -> UpstreamError:
    with pytest.raises(UpstreamError) as info:
        await fetcher.fetch(url, **kwargs)
    assert "\n" not in str(info.value)
    return info.value


LOOP = "127.0.0.1"


# -- the happy path and conditional GET -------------------------------------


async def test_fetch_returns_the_feed_and_its_validators(
    feed_server: FeedServer, fetcher: FeedFetcher, health: RecordingHealth
) -> None:
    feed = feed_server.add_feed("news", "rss", title="News")
    feed.add_item(guid="a", title="First")
    resp = await fetcher.fetch(feed_server.feed_url("news"))
    assert resp.status == 200
    assert resp.body == feed.render()
    assert b'<guid isPermaLink="false">a</guid>' in resp.body
    assert resp.content_type.startswith("application/rss+xml")
    assert resp.etag == feed.rendered().etag
    assert resp.last_modified == feed.rendered().headers["Last-Modified"]
    assert not resp.not_modified
    assert not resp.permanent_redirect
    assert resp.url == feed_server.feed_url("news")
    assert health.summary() == [(LOOP, Outcome.OK, 200)]
    assert health.records[0].network == "feeds"
    headers = feed_server.last_headers["/feeds/news"]
    assert headers["User-Agent"].startswith("Starling")
    assert "gzip" in headers["Accept-Encoding"]


@pytest.mark.parametrize("kind", ["rss", "atom", "json"])
async def test_every_feed_kind_is_served(
    feed_server: FeedServer, fetcher: FeedFetcher, kind: Any
) -> None:
    feed = feed_server.add_feed(f"k-{kind}", kind)
    feed.add_item(title="Hello")
    resp = await fetcher.fetch(feed_server.feed_url(f"k-{kind}"))
    assert b"Hello" in resp.body
    assert kind in resp.content_type


async def test_etag_round_trip_gives_304_and_a_change_gives_200(
    feed_server: FeedServer, fetcher: FeedFetcher, health: RecordingHealth
) -> None:
    feed = feed_server.add_feed("cond")
    feed.add_item(guid="one")
    url = feed_server.feed_url("cond")
    first = await fetcher.fetch(url)
    second = await fetcher.fetch(url, etag=first.etag, last_modified=first.last_modified)
    assert second.not_modified
    assert second.status == 304
    assert second.body == b""
    assert second.etag == first.etag
    assert second.last_modified == first.last_modified
    assert feed_server.hits["/feeds/cond"] == 2
    assert feed_server.last_headers["/feeds/cond"]["If-None-Match"] == first.etag

    feed.update_item("one", content="<p>edited</p>")
    third = await fetcher.fetch(url, etag=second.etag, last_modified=second.last_modified)
    assert not third.not_modified
    assert b"edited" in third.body
    assert third.etag != first.etag
    assert [r.outcome for r in health.records] == [Outcome.OK, Outcome.NOT_MODIFIED, Outcome.OK]


async def test_if_modified_since_alone_gives_304(
    feed_server: FeedServer, fetcher: FeedFetcher
) -> None:
    feed = feed_server.add_feed("ims")
    feed.add_item()
    url = feed_server.feed_url("ims")
    first = await fetcher.fetch(url)
    again = await fetcher.fetch(url, last_modified=first.last_modified)
    assert again.not_modified
    feed.add_item()
    changed = await fetcher.fetch(url, last_modified=first.last_modified)
    assert not changed.not_modified


async def test_304_without_validators_keeps_the_ones_sent(
    feed_server: FeedServer, fetcher: FeedFetcher
) -> None:
    resp = await fetcher.fetch(
        feed_server.url("/status/304"), etag='"old"', last_modified="Mon, 01 Jan 2024 00:00:00 GMT"
    )
    assert resp.not_modified
    assert resp.etag == '"old"'
    assert resp.last_modified == "Mon, 01 Jan 2024 00:00:00 GMT"


async def test_gzip_is_decompressed(feed_server: FeedServer, fetcher: FeedFetcher) -> None:
    feed = feed_server.add_feed("zipped", "atom")
    for _ in range(20):
        feed.add_item()
    url = feed_server.url("/gzip/zipped")
    resp = await fetcher.fetch(url)
    assert resp.body == feed.render()
    async with (
        aiohttp.ClientSession(auto_decompress=False) as raw,
        raw.get(url) as wire,
    ):
        assert wire.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await wire.read()) == feed.render()


async def test_static_fixture_is_served_with_an_etag(tmp_path: Path, fetcher: FeedFetcher) -> None:
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "feed.xml").write_bytes(b"<rss><channel/></rss>")
    async with FeedServer(static_root=tmp_path) as server:
        url = server.url("/static/sample/feed.xml")
        first = await fetcher.fetch(url)
        assert first.body == b"<rss><channel/></rss>"
        assert first.etag
        assert (await fetcher.fetch(url, etag=first.etag)).not_modified
        err = await upstream_error(fetcher, server.url("/static/../test_fetch.py"))
        assert err.status == 404


async def test_html_page_is_returned_as_is(feed_server: FeedServer, fetcher: FeedFetcher) -> None:
    feed_server.add_feed("site")
    resp = await fetcher.fetch(feed_server.url("/html"))
    assert resp.content_type.startswith("text/html")
    assert b'rel="alternate"' in resp.body


# -- redirects ---------------------------------------------------------------


async def test_temporary_redirects_are_followed_and_each_hop_recorded(
    feed_server: FeedServer, fetcher: FeedFetcher, health: RecordingHealth
) -> None:
    feed_server.add_feed("hop").add_item()
    resp = await fetcher.fetch(feed_server.url("/redirect/3/hop"))
    assert resp.url == feed_server.feed_url("hop")
    assert not resp.permanent_redirect
    assert health.summary() == [(LOOP, Outcome.OK, 302)] * 3 + [(LOOP, Outcome.OK, 200)]


@pytest.mark.parametrize("path", ["/moved/perm", "/moved/perm?code=308"])
async def test_permanent_redirect_is_flagged(
    feed_server: FeedServer, fetcher: FeedFetcher, path: str
) -> None:
    feed_server.add_feed("perm").add_item()
    resp = await fetcher.fetch(feed_server.url(path))
    assert resp.permanent_redirect
    assert resp.url == feed_server.feed_url("perm")


async def test_permanent_after_temporary_is_not_flagged(
    feed_server: FeedServer, fetcher: FeedFetcher
) -> None:
    feed_server.add_feed("mix").add_item()
    moved = feed_server.url("/moved/mix")
    resp = await fetcher.fetch(feed_server.url(f"/redirect-to?url={moved}&code=302"))
    assert resp.url == feed_server.feed_url("mix")
    assert not resp.permanent_redirect


async def test_redirect_loop_gives_a_clear_error(
    feed_server: FeedServer, fetcher: FeedFetcher, health: RecordingHealth
) -> None:
    err = await upstream_error(fetcher, feed_server.url("/loop"))
    assert err.outcome is Outcome.HTTP_4XX
    assert str(err) == "127.0.0.1 redirected more than 5 times (a redirect loop?)"
    assert feed_server.hits["/loop"] == 6
    assert [r.outcome for r in health.records] == [Outcome.OK] * 5 + [Outcome.HTTP_4XX]


async def test_redirect_limit_is_configurable(
    feed_server: FeedServer, make_fetcher: MakeFetcher
) -> None:
    feed_server.add_feed("far").add_item()
    fetcher = make_fetcher(max_redirects=2)
    assert (await fetcher.fetch(feed_server.url("/redirect/2/far"))).status == 200
    err = await upstream_error(fetcher, feed_server.url("/redirect/3/far"))
    assert "more than 2 times" in str(err)


async def test_redirect_without_location_is_an_error(
    feed_server: FeedServer, fetcher: FeedFetcher
) -> None:
    err = await upstream_error(fetcher, feed_server.url("/status/302"))
    assert err.outcome is Outcome.HTTP_4XX
    assert "without saying where to" in str(err)


# -- failures ------------------------------------------------------------------


async def test_slow_server_times_out(
    feed_server: FeedServer, make_fetcher: MakeFetcher, health: RecordingHealth
) -> None:
    feed_server.add_feed("slow").add_item()
    fetcher = make_fetcher(timeout_s=0.3)
    started = time.monotonic()
    err = await upstream_error(fetcher, feed_server.url("/slow/5/slow"))
    assert time.monotonic() - started < 2
    assert err.outcome is Outcome.TIMEOUT
    assert str(err) == "127.0.0.1 did not answer within 0.3 s"
    assert health.summary() == [(LOOP, Outcome.TIMEOUT, None)]


async def test_deadline_covers_a_trickling_body(
    feed_server: FeedServer, make_fetcher: MakeFetcher
) -> None:
    feed_server.add_feed("drip").add_item()
    fetcher = make_fetcher(timeout_s=0.3)
    err = await upstream_error(fetcher, feed_server.url("/slow-body/5/drip"))
    assert err.outcome is Outcome.TIMEOUT


@pytest.mark.parametrize(
    ("code", "outcome", "message"),
    [
        (404, Outcome.HTTP_4XX, "127.0.0.1 answered 404 Not Found"),
        (410, Outcome.HTTP_4XX, "127.0.0.1 answered 410 Gone"),
        (401, Outcome.AUTH, "127.0.0.1 answered 401 Unauthorized"),
        (403, Outcome.AUTH, "127.0.0.1 answered 403 Forbidden"),
        (500, Outcome.HTTP_5XX, "127.0.0.1 answered 500 Internal Server Error"),
        (502, Outcome.HTTP_5XX, "127.0.0.1 answered 502 Bad Gateway"),
        (503, Outcome.HTTP_5XX, "127.0.0.1 answered 503 Service Unavailable"),
        (429, Outcome.RATE_LIMITED, "127.0.0.1 answered 429 Too Many Requests"),
    ],
)
async def test_error_statuses_are_classified(
    feed_server: FeedServer,
    fetcher: FeedFetcher,
    health: RecordingHealth,
    code: int,
    outcome: Outcome,
    message: str,
) -> None:
    err = await upstream_error(fetcher, feed_server.url(f"/status/{code}"))
    assert err.outcome is outcome
    assert err.status == code
    assert str(err) == message
    assert err.retry_after_s is None
    assert health.summary() == [(LOOP, outcome, code)]


@pytest.mark.parametrize(
    ("code", "outcome"), [(429, Outcome.RATE_LIMITED), (503, Outcome.HTTP_5XX)]
)
async def test_retry_after_is_honoured(
    feed_server: FeedServer, fetcher: FeedFetcher, code: int, outcome: Outcome
) -> None:
    err = await upstream_error(fetcher, feed_server.url(f"/status/{code}?retry_after=120"))
    assert err.outcome is outcome
    assert err.retry_after_s == 120
    assert "retry after 120 s" in str(err)


async def test_retry_after_as_http_date(feed_server: FeedServer, fetcher: FeedFetcher) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    url = feed_server.url(f"/status/429?retry_after={quote(when)}")
    err = await upstream_error(fetcher, url)
    assert err.outcome is Outcome.RATE_LIMITED
    assert err.retry_after_s is not None
    assert 80 <= err.retry_after_s <= 91


def test_parse_retry_after() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_retry_after("5", now=now) == 5
    assert parse_retry_after(" 0 ", now=now) == 0
    assert parse_retry_after("Mon, 01 Jan 2024 00:01:00 GMT", now=now) == 60
    assert parse_retry_after("Sun, 31 Dec 2023 23:00:00 GMT", now=now) == 0
    assert parse_retry_after("99999999999999999999", now=now) == 7 * 24 * 3600
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("-5", now=now) is None
    assert parse_retry_after(None, now=now) is None


@pytest.mark.parametrize("path", ["/huge?mb=20", "/huge?mb=20&length=1", "/gzip-bomb?mb=20"])
async def test_oversized_body_is_refused(
    feed_server: FeedServer, make_fetcher: MakeFetcher, health: RecordingHealth, path: str
) -> None:
    fetcher = make_fetcher(max_bytes=1_000_000)
    err = await upstream_error(fetcher, feed_server.url(path))
    assert err.outcome is Outcome.TOO_LARGE
    assert str(err) == "the feed is larger than 1 MB"
    assert health.summary() == [(LOOP, Outcome.TOO_LARGE, 200)]


async def test_body_just_under_the_cap_is_accepted(
    feed_server: FeedServer, make_fetcher: MakeFetcher
) -> None:
    fetcher = make_fetcher(max_bytes=1_000_000)
    resp = await fetcher.fetch(feed_server.url("/huge?mb=1"))
    assert len(resp.body) == 1_000_000


async def test_closed_port_is_refused(fetcher: FeedFetcher, health: RecordingHealth) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    err = await upstream_error(fetcher, f"http://127.0.0.1:{port}/feed")
    assert err.outcome is Outcome.REFUSED
    assert str(err) == "127.0.0.1 refused the connection"
    assert health.summary() == [(LOOP, Outcome.REFUSED, None)]


async def test_unknown_host_is_a_dns_failure(
    make_fetcher: MakeFetcher, health: RecordingHealth
) -> None:
    fetcher = make_fetcher(resolver=MapResolver({}))
    err = await upstream_error(fetcher, "http://no-such-host.example/feed")
    assert err.outcome is Outcome.DNS
    assert str(err) == "no-such-host.example could not be found (DNS lookup failed)"
    assert health.summary() == [("no-such-host.example", Outcome.DNS, None)]


async def test_non_http_url_is_refused_before_any_request(
    fetcher: FeedFetcher, health: RecordingHealth, connects: list[Any]
) -> None:
    err = await upstream_error(fetcher, "ftp://example.com/feed.xml")
    assert err.outcome is Outcome.BLOCKED
    assert str(err) == "only http:// and https:// URLs can be followed"
    assert connects == []
    assert health.summary() == [("example.com", Outcome.BLOCKED, None)]


@pytest.mark.parametrize(
    ("reply", "outcome", "message"),
    [
        (b"garbage\r\n\r\n", Outcome.PARSE, "127.0.0.1 sent a malformed HTTP response"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
            Outcome.STREAM_DROPPED,
            "127.0.0.1 closed the connection before the response was complete",
        ),
        (
            b"",
            Outcome.STREAM_DROPPED,
            "127.0.0.1 closed the connection before the response was complete",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Encoding: gzip\r\n\r\nnotgz",
            Outcome.PARSE,
            "127.0.0.1 sent a compressed body that could not be decoded",
        ),
    ],
)
async def test_broken_http_is_classified(
    fetcher: FeedFetcher, reply: bytes, outcome: Outcome, message: str
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        err = await upstream_error(fetcher, f"http://127.0.0.1:{port}/feed")
    assert err.outcome is outcome
    assert str(err) == message


async def test_tls_failure_is_classified(
    feed_server: FeedServer, fetcher: FeedFetcher, health: RecordingHealth
) -> None:
    # A TLS handshake against a plain-HTTP port fails without any certificate setup.
    err = await upstream_error(fetcher, f"https://127.0.0.1:{feed_server.port}/feeds/x")
    assert err.outcome is Outcome.TLS
    assert str(err) == "the TLS handshake with 127.0.0.1 failed"
    assert health.summary() == [(LOOP, Outcome.TLS, None)]


# -- fairness and the shared session -------------------------------------------


async def test_in_flight_cap_holds_and_is_first_come_first_served(
    feed_server: FeedServer, make_fetcher: MakeFetcher
) -> None:
    for i in range(8):
        feed_server.add_feed(f"q{i}").add_item()
    fetcher = make_fetcher(max_in_flight=2)
    tasks = []
    for i in range(8):
        tasks.append(asyncio.create_task(fetcher.fetch(feed_server.url(f"/slow/0.05/q{i}"))))
        await asyncio.sleep(0)  # start them in a known order
    await asyncio.gather(*tasks)
    assert feed_server.peak_in_flight == 2
    assert list(feed_server.hits) == [f"/slow/0.05/q{i}" for i in range(8)]


async def test_one_session_serves_every_fetch(
    feed_server: FeedServer, fetcher: FeedFetcher, connects: list[Any]
) -> None:
    feed_server.add_feed("reuse").add_item()
    for _ in range(5):
        await fetcher.fetch(feed_server.feed_url("reuse"))
    assert len(connects) == 1  # keep-alive on the one shared connector


async def test_fetch_after_close_is_an_error(fetcher: FeedFetcher) -> None:
    await fetcher.aclose()
    with pytest.raises(RuntimeError):
        await fetcher.fetch("http://127.0.0.1:1/")


# -- the SSRF guard ------------------------------------------------------------


async def assert_blocked(
    fetcher: FeedFetcher, url: str, connects: list[Any], message: str | None = None
) -> UpstreamError:
    err = await upstream_error(fetcher, url)
    assert err.outcome is Outcome.BLOCKED
    assert "Starling does not fetch those" in str(err) or "will not follow" in str(err)
    if message is not None:
        assert str(err) == message
    assert connects == []
    return err


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:{port}/feeds/x", "127.0.0.1"),
        ("http://localhost:{port}/feeds/x", "localhost"),
        ("http://[::ffff:127.0.0.1]:{port}/feeds/x", "::ffff:7f00:1"),
        ("http://[::1]:{port}/feeds/x", "::1"),
        ("http://2130706433:{port}/feeds/x", "2130706433"),
        ("http://0.0.0.0:{port}/feeds/x", "0.0.0.0"),
    ],
)
async def test_loopback_is_blocked_without_reaching_the_server(
    feed_server: FeedServer,
    make_fetcher: MakeFetcher,
    health: RecordingHealth,
    connects: list[Any],
    url: str,
    host: str,
) -> None:
    feed_server.add_feed("x").add_item()
    fetcher = make_fetcher(allow_private=False)
    err = await assert_blocked(fetcher, url.format(port=feed_server.port), connects)
    assert str(err).startswith(host)
    assert feed_server.hits["/feeds/x"] == 0
    assert health.summary() == [(host, Outcome.BLOCKED, None)]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/feed",
        "http://192.168.1.1/feed",
        "http://100.64.0.1/feed",
        "http://[fc00::1]/feed",
        "http://[fe80::1%25eth0]/feed",
    ],
)
async def test_private_and_metadata_literals_are_blocked_before_connecting(
    make_fetcher: MakeFetcher, connects: list[Any], url: str
) -> None:
    await assert_blocked(make_fetcher(allow_private=False), url, connects)


async def test_public_looking_name_resolving_to_loopback_is_blocked(
    feed_server: FeedServer, make_fetcher: MakeFetcher, connects: list[Any]
) -> None:
    feed_server.add_feed("x").add_item()
    fetcher = make_fetcher(
        allow_private=False, resolver=MapResolver({"feeds.example.com": "127.0.0.1"})
    )
    await assert_blocked(
        fetcher,
        f"http://feeds.example.com:{feed_server.port}/feeds/x",
        connects,
        "feeds.example.com resolves to a private address; Starling does not fetch those",
    )
    assert feed_server.hits["/feeds/x"] == 0


async def test_metadata_stays_blocked_when_private_is_allowed(
    make_fetcher: MakeFetcher, connects: list[Any]
) -> None:
    fetcher = make_fetcher(
        allow_private=True, resolver=MapResolver({"metadata.internal": "169.254.169.254"})
    )
    await assert_blocked(fetcher, "http://169.254.169.254/latest/meta-data/", connects)
    await assert_blocked(fetcher, "http://metadata.internal/computeMetadata/v1/", connects)


async def test_allow_private_reaches_loopback_by_ip_name_and_alias(
    feed_server: FeedServer, make_fetcher: MakeFetcher
) -> None:
    feed_server.add_feed("x").add_item()
    fetcher = make_fetcher(
        allow_private=True, resolver=MapResolver({"feeds.example.com": "127.0.0.1"})
    )
    port = feed_server.port
    assert (await fetcher.fetch(f"http://127.0.0.1:{port}/feeds/x")).status == 200
    assert (await fetcher.fetch(f"http://feeds.example.com:{port}/feeds/x")).status == 200
    assert feed_server.last_headers["/feeds/x"]["Host"] == f"feeds.example.com:{port}"
    assert feed_server.hits["/feeds/x"] == 2


async def test_allow_private_reaches_localhost_through_the_system_resolver(
    feed_server: FeedServer, make_fetcher: MakeFetcher
) -> None:
    feed_server.add_feed("x").add_item()
    fetcher = make_fetcher(allow_private=True)
    resp = await fetcher.fetch(f"http://localhost:{feed_server.port}/feeds/x")
    assert resp.status == 200


def pretend_public(*addresses: str) -> Callable[[IPv4Address | IPv6Address], bool]:
    """Address policy for tests: these loopback addresses count as the public internet."""
    allowed = {ipaddress.ip_address(a) for a in addresses}
    return lambda ip: ip in allowed


@pytest_asyncio.fixture
async def internal_server() -> AsyncIterator[FeedServer]:
    """Stands in for an intranet host: 127.0.0.2, which the tests' policy keeps private."""
    async with FeedServer(host="127.0.0.2") as server:
        server.add_feed("secret").add_item(title="internal only")
        yield server


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/feeds/secret",
        "http://intranet.example:{port}/feeds/secret",
        "http://[::ffff:127.0.0.2]:{port}/feeds/secret",
    ],
)
async def test_redirect_to_a_private_address_is_blocked(
    feed_server: FeedServer,
    internal_server: FeedServer,
    make_fetcher: MakeFetcher,
    health: RecordingHealth,
    connects: list[Any],
    target: str,
) -> None:
    fetcher = make_fetcher(
        allow_private=False,
        address_policy=pretend_public("127.0.0.1"),
        resolver=MapResolver({"intranet.example": "127.0.0.2"}),
    )
    target = target.format(port=internal_server.port)
    err = await upstream_error(fetcher, feed_server.url(f"/redirect-to?url={target}"))
    assert err.outcome is Outcome.BLOCKED
    assert feed_server.hits["/redirect-to"] == 1
    assert internal_server.hits["/feeds/secret"] == 0
    assert all(address[0] == "127.0.0.1" for address in connects)
    assert health.summary()[0] == (LOOP, Outcome.OK, 302)
    assert health.summary()[1][1] is Outcome.BLOCKED
    assert len(health.records) == 2


@pytest.mark.parametrize(
    "target", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "file:///etc/passwd"]
)
async def test_redirect_to_metadata_or_intranet_is_blocked_before_connecting(
    feed_server: FeedServer, make_fetcher: MakeFetcher, connects: list[Any], target: str
) -> None:
    fetcher = make_fetcher(allow_private=False, address_policy=pretend_public("127.0.0.1"))
    err = await upstream_error(fetcher, feed_server.url(f"/redirect-to?url={target}"))
    assert err.outcome is Outcome.BLOCKED
    assert all(address[0] == "127.0.0.1" for address in connects)


async def test_policy_seam_lets_the_pretend_public_server_through(
    feed_server: FeedServer, make_fetcher: MakeFetcher
) -> None:
    feed_server.add_feed("pub").add_item()
    fetcher = make_fetcher(allow_private=False, address_policy=pretend_public("127.0.0.1"))
    assert (await fetcher.fetch(feed_server.feed_url("pub"))).status == 200
