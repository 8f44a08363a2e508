"""How Approve / Reject / Delete buttons are rendered: everything a click needs is in them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.model import Action, RichMessage
from plugins.discord.buttons import build_view, custom_id, parse_custom_id
from plugins.slack.format import COMMAND_ACTION, render_blocks

REQUEST = RichMessage(
    title="Post request #7 by U1",
    text="mastodon: hi",
    actions=(
        Action("Approve", "approve", "7", "primary"),
        Action("Reject", "reject", "7", "danger"),
    ),
)


def test_slack_buttons_carry_the_command_and_its_arguments() -> None:
    (row,) = [b for b in render_blocks(REQUEST) if b["type"] == "actions"]
    assert row["elements"] == [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": "Approve", "emoji": False},
            "action_id": COMMAND_ACTION + "approve",
            "value": "7",
            "style": "primary",
        },
        {
            "type": "button",
            "text": {"type": "plain_text", "text": "Reject", "emoji": False},
            "action_id": COMMAND_ACTION + "reject",
            "value": "7",
            "style": "danger",
        },
    ]


def test_a_message_without_actions_has_no_command_buttons() -> None:
    blocks = render_blocks(RichMessage(text="plain"))
    assert all(b["type"] != "actions" for b in blocks)


async def test_discord_buttons_round_trip_their_custom_id() -> None:
    view = build_view(REQUEST.actions)
    assert view is not None
    assert view.is_finished(), "no callbacks are kept: clicks work after a restart"
    (row,) = view.to_components()
    assert [(c["label"], c["custom_id"], c["style"]) for c in row["components"]] == [
        ("Approve", "starling:approve:7", 1),
        ("Reject", "starling:reject:7", 4),
    ]
    assert build_view(()) is None


@given(st.text(max_size=30), st.text(max_size=200))
def test_custom_ids_fit_discord_and_parse_back(command: str, args: str) -> None:
    made = custom_id(Action("x", command.replace(":", ""), args))
    assert len(made) <= 100
    parsed = parse_custom_id(made)
    assert parsed is not None
    assert parsed[0] == command.replace(":", "")[:100]
    assert parse_custom_id("someone-else:approve:1") is None
