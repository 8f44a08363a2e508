"""README is the user's first screen: it must document every option that exists."""

from __future__ import annotations

import tomllib

from bot.config import Settings, load_settings
from plugins.bluesky import BlueskySettings
from plugins.console import ConsoleSettings
from plugins.discord.settings import DiscordSettings
from plugins.feeds import FeedsSettings
from plugins.mastodon import MastodonSettings
from plugins.nostr import NostrSettings
from plugins.slack.config import SlackSettings
from plugins.x.config import XSettings
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
PLUGIN_SETTINGS = [
    ("feeds", FeedsSettings),
    ("console", ConsoleSettings),
    ("nostr", NostrSettings),
    ("discord", DiscordSettings),
    ("bluesky", BlueskySettings),
    ("x", XSettings),
    ("mastodon", MastodonSettings),
    ("slack", SlackSettings),
]
EXAMPLE = REPO / "starling.example.toml"


def test_every_core_option_is_documented_in_readme_and_example() -> None:
    example = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for name in Settings.model_fields:
        assert f"`{name}`" in README, f"README does not document {name}"
        if name not in ("db", "secrets_dir"):
            assert name in example, f"starling.example.toml lacks {name}"


def test_every_plugin_option_is_documented() -> None:
    for table, model in PLUGIN_SETTINGS:
        for name in model.model_fields:
            if name == "enabled":
                assert "`enabled`" in README
                continue
            assert f"`[{table}] {name}`" in README, f"README does not document [{table}] {name}"


def test_example_config_loads_with_the_documented_defaults() -> None:
    settings = load_settings(EXAMPLE)
    defaults = Settings()
    for name in Settings.model_fields:
        if name in ("db", "secrets_dir", "data_dir"):
            continue
        assert getattr(settings, name) == getattr(defaults, name), name


def test_readme_shows_the_two_commands_first() -> None:
    first_section = README.split("## ")[1]
    assert first_section.startswith("Two commands")
    assert "make run" in first_section
    assert "make test" in first_section
