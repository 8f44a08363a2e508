"""The `[slack]` options: tokens from env or secret files, every URL configurable.

Besides `STARLING_SLACK__BOT_TOKEN` and friends, the names Slack's own tools use
(`SLACK_BOT_TOKEN`, `SLACK_APP_TOKEN`, `SLACK_SIGNING_SECRET`, `SLACK_CLIENT_ID`,
`SLACK_CLIENT_SECRET`) are read as a fallback, so an app set up by Slack's guides
works without renaming anything.

Setting `client_id` turns on multi-workspace OAuth (HTTP mode only): each
workspace installs Starling through `/slack/install` and its bot token is kept
in Starling's database instead of `bot_token`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator

from bot.config import ConfigError, PluginSettings, parse_plugin_config

DEFAULT_API_URL = "https://slack.com/api/"
_COMMAND = re.compile(r"^/[a-z0-9_\-]{1,31}$")
# Conventional names from Slack's tooling, used only when Starling's own are unset.
FALLBACK_ENV = {
    "bot_token": "SLACK_BOT_TOKEN",
    "app_token": "SLACK_APP_TOKEN",
    "signing_secret": "SLACK_SIGNING_SECRET",
    "client_id": "SLACK_CLIENT_ID",
    "client_secret": "SLACK_CLIENT_SECRET",
}
# What the manifest asks for; an OAuth install requests the same bot scopes.
DEFAULT_SCOPES = (
    "chat:write",
    "commands",
    "channels:history",
    "groups:history",
    "usergroups:read",
)
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"


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
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    redirect_url: str = ""
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCOPES))

    @property
    def oauth(self) -> bool:
        """Multi-workspace: tokens come from installations, not `bot_token`."""
        return bool(self.client_id)

    @property
    def redirect_path(self) -> str:
        """Where Slack sends the browser back; the path of `redirect_url` when set."""
        path = urlsplit(self.redirect_url).path if self.redirect_url else ""
        return path or REDIRECT_PATH

    @property
    def authorize_url(self) -> str:
        """Slack's consent page, beside the Web API (`…/api/` → `…/oauth/v2/authorize`)."""
        scheme, netloc, path, _, _ = urlsplit(self.api_url)
        base = path.rstrip("/").removesuffix("/api")
        return urlunsplit((scheme, netloc, f"{base}/oauth/v2/authorize", "", ""))

    @field_validator("scopes", mode="before")
    @classmethod
    def _scope_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("redirect_url")
    @classmethod
    def _redirect(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("use the full https:// URL registered under OAuth & Permissions")
        return value

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
    if settings.oauth:
        return _check_oauth(settings, plugin)
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


def _check_oauth(settings: SlackSettings, plugin: str) -> SlackSettings:
    """OAuth needs HTTP mode (Slack must reach the redirect), the secret and signing."""
    if settings.mode != "http":
        raise ConfigError(
            f'[{plugin}] client_id (multi-workspace OAuth) needs mode = "http": Slack sends '
            "installs and events to Starling's public URL"
        )
    if not settings.client_secret.get_secret_value():
        raise ConfigError(
            f"[{plugin}] client_secret is required with client_id: set "
            "STARLING_SLACK__CLIENT_SECRET (or SLACK_CLIENT_SECRET) from Basic Information"
        )
    if not settings.signing_secret.get_secret_value():
        raise ConfigError(
            f"[{plugin}] signing_secret is required in http mode: set "
            "STARLING_SLACK__SIGNING_SECRET (or SLACK_SIGNING_SECRET) from Basic Information"
        )
    if not settings.scopes:
        raise ConfigError(f"[{plugin}] scopes must name at least one bot scope, e.g. chat:write")
    return settings
