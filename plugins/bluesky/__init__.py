"""Bluesky (AT Protocol) network: follow accounts and searches, stream, and post back.

Reads go to the public AppView (`appview`), real time comes from Jetstream
(`jetstream`, several hosts, rotated on failure), and everything that needs an
account (search, posting, deleting) goes to the account's PDS or entryway
(`service`) with one cached session. Every base URL is configurable, which is
how the tests point the plugin at a local Bluesky network.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from pydantic import Field, field_validator

from bot import __version__
from bot.config import PluginSettings, parse_plugin_config
from bot.protocols import PluginContext, Publisher, Source
from plugins.bluesky.convert import Links
from plugins.bluesky.jetstream import JetstreamOptions
from plugins.bluesky.linkcard import PageReader
from plugins.bluesky.publisher import BlueskyPublisher
from plugins.bluesky.session import Sessions
from plugins.bluesky.source import BlueskySource
from plugins.bluesky.xrpc import Xrpc

PUBLIC_JETSTREAMS = (
    "wss://jetstream1.us-east.bsky.network",
    "wss://jetstream2.us-east.bsky.network",
    "wss://jetstream1.us-west.bsky.network",
    "wss://jetstream2.us-west.bsky.network",
)
SESSION_FILE = "bluesky-session.json"  # where releases before 0008 kept the session


class BlueskySettings(PluginSettings):
    service: str = "https://bsky.social"
    appview: str = "https://public.api.bsky.app"
    jetstream: list[str] = Field(default_factory=lambda: list(PUBLIC_JETSTREAMS))
    handle: str = ""
    app_password: str = Field(default="", repr=False)
    web_url: str = "https://bsky.app"
    image_cdn: str = "https://cdn.bsky.app"
    timeout_s: float = Field(default=20.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    stream: bool = True
    stream_ping_s: float = Field(default=20.0, gt=0)
    stream_rewind_s: float = Field(default=5.0, ge=0)
    stream_reconnect_max_s: float = Field(default=60.0, ge=0)
    stream_checkpoint_s: float = Field(default=300.0, gt=0)
    page_size: int = Field(default=50, ge=1, le=100)
    max_pages: int = Field(default=3, ge=1, le=20)
    persist_session: bool = True
    link_cards: bool = True
    user_agent: str = f"Starling/{__version__} (relay for team chat)"

    @field_validator("jetstream", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("service", "appview", "web_url", "image_cdn")
    @classmethod
    def _http_base(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// base URL")
        return value.rstrip("/")

    @field_validator("jetstream")
    @classmethod
    def _ws_bases(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one Jetstream URL")
        for url in value:
            if not url.startswith(("wss://", "ws://")):
                raise ValueError(f"{url!r} must be a ws:// or wss:// URL")
        return [url.rstrip("/") for url in value]


def create(ctx: PluginContext) -> BlueskyNetwork:
    settings = parse_plugin_config(BlueskySettings, dict(ctx.config), ctx.name)
    return BlueskyNetwork(ctx, settings)


class BlueskyNetwork:
    aliases = ("bsky", "atproto")
    description = "Bluesky (AT Protocol): accounts, searches, real time via Jetstream"

    def __init__(self, ctx: PluginContext, settings: BlueskySettings) -> None:
        self.name = ctx.name
        self.settings = settings
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            headers={"user-agent": settings.user_agent, "accept": "application/json"},
            follow_redirects=False,
            trust_env=False,
        )
        appview = Xrpc(self.client, settings.appview, network=ctx.name, health=ctx.health)
        service = Xrpc(self.client, settings.service, network=ctx.name, health=ctx.health)
        self.sessions = Sessions(
            service,
            settings.handle,
            settings.app_password,
            state=ctx.state if settings.persist_session else None,
            legacy_path=Path(ctx.data_dir) / SESSION_FILE,  # imported once, then renamed
        )
        links = Links(settings.web_url, settings.image_cdn)
        self.bluesky = BlueskySource(
            ctx.name,
            appview=appview,
            service=service,
            sessions=self.sessions,
            links=links,
            clock=ctx.clock,
            page_size=settings.page_size,
            max_pages=settings.max_pages,
            health=ctx.health,
            jetstream=JetstreamOptions(
                hosts=tuple(settings.jetstream),
                connect_timeout_s=settings.connect_timeout_s,
                ping_interval_s=settings.stream_ping_s,
                rewind_s=settings.stream_rewind_s,
                reconnect_max_s=settings.stream_reconnect_max_s,
                checkpoint_s=settings.stream_checkpoint_s,
                max_message_bytes=2_000_000,
                user_agent=settings.user_agent,
            ),
        )
        self.source: Source | None = self.bluesky if settings.stream else _PollOnly(self.bluesky)
        # No account, no publisher: /accounts and /post then say Bluesky is not set up.
        self.publisher: Publisher | None = (
            BlueskyPublisher(
                service=service,
                appview=appview,
                sessions=self.sessions,
                web_url=settings.web_url,
                account=f"@{settings.handle.strip().removeprefix('@')}",
                cards=PageReader(
                    allow_private=ctx.allow_private_addresses,
                    user_agent=settings.user_agent,
                    timeout_s=settings.connect_timeout_s,
                )
                if settings.link_cards
                else None,
            )
            if self.sessions.configured
            else None
        )

    def status_lines(self) -> list[str]:
        """Extra /status figures: where the real-time stream is connected."""
        if not self.settings.stream:
            return ["real time: off (polling only)"]
        stream = self.bluesky.jetstream
        where = stream.current_host or "not connected"
        return [f"real time: Jetstream {where} ({stream.connections} connections opened)"]

    async def aclose(self) -> None:
        await self.client.aclose()


class _PollOnly:
    """The source without `stream`, for `stream = false` (polling only)."""

    def __init__(self, inner: BlueskySource) -> None:
        self._inner = inner
        self.resolve = inner.resolve
        self.fetch = inner.fetch
