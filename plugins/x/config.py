"""The `[x]` config table: where the API is, which credentials, and how much reading may cost.

X bills reads, so the defaults are deliberately stingy: a daily read cap and a long
minimum spacing between two fetches of the same account or search.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from bot import __version__
from bot.config import PluginSettings

DEFAULT_API_URL = "https://api.x.com"
OAUTH1_FIELDS = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")


class XSettings(PluginSettings):
    """Every option has a default; reading needs `bearer_token`, posting user credentials."""

    api_url: str = DEFAULT_API_URL
    bearer_token: SecretStr | None = None
    consumer_key: SecretStr | None = None
    consumer_secret: SecretStr | None = None
    access_token: SecretStr | None = None
    access_token_secret: SecretStr | None = None
    user_token: SecretStr | None = None
    max_reads_per_day: int = Field(default=500, ge=1)
    min_interval_s: float = Field(default=900.0, ge=0)
    timeout_s: float = Field(default=15.0, gt=0)
    max_results: int = Field(default=100, ge=10, le=100)
    first_fetch_results: int = Field(default=10, ge=10, le=100)
    max_pages: int = Field(default=5, ge=1, le=50)
    max_query_length: int = Field(default=512, ge=1, le=4096)
    user_agent: str = f"Starling/{__version__} (X relay for team chat)"

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("use an http:// or https:// URL such as https://api.x.com")
        if parts.query or parts.fragment or parts.path not in ("", "/"):
            raise ValueError("give only the scheme and host, such as https://api.x.com")
        return value

    @field_validator(
        "bearer_token",
        "consumer_key",
        "consumer_secret",
        "access_token",
        "access_token_secret",
        "user_token",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # An empty env var or secret file means "not set", never an empty credential.
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _oauth1_complete(self) -> XSettings:
        given = [name for name in OAUTH1_FIELDS if getattr(self, name) is not None]
        if given and len(given) < len(OAUTH1_FIELDS):
            missing = ", ".join(name for name in OAUTH1_FIELDS if name not in given)
            raise ValueError(f"OAuth 1.0a needs all four keys; missing: {missing}")
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.api_url).hostname or ""

    @property
    def has_oauth1(self) -> bool:
        return self.consumer_key is not None

    @property
    def can_read(self) -> bool:
        return self.bearer_token is not None or self.can_post

    @property
    def can_post(self) -> bool:
        return self.has_oauth1 or self.user_token is not None
