"""The discord.py client Starling runs: guilds intent only, configured URLs, traced requests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import discord
from discord import app_commands

from bot.protocols import HealthRecorder
from plugins.discord.transport import RebasedHTTPClient, health_trace

# discord.py sleeps through a 429 up to this long; a longer wait is raised instead,
# so the outbox defers the message rather than one channel's lane hanging.
MAX_RATELIMIT_WAIT_S = 30.0


class StarlingClient(discord.Client):
    """`discord.Client` with only the non-privileged `guilds` intent and no default pings."""

    def __init__(
        self,
        *,
        api_url: str,
        gateway_url: str,
        health: HealthRecorder,
        network: str,
        setup: Callable[[], Awaitable[None]],
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        trace = health_trace(health, network)
        super().__init__(
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            max_ratelimit_timeout=MAX_RATELIMIT_WAIT_S,
            http_trace=trace,
        )
        self.http = RebasedHTTPClient(
            self.loop,
            api_url=api_url,
            gateway_url=gateway_url,
            http_trace=trace,
            max_ratelimit_timeout=MAX_RATELIMIT_WAIT_S,
        )
        self._connection.http = self.http
        self.tree: app_commands.CommandTree[StarlingClient] = app_commands.CommandTree(self)
        self._setup = setup
        # Button clicks: not application commands, so not the tree's. Modal submits are
        # not forwarded: discord.py hands them to the open `ComposeModal` itself.
        self.component_handler: (
            Callable[[discord.Interaction[discord.Client]], Awaitable[None]] | None
        ) = None

    async def on_interaction(self, interaction: discord.Interaction[discord.Client]) -> None:
        """discord.py's `interaction` event, for every interaction after its own dispatch."""
        if (
            interaction.type is discord.InteractionType.component
            and self.component_handler is not None
        ):
            await self.component_handler(interaction)

    async def setup_hook(self) -> None:
        """Runs once per login, before the gateway connects: register the commands."""
        await self._setup()
