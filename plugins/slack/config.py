"""The `[slack]` options: tokens from env or secret files, every URL configurable.

Besides `STARLING_SLACK__BOT_TOKEN` and friends, the names Slack's own tools use
(`SLACK_BOT_TOKEN`, `SLACK_APP_TOKEN`, `SLACK_SIGNING_SECRET`) are read as a
fallback, so an app set up by Slack's guides works without renaming anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from bot.config import ConfigError, PluginSettings, parse_plugin_config

DEFAULT_API_URL = "https://slack.com/api/"
_COMMAND = re.compile(r"^/[a-z0-9_\-]{1,31}$")
# Conventional names from Slack's tooling, used only when Starling's own are unset.
FALLBACK_ENV = {
    "bot_token": "SLACK_BOT_TOKEN",
    "app_token": "SLACK_APP_TOKEN",
    "signing_secret": "SLACK_SIGNING_SECRET",
}


class SlackSettings(PluginSettings):
    mode: Literal["socket", "http"] = "socket"
    bot_token: SecretStr = SecretStr("")
    app_token: SecretStr = SecretStr("")
    signing_secret: SecretStr = SecretStr("")
    command: str = "/starling"
    api_url: str = DEFAULT_API_URL
    http_host: str = "0.0.0.0"  # noqa: S104 - HTTP mode exists to be reached by Slack
    http_port: int = Field(default=3000, ge=0, le=65535)
    http_path: str = "/slack/events"
    min_interval_s: float = Field(default=1.0, ge=0.0)
    timeout_s: float = Field(default=10.0, gt=0.0)
    history_window_s: float = Field(default=172_800.0, gt=0.0)
    history_max_messages: int = Field(default=1000, ge=1, le=10_000)

    @field_validator("command")
    @classmethod
    def _slash_command(cls, value: str) -> str:
        value = value.strip().lower()
        if not value.startswith("/"):
            value = "/" + value
        if not _COMMAND.match(value):
            raise ValueError("use a slash command name like /starling (letters, digits, - and _)")
        return value

    @field_validator("api_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("https://", "http://")):
            raise ValueError("use an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("http_path")
    @classmethod
    def _path(cls, value: str) -> str:
        return value if value.startswith("/") else "/" + value


def load_settings(raw: Mapping[str, Any], plugin: str = "slack") -> SlackSettings:
    """Validate the table, fill tokens from Slack's env names, check what the mode needs."""
    merged = dict(raw)
    for option, env in FALLBACK_ENV.items():
        if not merged.get(option) and os.environ.get(env):
            merged[option] = os.environ[env]
    settings = parse_plugin_config(SlackSettings, merged, plugin)
    if not settings.enabled:
        return settings
    bot = settings.bot_token.get_secret_value()
    if not bot:
        raise ConfigError(
            f"[{plugin}] bot_token is required: set STARLING_SLACK__BOT_TOKEN (or SLACK_BOT_TOKEN) "
            "to the Bot User OAuth Token (xoxb-…)"
        )
    if settings.mode == "socket":
        app = settings.app_token.get_secret_value()
        if not app:
            raise ConfigError(
                f"[{plugin}] app_token is required in socket mode: set STARLING_SLACK__APP_TOKEN "
                "(or SLACK_APP_TOKEN) to an app-level token (xapp-…) with connections:write"
            )
        if not app.startswith("xapp-"):
            raise ConfigError(
                f"[{plugin}] app_token must be an app-level token starting with xapp-, "
                "not a bot or user token"
            )
    elif not settings.signing_secret.get_secret_value():
        raise ConfigError(
            f"[{plugin}] signing_secret is required in http mode: set "
            "STARLING_SLACK__SIGNING_SECRET (or SLACK_SIGNING_SECRET) from Basic Information"
        )
    return settings
