"""The `[nostr]` config table.

Options arrive from TOML as typed values but from the environment as raw strings,
so `relays` accepts a TOML list, a JSON list or a comma-separated string alike.
The secret key is a `SecretStr`: it never appears in a repr, a log or an error.
"""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from bot.config import PluginSettings
from plugins.nostr.keys import InvalidKey, parse_secret_key

EVENT_FIELDS = frozenset({"id", "note", "nevent", "npub"})
PROFILE_FIELDS = frozenset({"npub", "pubkey"})


def _check_template(value: str, allowed: frozenset[str]) -> str:
    names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    unknown = names - allowed
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{sorted(unknown)[0]}}}; use {', '.join(sorted(allowed))}"
        )
    if not value.startswith(("https://", "http://")):
        raise ValueError("must start with https:// or http://")
    return value


class NostrSettings(PluginSettings):
    relays: list[str] = Field(default_factory=list)
    secret_key: SecretStr | None = None
    web_url: str = "https://njump.me/{nevent}"
    profile_url: str = "https://njump.me/{npub}"
    timeout_s: float = Field(default=10.0, gt=0)
    fetch_limit: int = Field(default=50, ge=1, le=500)
    since_overlap_s: int = Field(default=60, ge=0, le=86400)
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=120.0, gt=0)
    subscriptions_per_connection: int = Field(default=16, ge=1, le=100)
    authors_per_filter: int = Field(default=250, ge=1, le=5000)
    fetch_batch_window_s: float = Field(default=0.5, ge=0, le=30)
    max_message_bytes: int = Field(default=1_000_000, ge=10_000)

    @field_validator("relays", mode="before")
    @classmethod
    def _relay_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    raise ValueError("is not a valid JSON list of relay URLs") from None
            return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
        return value

    @field_validator("relays")
    @classmethod
    def _relay_urls(cls, value: list[str]) -> list[str]:
        seen: list[str] = []
        for url in value:
            parts = urlsplit(url.strip())
            if parts.scheme not in ("ws", "wss") or not parts.hostname:
                raise ValueError(
                    f"{url!r} is not a relay URL; write it like wss://relay.example.com"
                )
            if parts.username or parts.password:
                raise ValueError(f"{url!r}: relay URLs must not contain a user name or password")
            normal = url.strip()
            if normal not in seen:
                seen.append(normal)
        return seen

    @field_validator("secret_key")
    @classmethod
    def _valid_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        try:
            parse_secret_key(value.get_secret_value())
        except InvalidKey as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("web_url")
    @classmethod
    def _web_template(cls, value: str) -> str:
        return _check_template(value, EVENT_FIELDS)

    @field_validator("profile_url")
    @classmethod
    def _profile_template(cls, value: str) -> str:
        return _check_template(value, PROFILE_FIELDS)
