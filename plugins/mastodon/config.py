"""The `[mastodon]` config table: which instance, which token, how hard to poll."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from bot import __version__
from bot.config import PluginSettings
from plugins.mastodon.instances import domain_of, normalise_base_url, normalise_domain


class MastodonSettings(PluginSettings):
    """Every option has a default that works against mastodon.social without a token."""

    instance: str = "https://mastodon.social"
    token: SecretStr | None = None
    tokens: dict[str, SecretStr] = Field(default_factory=dict)
    streaming_url: str = ""
    instances: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=15.0, gt=0)
    max_bytes: int = Field(default=5_000_000, ge=10_000)
    page_limit: int = Field(default=40, ge=1, le=40)
    max_pages: int = Field(default=5, ge=1, le=50)
    rate_limit_reserve: int = Field(default=5, ge=0)
    stream: bool = True
    account_stream: Literal["public:local", "user", "off"] = "public:local"
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=300.0, gt=0)
    show_private: bool = False
    user_agent: str = f"Starling/{__version__} (Mastodon relay for team chat)"

    @field_validator("instance")
    @classmethod
    def _instance_url(cls, value: str) -> str:
        return normalise_base_url(value)

    @field_validator("streaming_url")
    @classmethod
    def _streaming_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("ws://", "wss://", "http://", "https://")):
            raise ValueError("use a ws://, wss://, http:// or https:// URL")
        return value

    @field_validator("token", mode="before")
    @classmethod
    def _blank_token(cls, value: Any) -> Any:
        # An empty env var or secret file means "no token", not an empty bearer.
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("instances", mode="before")
    @classmethod
    def _instances_from_text(cls, value: Any) -> Any:
        """Env vars are strings: accept JSON (`{"a.social": "http://…"}`) or `a=url,b=url`."""
        return _pairs(value, "domain=https://base-url")

    @field_validator("tokens", mode="before")
    @classmethod
    def _tokens_from_text(cls, value: Any) -> Any:
        """`STARLING_MASTODON__TOKENS`: JSON (`{"gts.example": "…"}`) or `a.social=tok,b=tok`."""
        pairs = _pairs(value, "domain=token")
        if isinstance(pairs, dict):
            # A blank token means "none for that server", like a blank `token`.
            return {d: t for d, t in pairs.items() if not (isinstance(t, str) and not t.strip())}
        return pairs

    @field_validator("tokens")
    @classmethod
    def _normalise_tokens(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        return {
            normalise_domain(d): SecretStr(t.get_secret_value().strip()) for d, t in value.items()
        }

    @field_validator("instances")
    @classmethod
    def _normalise_instances(cls, value: dict[str, str]) -> dict[str, str]:
        return {normalise_domain(d): normalise_base_url(u) for d, u in value.items()}

    def token_map(self) -> dict[str, str]:
        """Domain → access token: `tokens`, with `token` for the default instance on top."""
        found = {d: t.get_secret_value() for d, t in self.tokens.items()}
        if self.token is not None:
            found[domain_of(self.instance)] = self.token.get_secret_value()
        return found


def _pairs(value: Any, shape: str) -> Any:
    """A mapping given as text (an env var or secret file): JSON or `key=value,key=value`."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not valid JSON ({err.msg})") from None
    pairs: dict[str, str] = {}
    for part in text.split(","):
        key, sep, item = part.partition("=")
        if not sep:
            raise ValueError(f"write it as {shape}, separated by commas")
        pairs[key.strip()] = item.strip()
    return pairs
