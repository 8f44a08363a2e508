"""docs/slack.md and the app manifest say what the plugin really does."""

from __future__ import annotations

import re

import pytest

from plugins.slack.config import DEFAULT_SCOPES, SlackSettings
from tests.conftest import REPO

DOC = (REPO / "docs" / "slack.md").read_text(encoding="utf-8")
MANIFEST = REPO / "plugins" / "slack" / "manifest.yaml"


def test_every_option_is_documented_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|", DOC, flags=re.MULTILINE))
    for name, field in SlackSettings.model_fields.items():
        assert name in rows, f"docs/slack.md does not document {name}"
        default = field.default
        if isinstance(default, bool) or not isinstance(default, (int, float, str)):
            continue  # booleans and secrets
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        assert f"`{shown}" in rows[name], f"{name}: default {shown} not in {rows[name]!r}"


def test_the_manifest_sets_up_socket_mode_the_command_and_only_documented_scopes() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert manifest["settings"]["socket_mode_enabled"] is True
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == SlackSettings().command
    assert command["should_escape"] is False  # Starling reads raw text and unwraps links itself
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert sorted(scopes) == [
        "channels:history",
        "chat:write",
        "commands",
        "groups:history",
        "usergroups:read",  # only for `group:` entries in the approval settings
    ]
    for scope in scopes:
        assert re.search(rf"^\| `{scope}` \| \w", DOC, flags=re.MULTILINE), scope


def test_an_oauth_install_asks_for_the_scopes_the_manifest_lists() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert set(DEFAULT_SCOPES) == set(manifest["oauth_config"]["scopes"]["bot"])
    assert len(DEFAULT_SCOPES) == len(set(DEFAULT_SCOPES))
