"""The `[discord]` options, and the invite URL they imply."""

from __future__ import annotations

from typing import Any

import discord
from pydantic import Field, SecretStr, field_validator

from bot.config import PluginSettings
from plugins.discord.transport import DEFAULT_API_URL

SCOPES = ("bot", "applications.commands")


class DiscordSettings(PluginSettings):
    """Every option has a default except the bot token, which is a secret."""

    token: SecretStr = SecretStr("")
    api_url: str = DEFAULT_API_URL
    gateway_url: str = ""
    guild_ids: list[int] = Field(default_factory=list)
    manage_permission: str = "manage_channels"
    use_webhooks: bool = False
    min_interval_s: float = Field(default=1.0, ge=0.0)
    max_rate_per_s: float = Field(default=48.0, gt=0.0, le=50.0)
    history_scan: int = Field(default=50, ge=1, le=100)
    request_timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("token")
    @classmethod
    def _token_given(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError(
                "the bot token is missing; set STARLING_DISCORD__TOKEN or a secret file "
                "discord__token (Developer Portal → your app → Bot → Reset Token)"
            )
        return SecretStr(value.get_secret_value().strip())

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("give an http(s) URL such as https://discord.com/api/v10")
        return value.rstrip("/")

    @field_validator("gateway_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if value and not value.startswith(("wss://", "ws://")):
            raise ValueError("give a ws(s) URL such as wss://gateway.discord.gg, or leave it empty")
        return value

    @field_validator("guild_ids", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("manage_permission")
    @classmethod
    def _known_permission(cls, value: str) -> str:
        name = value.strip().lower().replace(" ", "_")
        if name not in discord.Permissions.VALID_FLAGS:
            raise ValueError(
                f"{value!r} is not a Discord permission; use a name such as manage_channels, "
                "manage_guild or manage_webhooks"
            )
        return name

    def member_permission(self) -> discord.Permissions:
        """What a member needs to change subscriptions (Discord enforces it)."""
        return discord.Permissions(**{self.manage_permission: True})


def bot_permissions(*, use_webhooks: bool) -> discord.Permissions:
    """What Starling itself needs in a channel to relay posts there."""
    wanted = discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,
        embed_links=True,
        read_message_history=True,
    )
    if use_webhooks:
        wanted.manage_webhooks = True
    return wanted


def invite_url(application_id: int, *, use_webhooks: bool) -> str:
    """The link a server admin opens to add Starling with the right scopes and permissions."""
    return discord.utils.oauth_url(
        application_id,
        permissions=bot_permissions(use_webhooks=use_webhooks),
        scopes=SCOPES,
    )
