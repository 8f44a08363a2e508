"""Slack user groups a member belongs to, for `group:<id>` entries in the approval settings.

Slack's command and click payloads name the member but not their user groups, so the
groups the settings name are looked up with `usergroups.users.list` (scope
`usergroups:read`) and cached, at most one call per group per `CACHE_S`. Without the
scope, or for a group Slack does not know, the member counts as not in it: the core
then refuses, which is the safe side.
"""

from __future__ import annotations

import asyncio
import logging

from bot.clock import Clock
from plugins.slack.api import SlackApi, SlackFailure

log = logging.getLogger(__name__)

CACHE_S = 300.0
RETRY_S = 30.0  # a failure that may pass (a timeout, a rate limit) is asked again sooner


class UserGroups:
    """Members of the watched user groups, cached for `CACHE_S`."""

    def __init__(self, api: SlackApi, clock: Clock, cache_s: float = CACHE_S) -> None:
        self._api = api
        self._clock = clock
        self._cache_s = cache_s
        self.watched: frozenset[str] = frozenset()
        self._members: dict[str, tuple[float, frozenset[str]]] = {}  # group → (when, members)
        self._locks: dict[str, asyncio.Lock] = {}
        self._told_scope = False

    def watch(self, groups: frozenset[str]) -> None:
        """The group ids the settings name; no others are ever looked up."""
        self.watched = frozenset(groups)

    async def of(self, user: str) -> frozenset[str]:
        """The watched groups `user` is in (empty when no `group:` entry is configured)."""
        if not self.watched or not user:
            return frozenset()
        groups = sorted(self.watched)
        found = await asyncio.gather(*(self._members_of(g) for g in groups))
        return frozenset(g for g, members in zip(groups, found, strict=True) if user in members)

    async def _members_of(self, group: str) -> frozenset[str]:
        lock = self._locks.setdefault(group, asyncio.Lock())
        async with lock:  # concurrent clicks share one call
            cached = self._members.get(group)
            now = self._clock.monotonic()
            if cached is not None and now - cached[0] < self._cache_s:
                return cached[1]
            members, lasting = await self._fetch(group)
            # A passing failure is remembered for RETRY_S only: backdate it accordingly.
            when = now if lasting else now - max(0.0, self._cache_s - RETRY_S)
            self._members[group] = (when, members)
            return members

    async def _fetch(self, group: str) -> tuple[frozenset[str], bool]:
        """The group's members, and whether the answer holds for the whole cache period."""
        try:
            body = await self._api.call("usergroups.users.list", params={"usergroup": group})
        except SlackFailure as failure:
            if failure.error == "missing_scope":
                if not self._told_scope:
                    self._told_scope = True
                    log.warning(
                        "Slack: the app lacks the usergroups:read scope, so group: entries in "
                        "the approval settings match nobody; add it and reinstall the app"
                    )
            else:
                log.warning("Slack: could not read user group %s: %s", group, failure)
            passing = failure.uncertain or failure.error in ("ratelimited", "timeout")
            return frozenset(), not passing
        return frozenset(str(u) for u in body.get("users") or []), True
