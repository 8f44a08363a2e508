"""Slack user groups for `group:` approval entries: looked up against the local Slack,
one call per group per cache period, and "not a member" whenever Slack cannot say."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot.errors import Outcome
from plugins.slack.api import SlackApi
from plugins.slack.usergroups import CACHE_S, RETRY_S, UserGroups
from tests.fakes.slack_server import BOT_TOKEN, FakeSlack


class StepClock:
    """A clock whose monotonic time only moves when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class NoHealth:
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
        pass


def lookups(slack: FakeSlack) -> list[str]:
    return [str(a.get("usergroup")) for m, a in slack.calls if m == "usergroups.users.list"]


async def test_groups_are_cached_per_period_and_unknown_or_failing_ones_match_nobody() -> None:
    async with FakeSlack() as slack:
        slack.usergroups.update({"S1": ["U1", "U2"], "S2": ["U2"]})
        clock = StepClock()
        groups = UserGroups(SlackApi(BOT_TOKEN, slack.api_url, 5.0, NoHealth()), clock)
        assert await groups.of("U1") == frozenset()  # nothing named: no call at all
        assert lookups(slack) == []

        groups.watch(frozenset({"S1", "S2", "S9"}))
        assert await groups.of("U2") == {"S1", "S2"}
        assert await asyncio.gather(groups.of("U1"), groups.of("U3")) == [{"S1"}, set()]
        assert sorted(lookups(slack)) == ["S1", "S2", "S9"]  # S9: no_such_subteam, cached too

        slack.usergroups["S2"].append("U1")
        clock.t += CACHE_S - 1
        assert await groups.of("U1") == {"S1"}, "still the cached answer"
        clock.t += 2
        assert await groups.of("U1") == {"S1", "S2"}, "a change shows after the period"
        assert len(lookups(slack)) == 6

        slack.fail("usergroups.users.list", "", status=503, times=3)
        clock.t += CACHE_S + 1
        assert await groups.of("U1") == frozenset(), "Slack failing: not a member"
        clock.t += RETRY_S + 1
        assert await groups.of("U1") == {"S1", "S2"}, "a passing failure is asked again soon"
        assert len(lookups(slack)) == 12
