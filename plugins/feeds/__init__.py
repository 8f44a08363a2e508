"""Feeds network: RSS 0.9x/1.0/2.0, Atom, RDF and JSON Feed, polled with conditional GET.

The cursor is the last response's validators (ETag / Last-Modified); which items
are new is decided by the core's dedupe store, so a feed that rewrites `updated`
does not re-post its items.
"""

from __future__ import annotations

import asyncio
import functools
import json
from urllib.parse import urlsplit

from pydantic import Field

from bot import __version__
from bot.config import PluginSettings, parse_plugin_config
from bot.errors import Outcome, UpstreamError, UserError
from bot.known import known_posts
from bot.model import FetchResult, Target, TargetKind
from bot.netguard import check_url_syntax
from bot.protocols import HealthRecorder, PluginContext, Publisher, Source
from plugins.feeds.fetch import FeedFetcher

NAME = "feeds"
# Above this size parsing may take tens of milliseconds: keep it off the event loop.
_THREAD_PARSE_BYTES = 256_000


class FeedsSettings(PluginSettings):
    timeout_s: float = Field(default=20.0, gt=0)
    max_bytes: int = Field(default=5_000_000, ge=10_000)
    max_in_flight: int = Field(default=100, ge=1)
    max_redirects: int = Field(default=5, ge=0, le=20)
    user_agent: str = f"Starling/{__version__} (feed relay for team chat)"


def create(ctx: PluginContext) -> FeedsNetwork:
    settings = parse_plugin_config(FeedsSettings, dict(ctx.config), ctx.name)
    fetcher = FeedFetcher(
        network=ctx.name,
        health=ctx.health,
        allow_private=ctx.allow_private_addresses,
        timeout_s=settings.timeout_s,
        max_bytes=settings.max_bytes,
        max_in_flight=settings.max_in_flight,
        max_redirects=settings.max_redirects,
        user_agent=settings.user_agent,
    )
    return FeedsNetwork(ctx.name, FeedsSource(ctx.name, fetcher, ctx.health))


class FeedsSource:
    # Opts in to `bot.known`: the relay publishes what it already holds, so items
    # unchanged since the last poll come back as placeholders instead of being rebuilt.
    reads_known_posts = True

    def __init__(self, network: str, fetcher: FeedFetcher, health: HealthRecorder) -> None:
        self._network = network
        self._fetcher = fetcher
        self._health = health

    async def resolve(self, kind: TargetKind, query: str) -> Target:
        if kind is TargetKind.SEARCH:
            raise UserError(
                "feeds cannot be searched; /follow a feed's URL and add --include WORD to filter"
            )
        query = query.strip().strip("<>")
        if "://" not in query:
            raise UserError(
                f"{query!r} is not a URL; give the feed's address, like https://example.com/feed.xml"
            )
        url = check_url_syntax(query)
        return Target(self._network, TargetKind.ACCOUNT, url, url)

    async def fetch(self, target: Target, cursor: str | None) -> FetchResult:
        validators = json.loads(cursor) if cursor else {}
        etag, modified = validators.get("etag"), validators.get("modified")
        response = await self._fetcher.fetch(target.key, etag=etag, last_modified=modified)
        if cursor and (response.etag, response.last_modified) == (etag, modified):
            new_cursor: str | None = cursor  # the same validators: no new JSON (the 304 path)
        elif response.etag or response.last_modified:
            new_cursor = json.dumps(
                {"etag": response.etag, "modified": response.last_modified}, separators=(",", ":")
            )
        else:
            new_cursor = None
        if response.not_modified:
            return FetchResult([], new_cursor or cursor, not_modified=True)
        # Here, not at module level: the parser (with nh3 and bot.html, ~2 MiB) loads
        # with the first document, not with an idle bot.
        from plugins.feeds.parse import FeedParseError, parse_feed

        try:
            parse = functools.partial(
                parse_feed,
                response.body,
                content_type=response.content_type,
                url=response.url,
                network=self._network,
                id_host=_host(target.key),
                known=known_posts.get(),
            )
            big = len(response.body) > _THREAD_PARSE_BYTES
            parsed = await asyncio.to_thread(parse) if big else parse()
        except FeedParseError as err:
            host = urlsplit(response.url).hostname or ""
            self._health.record(self._network, host, Outcome.PARSE, detail=str(err))
            raise UpstreamError(Outcome.PARSE, f"it is not a feed ({err})") from None
        return FetchResult(parsed.posts, new_cursor)


@functools.lru_cache(maxsize=1024)
def _host(feed_url: str) -> str:
    """The host that scopes a feed's non-global item ids (`parse.scoped_id`)."""
    return urlsplit(feed_url).hostname or ""


class FeedsNetwork:
    aliases = ("rss", "atom", "feed", "jsonfeed")
    description = "RSS, Atom and JSON Feed"
    publisher: Publisher | None = None

    def __init__(self, name: str, source: FeedsSource) -> None:
        self.name = name
        self.source: Source | None = source
        self._fetcher = source._fetcher

    async def aclose(self) -> None:
        await self._fetcher.aclose()
