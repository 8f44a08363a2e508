"""Nostr network: follow pubkeys and hashtags on the configured relays, and post notes.

Reads with NIP-01 over websockets (one-shot REQ for polling, long-lived REQ for
streaming), verifies every event's id and BIP-340 signature before relaying it,
and publishes signed kind 1 notes when a secret key is configured. With no
relays configured the plugin loads but every follow answers with how to set
them up.
"""

from __future__ import annotations

from pathlib import Path

from bot.config import ConfigError, parse_plugin_config
from bot.protocols import PluginContext, Publisher, Source
from plugins.nostr.keys import parse_secret_key
from plugins.nostr.pool import EventVerifier, RelayPool
from plugins.nostr.posts import PostBuilder, Profiles
from plugins.nostr.publisher import JOURNAL_FILE, Journal, NostrPublisher
from plugins.nostr.settings import NostrSettings
from plugins.nostr.source import NostrSource

__all__ = ["NostrNetwork", "NostrSettings", "create"]


def create(ctx: PluginContext) -> NostrNetwork:
    settings = parse_plugin_config(NostrSettings, dict(ctx.config), ctx.name)
    if settings.reconnect_max_s < settings.reconnect_min_s:
        raise ConfigError(f"[{ctx.name}] reconnect_max_s must be at least reconnect_min_s")
    pool = RelayPool(
        network=ctx.name,
        relays=settings.relays,
        health=ctx.health,
        timeout_s=settings.timeout_s,
        max_bytes=settings.max_message_bytes,
        verifier=EventVerifier(),
    )
    profiles = Profiles()
    builder = PostBuilder(ctx.name, profiles, settings.web_url, settings.profile_url)
    source = NostrSource(
        network=ctx.name,
        pool=pool,
        builder=builder,
        profiles=profiles,
        clock=ctx.clock,
        settings=settings,
    )
    publisher = None
    if settings.secret_key is not None:
        publisher = NostrPublisher(
            key=parse_secret_key(settings.secret_key.get_secret_value()),
            pool=pool,
            builder=builder,
            journal=Journal(ctx.state, Path(ctx.data_dir) / JOURNAL_FILE),  # imported once
            clock=ctx.clock,
        )
    return NostrNetwork(ctx.name, source, publisher)


class NostrNetwork:
    aliases: tuple[str, ...] = ()
    description = "Nostr: pubkeys and hashtags from your relays"

    def __init__(self, name: str, source: NostrSource, publisher: NostrPublisher | None) -> None:
        self.name = name
        self.source: Source | None = source
        self.publisher: Publisher | None = publisher

    async def aclose(self) -> None:
        """Nothing to release: connections live only inside a fetch, publish or stream."""
