"""Reading X: follow an account's posts (`/2/users/:id/tweets`) or a recent search.

The cursor is the newest post id seen; every poll asks only for posts after it
(`since_id`), up to `max_results` in one request, so a quiet account costs one
small read. The first fetch of a new subscription asks for `first_fetch_results`
posts: they become the baseline, not messages. `""` as cursor means "polled
before, nothing seen yet", so the spacing below applies from the second fetch on.

Reads cost money. The network asks the core for `min_interval_s` as the polling
floor and default of X subscriptions; underneath, this source refuses to read one
account or search again within 3/4 of that, answering such a poll from memory
(nothing new, try again in N seconds) without a request.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from bot.clock import Clock
from bot.errors import Outcome, UpstreamError, UserError
from bot.model import FetchResult, Target, TargetKind
from plugins.x.api import Answer, XApi, problem_detail
from plugins.x.config import XSettings
from plugins.x.convert import (
    EXPANSIONS,
    MEDIA_FIELDS,
    TWEET_FIELDS,
    USER_FIELDS,
    is_tweet_id,
    is_username,
    snowflake_time,
    to_posts,
)

PROFILE_HOSTS = frozenset(
    {"x.com", "www.x.com", "twitter.com", "www.twitter.com", "mobile.twitter.com", "mobile.x.com"}
)
# First path segments on x.com that are pages, not accounts.
RESERVED_PATHS = frozenset(
    {"home", "explore", "search", "i", "settings", "messages", "notifications", "compose", "intent"}
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
USER_TIMELINE = "GET /2/users/:id/tweets"
RECENT_SEARCH = "GET /2/tweets/search/recent"
USER_LOOKUP = "GET /2/users/by/username/:username"
SEARCH_REACH = timedelta(days=6, hours=23)
log = logging.getLogger(__name__)


def parse_account(query: str) -> str:
    """`@name`, `name` or a profile URL (x.com, twitter.com) → the bare username."""
    text = query.strip().strip("<>")
    if "://" in text or text.lower().startswith(tuple(f"{h}/" for h in PROFILE_HOSTS)):
        parts = urlsplit(text if "://" in text else f"https://{text}")
        if (parts.hostname or "").lower() not in PROFILE_HOSTS:
            raise UserError(f"{text!r} is not an X profile; give @name or https://x.com/name")
        segments = [s for s in parts.path.split("/") if s]
        if not segments or segments[0].lower() in RESERVED_PATHS:
            raise UserError("that X address is not a profile; give one like https://x.com/name")
        text = segments[0]
    name = text.removeprefix("@")
    if not is_username(name):
        raise UserError(
            f"{query.strip()!r} is not an X username (1-15 letters, digits or _); "
            "give @name or https://x.com/name"
        )
    return name


class Spacing:
    """A guard under the core's polling floor: no resource is read again within
    three quarters of `min_interval_s` (the slack lets the scheduler's jitter through),
    whatever asks for it (a restart, a rescheduled poll, a second subscription)."""

    TOLERANCE = 0.75

    def __init__(self, clock: Clock, min_interval_s: float) -> None:
        self._clock = clock
        self._min = min_interval_s * self.TOLERANCE
        self._last: dict[str, float] = {}

    def wait_s(self, key: str) -> float:
        last = self._last.get(key)
        if last is None:
            return 0.0
        return max(0.0, last + self._min - self._clock.monotonic())

    def mark(self, key: str) -> None:
        self._last[key] = self._clock.monotonic()


class XSource:
    def __init__(self, network: str, api: XApi, settings: XSettings, clock: Clock) -> None:
        self._network = network
        self._api = api
        self._settings = settings
        self.spacing = Spacing(clock, settings.min_interval_s)
        self._clock = clock
        self._usernames: dict[str, str] = {}  # user id → @name, for posts X sends without one

    async def resolve(self, kind: TargetKind, query: str) -> Target:
        if kind is TargetKind.SEARCH:
            return self._search_target(query)
        username = parse_account(query)
        try:
            answer = await self._api.request(
                "GET",
                USER_LOOKUP,
                f"/2/users/by/username/{username}",
                credential=self._api.read_credential(),
                params={"user.fields": "name,username,profile_image_url,protected"},
            )
        except UpstreamError as err:
            raise UserError(f"could not look up @{username} on X: {err}") from None
        user = answer.body.get("data")
        if not isinstance(user, dict) or not is_tweet_id(str(user.get("id", ""))):
            detail = problem_detail(answer.body) or f"X knows no account @{username}."
            if "suspended" in detail.lower():
                raise UserError(f"@{username} cannot be followed — X says: {detail}")
            raise UserError(f"X says: {detail} Check the spelling of @{username}.")
        found = str(user.get("username") or username)
        if user.get("protected") is True:
            raise UserError(f"@{found}'s posts are protected; Starling relays only public accounts")
        self._usernames[str(user["id"])] = found
        return Target(self._network, TargetKind.ACCOUNT, str(user["id"]), f"@{found}")

    def _search_target(self, query: str) -> Target:
        text = " ".join(query.split())
        if not text:
            raise UserError("give a search query, e.g. /search x python release")
        if _CONTROL.search(query.replace("\n", " ").replace("\t", " ")):
            raise UserError("the search query contains control characters; type it plainly")
        limit = self._settings.max_query_length
        if len(text) > limit:
            raise UserError(
                f"X search queries may be at most {limit} characters; this one has {len(text)}"
            )
        return Target(self._network, TargetKind.SEARCH, text, text)

    async def fetch(self, target: Target, cursor: str | None) -> FetchResult:
        key = target.resource_key
        if cursor is not None:
            wait = self.spacing.wait_s(key)
            if wait > 0:
                return FetchResult([], cursor, not_modified=True, retry_after_s=wait)
        params = {
            "tweet.fields": TWEET_FIELDS,
            "expansions": EXPANSIONS,
            "user.fields": USER_FIELDS,
            "media.fields": MEDIA_FIELDS,
            "max_results": str(
                self._settings.max_results
                if cursor is not None
                else self._settings.first_fetch_results
            ),
        }
        since = bool(cursor) and not (
            target.kind is TargetKind.SEARCH and self._too_old(cursor or "")
        )
        if since and cursor:
            params["since_id"] = cursor
        credential = self._api.read_credential()
        if target.kind is TargetKind.SEARCH:
            params["query"] = target.key
            endpoint, path, fallback = RECENT_SEARCH, "/2/tweets/search/recent", ""
            page_param = "next_token"
        else:
            if not is_tweet_id(target.key):
                raise UpstreamError(Outcome.PARSE, f"{target.key!r} is not an X user id")
            fallback = self._usernames.get(target.key) or target.display.removeprefix("@")
            endpoint, path = USER_TIMELINE, f"/2/users/{target.key}/tweets"
            page_param = "pagination_token"
        self.spacing.mark(key)
        try:
            answer = await self._api.request(
                "GET", endpoint, path, credential=credential, params=params
            )
        except UpstreamError as err:
            if err.outcome is Outcome.SKIPPED and cursor is not None:
                # The read cap is spent: a neutral "nothing new" until it resets.
                return FetchResult([], cursor, not_modified=True, retry_after_s=err.retry_after_s)
            raise
        if since:
            # Only between two polls: more than one page arrived since the cursor.
            answer = await self._more_pages(answer, endpoint, path, params, page_param, target)
        result = self._result(answer, cursor, fallback)
        await self._api.budget.add_posts(len(answer.body.get("data") or []))
        return result

    async def _more_pages(
        self,
        first: Answer,
        endpoint: str,
        path: str,
        params: dict[str, str],
        page_param: str,
        target: Target,
    ) -> Answer:
        """Follow `meta.next_token` up to `max_pages` requests, all counted as reads.

        X answers newest first, so a poll cut short (page cap, read cap, rate limit)
        keeps what it has paid for and skips the oldest of the burst; that is logged.
        """
        body = first.body
        data: list[Any] = list(body.get("data") or [])
        includes: dict[str, list[Any]] = _includes_of(body)
        token = _next_token(body)
        pages = 1
        while token and pages < self._settings.max_pages:
            try:
                more = await self._api.request(
                    "GET",
                    endpoint,
                    path,
                    credential=self._api.read_credential(),
                    params=params | {page_param: token},
                )
            except UpstreamError as err:
                if err.outcome not in (Outcome.SKIPPED, Outcome.RATE_LIMITED):
                    raise  # the cursor stays; the next poll reads the whole burst again
                log.warning("x: %s: stopped paging after %d pages: %s", target.key, pages, err)
                return _merged(body, data, includes)
            pages += 1
            page = more.body.get("data")
            if isinstance(page, list):
                data += page
            for name, items in _includes_of(more.body).items():
                includes.setdefault(name, []).extend(items)
            token = _next_token(more.body)
        if token:
            log.warning(
                "x: %s: more than %d pages of posts since the last poll; the oldest are skipped "
                "(raise max_pages or poll more often)",
                target.key,
                self._settings.max_pages,
            )
        return _merged(body, data, includes) if pages > 1 else first

    def _too_old(self, cursor: str) -> bool:
        """Recent search refuses a `since_id` older than its 7-day reach: then ask without one
        (the core's dedupe drops what was already relayed)."""
        minted = snowflake_time(cursor)
        return minted is not None and self._clock.now() - minted > SEARCH_REACH

    def _result(self, answer: Answer, cursor: str | None, fallback: str) -> FetchResult:
        body = answer.body
        data = body.get("data")
        if data is None and body.get("errors"):
            # 200 with only errors: the account was suspended or deleted since /follow.
            raise UpstreamError(
                Outcome.HTTP_4XX, problem_detail(body) or "X returned errors only", status=200
            )
        if data is not None and not isinstance(data, list):
            raise UpstreamError(Outcome.PARSE, "X sent a timeline that is not a list")
        posts = to_posts(body, self._network, fallback)
        return FetchResult(posts, _newest(body, data or [], cursor))


def _next_token(body: dict[str, Any]) -> str:
    meta = body.get("meta")
    token = meta.get("next_token") if isinstance(meta, dict) else None
    return token if isinstance(token, str) and token else ""


def _includes_of(body: dict[str, Any]) -> dict[str, list[Any]]:
    includes = body.get("includes")
    if not isinstance(includes, dict):
        return {}
    return {k: list(v) for k, v in includes.items() if isinstance(v, list)}


def _merged(first: dict[str, Any], data: list[Any], includes: dict[str, list[Any]]) -> Answer:
    """Several pages as one answer: all posts, all expansions; `meta` of the first
    (its `newest_id` is the newest of the whole burst)."""
    body = dict(first)
    if data:
        body["data"] = data
    if includes:
        body["includes"] = includes
    return Answer(200, body)


def _newest(body: dict[str, Any], data: list[Any], cursor: str | None) -> str:
    """The largest post id seen, compared as numbers (ids grow with time)."""
    ids = [str(t.get("id")) for t in data if isinstance(t, dict) and is_tweet_id(str(t.get("id")))]
    meta = body.get("meta")
    if isinstance(meta, dict) and is_tweet_id(str(meta.get("newest_id", ""))):
        ids.append(str(meta["newest_id"]))
    if cursor and is_tweet_id(cursor):
        ids.append(cursor)
    return max(ids, key=int) if ids else ""
