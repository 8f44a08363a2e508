"""Reading Bluesky: resolve what a member asked for, poll it, and keep positions.

Accounts are followed by DID (a handle can change, the DID does not) and read
with `app.bsky.feed.getAuthorFeed` from the public AppView. Searches use
`app.bsky.feed.searchPosts`, which Bluesky only answers for logged-in sessions,
so they go through the configured PDS with the session's token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from bot.clock import Clock
from bot.errors import Outcome, UpstreamError, UserError
from bot.model import FetchResult, Post, Target, TargetKind
from bot.protocols import HealthRecorder, PostSink
from plugins.bluesky.convert import Links, from_view
from plugins.bluesky.cursor import Position, decode, encode
from plugins.bluesky.ids import actor_from_input
from plugins.bluesky.jetstream import Jetstream, JetstreamOptions
from plugins.bluesky.lexicon import (
    REASON_REPOST,
    AuthorFeed,
    FeedViewPost,
    Posts,
    PostView,
    ProfileBasic,
    SearchResult,
)
from plugins.bluesky.session import Sessions
from plugins.bluesky.xrpc import Xrpc, XrpcError

log = logging.getLogger(__name__)

MAX_SEARCH_CHARS = 300
PROFILE_CACHE = 50_000
GET_POSTS_MAX = 25


def _sort_time(item: FeedViewPost) -> str:
    if item.reason is not None and item.reason.type == REASON_REPOST and item.reason.indexed_at:
        return item.reason.indexed_at
    return item.post.indexed_at


class BlueskySource:
    """`Source` and `StreamingSource` for Bluesky; `stream` is the Jetstream client."""

    def __init__(
        self,
        network: str,
        *,
        appview: Xrpc,
        service: Xrpc,
        sessions: Sessions,
        links: Links,
        clock: Clock,
        page_size: int,
        max_pages: int,
        health: HealthRecorder,
        jetstream: JetstreamOptions,
    ) -> None:
        self.network = network
        self._appview = appview
        self._service = service
        self._sessions = sessions
        self.links = links
        self._clock = clock
        self._page_size = page_size
        self._max_pages = max_pages
        self.profiles: dict[str, ProfileBasic] = {}
        self.positions: dict[str, Position] = {}
        self.jetstream = Jetstream(
            network,
            jetstream,
            health=health,
            clock=clock,
            links=links,
            positions=self.positions,
            profile=self.profile,
            posts=self.posts,
        )

    # --- resolve ------------------------------------------------------------------------

    async def resolve(self, kind: TargetKind, query: str) -> Target:
        if kind is TargetKind.SEARCH:
            return self._resolve_search(query)
        actor = actor_from_input(query)
        try:
            profile = await self._appview.query(
                "app.bsky.actor.getProfile", {"actor": actor}, ProfileBasic
            )
        except XrpcError as err:
            if err.outcome is Outcome.HTTP_4XX:
                shown = actor if actor.startswith("did:") else f"@{actor}"
                raise UserError(
                    f"there is no Bluesky account {shown}; check the spelling"
                ) from None
            raise UserError(
                f"could not reach Bluesky to look up {actor} ({err}); try again later"
            ) from None
        self._remember(profile)
        shown = (
            f"@{profile.handle}" if profile.handle not in ("", "handle.invalid") else profile.did
        )
        return Target(self.network, TargetKind.ACCOUNT, profile.did, shown)

    def _resolve_search(self, query: str) -> Target:
        text = " ".join(query.split())
        if not text:
            raise UserError("give words to search for, e.g. /search bluesky python asyncio")
        if len(text) > MAX_SEARCH_CHARS:
            raise UserError(f"that search is longer than {MAX_SEARCH_CHARS} characters")
        if not self._sessions.configured:
            raise UserError(
                "Bluesky search needs a logged-in account: set [bluesky] handle and "
                "app_password (STARLING_BLUESKY__HANDLE, STARLING_BLUESKY__APP_PASSWORD)"
            )
        return Target(self.network, TargetKind.SEARCH, text, f'"{text}"')

    # --- poll ---------------------------------------------------------------------------

    async def fetch(self, target: Target, cursor: str | None) -> FetchResult:
        key = target.resource_key
        known = decode(cursor).merged(self.positions.get(key, Position()))
        if target.kind is TargetKind.SEARCH:
            posts, newest = await self._search(target.key)
        else:
            posts, newest = await self._author_feed(target.key, known.poll if cursor else "")
        position = known.merged(Position(poll=newest))
        if cursor is None and not position.stream_us:
            # A new follow: the stream starts from this moment.
            position = Position(position.poll, _micros(self._clock.now()))
        self.positions[key] = position
        return FetchResult(posts, encode(position))

    async def _author_feed(self, did: str, since: str) -> tuple[list[Post], str]:
        """Newest posts first; pages back until `since` (at most `max_pages`)."""
        posts: list[Post] = []
        newest = ""
        page_cursor: str | None = None
        for _ in range(self._max_pages if since else 1):
            params: dict[str, str | int | list[str]] = {"actor": did, "limit": self._page_size}
            if page_cursor:
                params["cursor"] = page_cursor
            page = await self._appview.query("app.bsky.feed.getAuthorFeed", params, AuthorFeed)
            for item in page.feed:
                self._remember(item.post.author)
                posts.append(from_view(self.network, item, self.links))
                newest = max(newest, _sort_time(item))
            oldest = min((_sort_time(i) for i in page.feed), default="")
            page_cursor = page.cursor
            if not page_cursor or not page.feed or oldest <= since:
                break
        return posts, newest

    async def _search(self, query: str) -> tuple[list[Post], str]:
        params: dict[str, str | int | list[str]] = {
            "q": query,
            "sort": "latest",
            "limit": self._page_size,
        }

        async def search(token: str) -> SearchResult:
            return await self._service.query(
                "app.bsky.feed.searchPosts", params, SearchResult, token=token
            )

        try:
            result = await self._sessions.call(search)
        except UserError as err:
            raise UpstreamError(Outcome.AUTH, str(err)) from None
        posts = []
        for view in result.posts:
            self._remember(view.author)
            posts.append(from_view(self.network, view, self.links))
        newest = max((v.indexed_at for v in result.posts), default="")
        return posts, newest

    # --- profiles, for streamed posts ---------------------------------------------------

    def _remember(self, profile: ProfileBasic) -> None:
        if len(self.profiles) >= PROFILE_CACHE:
            self.profiles.pop(next(iter(self.profiles)))
        self.profiles[profile.did] = profile

    async def profile(self, did: str) -> ProfileBasic:
        """The cached profile of `did`, looked up once; a bare DID if the AppView fails."""
        cached = self.profiles.get(did)
        if cached is not None:
            return cached
        try:
            profile = await self._appview.query(
                "app.bsky.actor.getProfile", {"actor": did}, ProfileBasic
            )
        except UpstreamError as err:
            log.info("no profile for %s (%s); showing the DID", did, err)
            return ProfileBasic(did=did)
        self._remember(profile)
        return profile

    async def posts(self, uris: list[str]) -> list[PostView]:
        """Posts by at:// URI from the AppView, 25 a call (what a streamed repost names)."""
        views: list[PostView] = []
        for start in range(0, len(uris), GET_POSTS_MAX):
            chunk = uris[start : start + GET_POSTS_MAX]
            found = await self._appview.query("app.bsky.feed.getPosts", {"uris": chunk}, Posts)
            for view in found.posts:
                self._remember(view.author)
            views += found.posts
        return views

    # --- stream -------------------------------------------------------------------------

    async def stream(
        self, targets: list[Target], cursors: Mapping[str, str | None], sink: PostSink
    ) -> None:
        await self.jetstream.run(targets, cursors, sink)

    def host_pools(self) -> dict[str, list[str]]:
        """For the outage work: several Jetstream hosts back each other up."""
        return self.jetstream.host_pools()

    def stream_host(self, target: Target) -> str | None:
        """For the outage work: the Jetstream host (or pool) a followed account streams from."""
        return self.jetstream.stream_host(target)


def _micros(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)
