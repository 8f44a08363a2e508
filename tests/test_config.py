"""Configuration: safe defaults, TOML, STARLING_* env, secret files, clear errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from bot.config import ConfigError, PluginSettings, load_settings, parse_plugin_config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own STARLING_* variables must not leak into these tests."""
    for key in list(os.environ):
        if key.upper().startswith("STARLING_"):
            monkeypatch.delenv(key)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


class FeedsLike(PluginSettings):
    timeout_s: float = Field(default=20.0, gt=0)
    user_agent: str = "default-agent"


def test_defaults_are_safe() -> None:
    settings = load_settings()
    assert settings.data_dir == Path("data")
    assert settings.chats == ["console"]
    assert settings.allow_private_addresses is False
    assert settings.log_level == "INFO"
    assert settings.db_path == str(Path("data") / "starling.db")
    assert settings.plugin_config("feeds") == {}


def test_db_defaults_to_data_dir_unless_given(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path).db_path == str(tmp_path / "starling.db")
    assert load_settings(data_dir=tmp_path, db="/x/y.db").db_path == "/x/y.db"


def test_toml_values_load(tmp_path: Path) -> None:
    config = write(
        tmp_path / "starling.toml",
        'data_dir = "/srv/starling"\n'
        'log_level = "debug"\n'
        "default_interval_s = 120\n"
        'chats = ["console", "slack"]\n'
        "allow_private_addresses = true\n",
    )
    settings = load_settings(config)
    assert settings.data_dir == Path("/srv/starling")
    assert settings.log_level == "DEBUG"
    assert settings.default_interval_s == 120.0
    assert settings.chats == ["console", "slack"]
    assert settings.allow_private_addresses is True


def test_env_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "c.toml", 'log_level = "DEBUG"\ndefault_interval_s = 120\n')
    monkeypatch.setenv("STARLING_LOG_LEVEL", "warning")
    settings = load_settings(config)
    assert settings.log_level == "WARNING"
    assert settings.default_interval_s == 120.0  # not in env: TOML still counts


def test_cli_overrides_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARLING_DATA_DIR", "/from/env")
    assert load_settings().data_dir == Path("/from/env")
    assert load_settings(data_dir=tmp_path).data_dir == tmp_path
    assert load_settings(data_dir=None).data_dir == Path("/from/env")  # unset CLI flag


def test_chats_env_is_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARLING_CHATS", "console, test,,")
    assert load_settings().chats == ["console", "test"]


def test_plugin_table_with_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "c.toml", '[feeds]\ntimeout_s = 5\nuser_agent = "from-toml"\n')
    assert load_settings(config).plugin_config("feeds") == {
        "timeout_s": 5,
        "user_agent": "from-toml",
    }

    monkeypatch.setenv("STARLING_FEEDS__TIMEOUT_S", "9")
    raw = load_settings(config).plugin_config("feeds")
    assert raw == {"timeout_s": "9", "user_agent": "from-toml"}
    # The plugin's own model turns the env string into its type.
    assert parse_plugin_config(FeedsLike, raw, "feeds").timeout_s == 9.0
    # Other plugins do not see it.
    assert load_settings(config).plugin_config("console") == {}


def test_plugin_option_from_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    write(secrets / "feeds__user_agent", "secret-agent\n")
    write(secrets / "slack__token", "xoxb-not-for-feeds")
    config = write(tmp_path / "c.toml", '[feeds]\nuser_agent = "from-toml"\n')
    monkeypatch.setenv("STARLING_SECRETS_DIR", str(secrets))

    raw = load_settings(config).plugin_config("feeds")

    assert raw == {"user_agent": "secret-agent"}
    assert load_settings(config).plugin_config("slack") == {"token": "xoxb-not-for-feeds"}


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("log_level", "LOUD"),
        ("default_interval_s", -1),
        ("jitter", 0.9),
        ("text_limit", 10),
        ("max_concurrent_polls", 0),
    ],
)
def test_bad_value_names_the_setting(setting: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=setting):
        load_settings(**{setting: value})


def test_bad_env_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARLING_DEFAULT_INTERVAL_S", "soon")
    with pytest.raises(ConfigError, match="default_interval_s"):
        load_settings()


def test_bad_toml_value_names_the_setting(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'log_level = "LOUD"\n')
    with pytest.raises(ConfigError, match="log_level") as err:
        load_settings(config)
    assert "DEBUG, INFO, WARNING or ERROR" in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_settings(missing)
    assert str(missing) in str(err.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "broken.toml", "log_level = [\n")
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_settings(config)
    assert str(config) in str(err.value)


def test_unknown_plugin_option_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        parse_plugin_config(FeedsLike, {"timeot_s": 3}, "feeds")
    assert "[feeds]" in str(err.value)
    assert "timeot_s" in str(err.value)


def test_bad_plugin_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"\[feeds\] timeout_s"):
        parse_plugin_config(FeedsLike, {"timeout_s": "0"}, "feeds")


def test_plugin_settings_accept_known_options() -> None:
    parsed = parse_plugin_config(FeedsLike, {"timeout_s": "2.5", "enabled": "false"}, "feeds")
    assert (parsed.timeout_s, parsed.enabled, parsed.user_agent) == (2.5, False, "default-agent")
