"""docs/discord.md is what a server admin reads: it must match what the plugin does."""

from __future__ import annotations

import re
from typing import Any

from plugins.discord.settings import DiscordSettings, bot_permissions, invite_url
from tests.conftest import REPO

DOC = (REPO / "docs" / "discord.md").read_text(encoding="utf-8")


def _shown(default: Any) -> set[str]:
    """How a default may be written in the options table."""
    if isinstance(default, bool):
        return {f"`{str(default).lower()}`"}
    if isinstance(default, int | float):
        return {f"`{default}`", f"`{default:g}`"}
    if default == "":
        return {"empty"}
    if default == []:
        return {"`[]`"}
    return {f"`{default}`"}


def test_every_option_is_documented_with_its_default() -> None:
    rows = {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^\| `\[discord\] (\w+)` \| ([^|]+) \|", DOC, re.MULTILINE)
    }
    for name, field in DiscordSettings.model_fields.items():
        assert name in rows, f"docs/discord.md does not document [discord] {name}"
        if name == "token":
            assert rows[name].startswith("none")
            continue
        default = field.get_default(call_default_factory=True)
        assert rows[name] in _shown(default), f"[discord] {name}: documented as {rows[name]}"


def test_the_documented_permission_integers_are_the_ones_asked_for() -> None:
    plain = bot_permissions(use_webhooks=False).value
    hooks = bot_permissions(use_webhooks=True).value
    assert f"`{plain}`" in DOC
    assert f"`{hooks}`" in DOC
    example = re.search(r"https://discord\.com/oauth2/authorize\?client_id=…&\S+", DOC)
    assert example is not None
    assert example.group(0).replace("…", "1") == invite_url(1, use_webhooks=False)
