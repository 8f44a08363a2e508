"""Discord chat: posts arrive as embeds (optionally under the author's name via a
webhook); members use Starling's slash commands as Discord application commands.

See docs/discord.md for setup, every option and the known limits.
"""

from __future__ import annotations

from bot.config import parse_plugin_config
from bot.protocols import PluginContext
from plugins.discord.chat import DiscordChat
from plugins.discord.settings import DiscordSettings

__all__ = ["DiscordChat", "DiscordSettings", "create"]


def create(ctx: PluginContext) -> DiscordChat:
    settings = parse_plugin_config(DiscordSettings, dict(ctx.config), ctx.name)
    return DiscordChat(settings, ctx.health)
