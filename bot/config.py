"""Configuration: TOML file, then `STARLING_*` environment variables, then secret files.

Core options are typed fields. Each plugin owns a table named after it (`[feeds]`,
`[console]`, …) that it validates itself; `STARLING_<PLUGIN>__<OPTION>` and a
secret file named `<plugin>__<option>` override that table, so container users
never need a config file. Secrets belong only in the environment or in files.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.statuspages import StatusPageConfig

ENV_PREFIX = "STARLING_"
T = TypeVar("T", bound="BaseModel")


class ConfigError(Exception):
    """A setting is wrong; the message names it and says what is expected."""


class Settings(BaseSettings):
    """Core options. Every one has a safe default; README documents them all."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="allow",
        validate_default=True,
    )

    data_dir: Path = Field(default=Path("data"), description="Where the database and state live.")
    db: str = Field(default="", description="SQLite file; default <data_dir>/starling.db.")
    chats: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["console"], description="Chat plugins to run at once."
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    default_interval_s: float = Field(default=300.0, ge=1.0)
    min_interval_s: float = Field(default=60.0, ge=0.1)
    jitter: float = Field(default=0.1, ge=0.0, le=0.5)
    max_backoff_s: float = Field(default=3600.0, ge=1.0)
    max_concurrent_polls: int = Field(default=400, ge=1)
    text_limit: int = Field(default=1000, ge=100, le=4000)
    max_backlog: int = Field(default=20, ge=0, le=200)
    digest_threshold: int = Field(default=20, ge=0)
    digest_max_items: int = Field(default=25, ge=2, le=100)
    allow_private_addresses: bool = Field(default=False)
    on_upstream_delete: str = Field(
        default="delete",
        pattern="^(delete|mark|keep)$",
        description="A relayed post deleted upstream: delete, mark (edit to a notice) or keep.",
    )
    public_confirmations: bool = Field(
        default=False,
        description="Show /follow, /unfollow, /mirror and /resume confirmations to the channel.",
    )
    outage_announce: bool = Field(default=True)
    ops_channels: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["console:console"]
    )
    outage_quiet_channels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    outage_quiet_hours: str = Field(default="")
    outage_failures: int = Field(default=3, ge=1)
    outage_window_s: float = Field(default=300.0, ge=10.0)
    outage_degraded_rate: float = Field(default=0.2, gt=0.0, le=1.0)
    outage_down_rate: float = Field(default=0.5, gt=0.0, le=1.0)
    outage_min_requests: int = Field(default=6, ge=1)
    outage_recovery_successes: int = Field(default=2, ge=1)
    outage_update_s: float = Field(default=600.0, ge=5.0)
    postback_targets: dict[str, list[str]] = Field(default_factory=dict)
    postback_approval: Annotated[list[str], NoDecode] = Field(default_factory=list)
    postback_approvers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    postback_direct_posters: Annotated[list[str], NoDecode] = Field(default_factory=list)
    postback_posters: Annotated[list[str], NoDecode] = Field(default_factory=list)
    postback_self_approval: bool = Field(default=False)
    postback_rate_per_hour: int = Field(default=10, ge=1)
    postback_fallback: dict[str, str] = Field(default_factory=dict)
    postback_hold_s: float = Field(default=60.0, gt=0.0)
    postback_check_s: float = Field(default=15.0, gt=0.0)
    postback_retry_s: float = Field(default=30.0, gt=0.0)
    postback_require_alt: bool = Field(default=True)
    shutdown_grace_s: float = Field(default=20.0, ge=0.0)
    health_flush_s: float = Field(default=15.0, ge=0.5)
    heartbeat_s: float = Field(default=30.0, ge=1.0)
    secrets_dir: Path | None = Field(default=None)
    web_port: int = Field(default=0, ge=0, le=65535)
    web_host: str = Field(default="127.0.0.1")
    status_pages: dict[str, StatusPageConfig] = Field(default_factory=dict)
    status_page_interval_s: float = Field(default=180.0, ge=30.0)
    status_page_timeout_s: float = Field(default=10.0, gt=0.0, le=60.0)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("use DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("outage_quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        from bot.outage import parse_quiet_hours

        parse_quiet_hours(value)
        return value

    @field_validator(
        "chats",
        "outage_quiet_channels",
        "ops_channels",
        "postback_approval",
        "postback_approvers",
        "postback_direct_posters",
        "postback_posters",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            file_secret_settings,
            TomlConfigSettingsSource(settings_cls),
        )

    @property
    def db_path(self) -> str:
        return self.db or str(self.data_dir / "starling.db")

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The plugin's own table, overridden by env and secret files; the plugin validates it."""
        merged: dict[str, Any] = {}
        table = (self.model_extra or {}).get(name)
        if isinstance(table, dict):
            merged.update(table)
        prefix = f"{ENV_PREFIX}{name.upper()}__"
        for key, value in os.environ.items():
            if key.upper().startswith(prefix):
                merged[key[len(prefix) :].lower()] = value
        if self.secrets_dir is not None and self.secrets_dir.is_dir():
            for path in self.secrets_dir.iterdir():
                if path.name.lower().startswith(f"{name.lower()}__") and path.is_file():
                    option = path.name.split("__", 1)[1].lower()
                    merged[option] = path.read_text(encoding="utf-8").strip()
        return merged


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from the TOML file (if any), env, secrets and CLI overrides."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    if config_file is not None:
        try:
            tomllib.loads(config_file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{config_file} is not valid TOML: {err}") from None
    secrets = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")

    class _Loaded(Settings):
        model_config = SettingsConfigDict(
            toml_file=config_file,
            secrets_dir=secrets if secrets and Path(secrets).is_dir() else None,
        )

    try:
        loaded = _Loaded(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"setting {where!r}: {first['msg']}") from None
    return Settings.model_validate(loaded.model_dump())


def parse_plugin_config(model: type[T], raw: dict[str, Any], plugin: str) -> T:
    """Validate a plugin's table with its own model, naming the bad option on failure."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"[{plugin}] {where}: {first['msg']}") from None


class PluginSettings(BaseModel):
    """Base for plugin config models: unknown options are an error, not a silent typo."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
