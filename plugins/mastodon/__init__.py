"""Mastodon network: accounts, hashtags and searches on any server speaking its API.

Works with Mastodon, Pleroma, Akkoma, GoToSocial and Misskey's compatible subset.
REST polling needs no token; a token for the default instance adds post search,
live streaming and posting. Nothing connects until the first follow or stream.
"""

from __future__ import annotations

from bot.config import parse_plugin_config
from bot.protocols import PluginContext, Publisher, Source
from plugins.mastodon.config import MastodonSettings
from plugins.mastodon.publisher import MastodonPublisher
from plugins.mastodon.source import MastodonSource

__all__ = ["MastodonNetwork", "MastodonSettings", "create"]


class MastodonNetwork:
    aliases = ("fediverse",)
    description = "Mastodon and servers speaking its API (Pleroma, Akkoma, GoToSocial)"

    def __init__(self, name: str, source: MastodonSource) -> None:
        self.name = name
        self._source = source
        self.source: Source | None = source
        self.publisher: Publisher | None = (
            MastodonPublisher(source) if source.bearer is not None else None
        )

    def status_lines(self) -> list[str]:
        """Extra /status lines: whether statuses arrive live or only by polling."""
        return self._source.stream_status()

    async def aclose(self) -> None:
        await self._source.aclose()


def create(ctx: PluginContext) -> MastodonNetwork:
    settings = parse_plugin_config(MastodonSettings, dict(ctx.config), ctx.name)
    return MastodonNetwork(ctx.name, MastodonSource(ctx, settings))
