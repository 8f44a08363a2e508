"""X (API v2) network: follow accounts and recent searches, and post as the team's account.

Reads are billed by X, so this plugin counts them against a daily cap, spaces out
fetches of the same account or search (`min_interval_s`), stops before the rate
limit is used up, and asks for everything new since the last post id in one request.
`status_lines()` tells `/status` what reading has cost today.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bot.clock import Clock
from bot.config import parse_plugin_config
from bot.protocols import PluginContext, Publisher, Source
from plugins.x.api import XApi
from plugins.x.config import XSettings
from plugins.x.publish import Journal, XPublisher
from plugins.x.source import XSource
from plugins.x.usage import ReadBudget, next_midnight_text

__all__ = ["XNetwork", "XSettings", "create"]


def create(ctx: PluginContext) -> XNetwork:
    settings = parse_plugin_config(XSettings, dict(ctx.config), ctx.name)
    data_dir = Path(ctx.data_dir)
    legacy = data_dir / f"{ctx.name}-reads.json"  # where releases before 0008 kept the count
    budget = ReadBudget(settings.max_reads_per_day, ctx.clock, ctx.state, legacy)
    api = XApi(settings, network=ctx.name, health=ctx.health, clock=ctx.clock, budget=budget)
    journal = Journal(ctx.state, data_dir / f"{ctx.name}-posts.json")  # imported once
    return XNetwork(ctx.name, settings, api, ctx.clock, journal)


class XNetwork:
    aliases = ("twitter",)
    description = "X (formerly Twitter), API v2"

    def __init__(
        self, name: str, settings: XSettings, api: XApi, clock: Clock, journal: Journal
    ) -> None:
        self.name = name
        self.settings = settings
        # Honoured by /follow and /search: X subscriptions poll gently by default.
        self.default_interval_s = settings.min_interval_s
        self.min_interval_s = settings.min_interval_s
        self.api = api
        self._clock = clock
        self.x_source = XSource(name, api, settings, clock)
        self.source: Source | None = self.x_source
        account = "OAuth 1.0a user" if settings.has_oauth1 else "OAuth 2.0 user token"
        self.publisher: Publisher | None = (
            XPublisher(api, clock, journal, account=account) if settings.can_post else None
        )

    async def refresh_status(self) -> None:
        """Today's read count from the store, so `/status` has it before the first read."""
        if self.settings.can_read:
            await self.api.budget.load()

    def status_lines(self) -> list[str]:
        """What reading X has cost today and what holds it back, for `/status`."""
        if not self.settings.can_read:
            return [f"{self.name}: not configured; set STARLING_X__BEARER_TOKEN to read X"]
        budget = self.api.budget
        lines = [
            f"{self.name}: {budget.reads} of {budget.cap} daily reads used, "
            f"{budget.posts} posts received today (UTC)"
            if budget.loaded
            else f"{self.name}: no reads since the start yet (daily cap {budget.cap})"
        ]
        if budget.exhausted:
            lines.append(
                f"{self.name}: daily read cap reached; no reads until "
                f"{next_midnight_text(self._clock)}"
            )
        for endpoint, until in self.api.limits.blocked(self.api.now()).items():
            when = datetime.fromtimestamp(until, UTC).strftime("%H:%M UTC")
            lines.append(f"{self.name}: rate limit of {endpoint} used up until {when}")
        minutes = self.settings.min_interval_s / 60
        lines.append(f"{self.name}: each account or search is read at most every {minutes:g} min")
        if self.settings.has_oauth1:
            lines.append(f"{self.name}: posting as the user of the OAuth 1.0a keys")
        elif self.settings.user_token is not None:
            lines.append(f"{self.name}: posting with an OAuth 2.0 user token")
        return lines

    async def aclose(self) -> None:
        await self.api.aclose()
