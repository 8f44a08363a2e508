"""Buttons under Starling's Discord messages (Approve, Reject, Delete) and their clicks.

A button's `custom_id` is `starling:<command>:<args>`: everything a click needs is in
the message itself, so buttons keep working after a restart and no view is kept in
memory. A click runs the same server-side command as a typed one, as the member who
clicked, so every permission is checked again.
"""

from __future__ import annotations

from typing import Any

import discord
from discord.utils import MISSING

from bot.model import Action, RichMessage

CUSTOM_PREFIX = "starling:"
CUSTOM_ID_LIMIT = 100  # Discord: custom_id is at most 100 characters
LABEL_LIMIT = 80
BUTTONS_PER_MESSAGE = 25
# Only commands a button may run; any other custom_id in a forged click is refused.
CLICKABLE = frozenset({"approve", "reject", "undo"})
_STYLES = {"primary": discord.ButtonStyle.primary, "danger": discord.ButtonStyle.danger}


def custom_id(action: Action) -> str:
    return f"{CUSTOM_PREFIX}{action.command}:{action.args}"[:CUSTOM_ID_LIMIT]


def parse_custom_id(value: str) -> tuple[str, str] | None:
    """(command, args) from one of Starling's buttons, or None for anything else."""
    if not value.startswith(CUSTOM_PREFIX):
        return None
    command, _, args = value.removeprefix(CUSTOM_PREFIX).partition(":")
    return command, args


def build_view(actions: tuple[Action, ...]) -> discord.ui.View | None:
    """The buttons as a discord.py view, or None when there are none.

    The view is stopped before it is sent, so discord.py keeps no callbacks for it:
    clicks reach `CommandBridge.click` through the client's interaction event.
    """
    if not actions:
        return None
    view = discord.ui.View(timeout=None)
    for action in actions[:BUTTONS_PER_MESSAGE]:
        view.add_item(
            discord.ui.Button(
                label=action.label[:LABEL_LIMIT],
                style=_STYLES.get(action.style, discord.ButtonStyle.secondary),
                custom_id=custom_id(action),
            )
        )
    view.stop()
    return view


def send_view(message: RichMessage) -> Any:
    """For a send: the buttons, or `MISSING` (webhook sends refuse `None`)."""
    return build_view(message.actions) or MISSING


def edit_view(message: RichMessage) -> discord.ui.View | None:
    """For an edit: the buttons, or None, which removes buttons a decision made stale."""
    return build_view(message.actions)
