"""Following accounts, hashtags and searches on Mastodon-API servers.

Resolution checks the server really speaks the Mastodon API, then finds the
account (`/api/v1/accounts/lookup`, or `/api/v2/search` with a token). Polling
asks for statuses newer than the cursor (`min_id`, the newest id seen), paging
forward when more arrived than one page holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from bot.errors import Outcome, UpstreamError, UserError
from bot.model import FetchResult, Post, Target, TargetKind
from bot.protocols import PluginContext, PostSink
from plugins.mastodon.client import ApiError, InstanceClient
from plugins.mastodon.config import MastodonSettings
from plugins.mastodon.instances import InstanceDirectory
from plugins.mastodon.statuses import full_acct, newest_id, statuses_to_posts
from plugins.mastodon.streaming import StreamManager
from plugins.mastodon.targets import (
    AccountQuery,
    ParsedKey,
    Query,
    SearchQuery,
    TagQuery,
    parse_follow,
    parse_key,
    parse_search,
    target_key,
)

log = logging.getLogger(__name__)


@contextmanager
def _as_user_error(domain: str) -> Iterator[None]:
    """Upstream failures while resolving become one line for chat (already recorded)."""
    try:
        yield
    except UpstreamError as err:
        if err.outcome is Outcome.BLOCKED:
            raise UserError(str(err)) from None
        if err.outcome is Outcome.DNS:
            raise UserError(f"could not find the server {domain}; check its name") from None
        if err.outcome is Outcome.RATE_LIMITED:
            wait = f" in {err.retry_after_s:.0f} s" if err.retry_after_s else " later"
            raise UserError(f"{domain} is rate limiting Starling; try again{wait}") from None
        if err.outcome is Outcome.PARSE:
            raise UserError(f"{domain} does not look like a Mastodon server ({err})") from None
        if err.outcome is Outcome.AUTH:
            raise UserError(str(err)) from None  # says which token option to set
        raise UserError(f"could not reach {domain}: {err}; try again later") from None


class MastodonSource:
    """`Source` and `StreamingSource` for one Starling network named `network`."""

    def __init__(self, ctx: PluginContext, settings: MastodonSettings) -> None:
        self.network = ctx.name
        self.settings = settings
        self._ctx = ctx
        self._token = settings.token.get_secret_value() if settings.token else None
        self.directory = InstanceDirectory(
            settings.instance, settings.instances, tokens=settings.token_map()
        )
        self._clients: dict[str, InstanceClient] = {}
        self._checked: dict[str, dict[str, Any]] = {}
        self._streams = StreamManager(self, ctx, settings)

    # --- clients ----------------------------------------------------------------

    @property
    def bearer(self) -> str | None:
        """The access token for the default instance (never logged, never shown)."""
        return self._token

    def client(self, domain: str) -> InstanceClient:
        """The one client of an instance (created on first use, inside the running loop)."""
        instance = self.directory.get(domain)
        client = self._clients.get(instance.domain)
        if client is None:
            s = self.settings
            client = self._clients[instance.domain] = InstanceClient(
                instance,
                network=self.network,
                health=self._ctx.health,
                clock=self._ctx.clock,
                token=instance.token,
                allow_private=self._ctx.allow_private_addresses,
                timeout_s=s.timeout_s,
                max_bytes=s.max_bytes,
                user_agent=s.user_agent,
                rate_limit_reserve=s.rate_limit_reserve,
            )
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def cached_instance_info(self, domain: str) -> dict[str, Any] | None:
        """What `/api/v1/instance` said, if it was asked already (no request)."""
        return self._checked.get(domain)

    async def instance_info(self, domain: str) -> dict[str, Any]:
        """`/api/v1/instance`, once per instance: proof that it speaks the Mastodon API."""
        cached = self._checked.get(domain)
        if cached is not None:
            return cached
        client = self.client(domain)
        try:
            info: dict[str, Any] = (await client.get("/api/v1/instance", expect=dict)).data
        except ApiError as err:
            if err.status in (404, 410) or err.outcome is Outcome.PARSE:
                raise UserError(
                    f"{domain} is not a Mastodon server (it does not offer the Mastodon API)"
                ) from None
            raise
        if not (info.get("uri") or info.get("domain") or info.get("version")):
            raise UserError(f"{domain} is not a Mastodon server (its /api/v1/instance is not)")
        self._checked[domain] = info
        return info

    # --- resolve ----------------------------------------------------------------

    async def resolve(self, kind: TargetKind, query: str) -> Target:
        default = self.directory.default_domain
        parsed: Query = (
            parse_search(query, default)
            if kind is TargetKind.SEARCH
            else parse_follow(query, default)
        )
        with _as_user_error(parsed.domain):
            await self.instance_info(parsed.domain)
            if isinstance(parsed, AccountQuery):
                return await self._resolve_account(kind, parsed)
            if isinstance(parsed, TagQuery):
                display = f"#{parsed.tag} on {parsed.domain}"
                return Target(self.network, kind, target_key(parsed), display)
            return await self._resolve_search(parsed)

    async def _resolve_account(self, kind: TargetKind, query: AccountQuery) -> Target:
        client = self.client(query.domain)
        account: dict[str, Any] | None = None
        try:
            account = (
                await client.get("/api/v1/accounts/lookup", {"acct": query.acct}, expect=dict)
            ).data
        except ApiError as err:
            if err.status == 410:
                raise UserError(
                    f"{query.handle} is suspended or deleted on {query.domain}"
                ) from None
            if err.status != 404:
                raise
        if account is None and client.authenticated:
            account = await self._search_account(client, query)
        if account is None:
            raise UserError(f"no account {query.handle} on {query.domain}")
        handle = f"@{full_acct(account, query.domain)}"
        if account.get("suspended"):
            raise UserError(f"{handle} is suspended on {query.domain}")
        moved = account.get("moved")
        if isinstance(moved, dict) and moved.get("acct"):
            raise UserError(
                f"{handle} has moved to @{full_acct(moved, query.domain)}; follow that account"
            )
        account_id = str(account.get("id") or "")
        if not account_id:
            raise UserError(f"{query.domain} sent an account without an id; try again later")
        return Target(self.network, kind, target_key(query, account_id), handle)

    async def _search_account(
        self, client: InstanceClient, query: AccountQuery
    ) -> dict[str, Any] | None:
        """Resolve through `/api/v2/search` (needs a token), e.g. a remote account."""
        wanted = query.handle.lstrip("@").lower()
        params = {"q": query.handle, "type": "accounts", "resolve": "true", "limit": "5"}
        data = (await client.get("/api/v2/search", params, expect=dict)).data
        for raw in data.get("accounts") or []:
            if isinstance(raw, dict) and full_acct(raw, query.domain).lower() == wanted:
                return raw
        return None

    async def _resolve_search(self, query: SearchQuery) -> Target:
        client = self.client(query.domain)
        display = f'"{query.text}" on {query.domain}'
        if not client.authenticated:
            raise UserError(
                f"searching posts on {query.domain} needs an access token for it "
                "([mastodon] token, or [mastodon] tokens for other servers); "
                f"hashtags work without one: /search mastodon #{query.text.split()[0]}"
            )
        try:
            statuses = await self._search_page(client, query.text, None)
        except ApiError as err:
            if err.outcome is Outcome.AUTH or err.status in (400, 404, 422):
                raise UserError(
                    f"{query.domain} does not offer post search to Starling ({err}); "
                    "follow a hashtag instead: /follow mastodon #word"
                ) from None
            raise
        if not statuses:
            raise UserError(
                f"{query.domain} found no posts for {query.text!r}. Mastodon only searches post "
                "text when the server has full-text search, and only posts whose authors opted "
                "in; follow a hashtag instead: /follow mastodon #word"
            )
        return Target(self.network, TargetKind.SEARCH, target_key(query), display)

    # --- fetch ------------------------------------------------------------------

    async def fetch(self, target: Target, cursor: str | None) -> FetchResult:
        try:
            key = parse_key(target.key)
        except ValueError:
            raise UpstreamError(Outcome.PARSE, f"unknown target {target.key!r}") from None
        client = self.client(key.domain)
        statuses: list[Any] = []
        since = cursor
        pages = self.settings.max_pages if cursor else 1
        for _ in range(pages):
            page = await self._page(client, key, since)
            statuses += page
            if len(page) < self.settings.page_limit:
                break
            since = newest_id([str(s.get("id", "")) for s in page if isinstance(s, dict)], since)
        posts, newest = statuses_to_posts(
            statuses,
            network=self.network,
            domain=key.domain,
            show_private=self.settings.show_private,
        )
        # "0" marks "nothing existed yet": the next poll pages forward from the very
        # first status instead of reading only the newest page of a burst.
        return FetchResult(posts, newest_id([newest] if newest else [], cursor) or "0")

    async def _page(self, client: InstanceClient, key: ParsedKey, min_id: str | None) -> list[Any]:
        if key.kind == "search":
            return await self._search_page(client, key.value, min_id)
        params = {"limit": str(self.settings.page_limit)}
        if min_id:
            params["min_id"] = min_id
        if key.kind == "accounts":
            path = f"/api/v1/accounts/{quote(key.value, safe='')}/statuses"
        else:
            path = f"/api/v1/timelines/tag/{quote(key.value, safe='')}"
        data: list[Any] = (await client.get(path, params, expect=list)).data
        return data

    async def _search_page(
        self, client: InstanceClient, text: str, min_id: str | None
    ) -> list[Any]:
        params = {
            "q": text,
            "type": "statuses",
            "resolve": "false",
            "limit": str(self.settings.page_limit),
        }
        if min_id:
            params["min_id"] = min_id
        data = (await client.get("/api/v2/search", params, expect=dict)).data
        statuses = data.get("statuses")
        return statuses if isinstance(statuses, list) else []

    # --- stream -----------------------------------------------------------------

    async def stream(
        self, targets: list[Target], cursors: Mapping[str, str | None], sink: PostSink
    ) -> None:
        await self._streams.run(targets, cursors, sink)

    def stream_status(self) -> list[str]:
        return self._streams.status_lines()

    def stream_host(self, target: Target) -> str | None:
        """For the outage work: the host a streamed follow depends on."""
        return self._streams.stream_host(target)

    def to_posts(self, statuses: list[Any], domain: str) -> tuple[list[Post], str | None]:
        return statuses_to_posts(
            statuses, network=self.network, domain=domain, show_private=self.settings.show_private
        )
