"""Slack chat plugin: slash commands in through Bolt, relayed posts out as Block Kit.

See docs/slack.md for setup (the app manifest, tokens, scopes) and every option.
"""

from __future__ import annotations

from bot.protocols import PluginContext
from plugins.slack.chat import SlackChat
from plugins.slack.config import SlackSettings, load_settings
from plugins.slack.oauth import SlackOAuthChat


def create(ctx: PluginContext) -> SlackChat:
    settings = load_settings(ctx.config, ctx.name)
    if settings.oauth:  # one process, every workspace that installed it
        return SlackOAuthChat(settings, ctx.health, ctx.clock, name=ctx.name)
    return SlackChat(settings, ctx.health, ctx.clock, name=ctx.name)


__all__ = ["SlackChat", "SlackOAuthChat", "SlackSettings", "create"]
