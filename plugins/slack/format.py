"""Slack's text rules: escape every upstream string, then build Block Kit.

Slack reads `<…>` as a control sequence (links, `<!channel>`, `<@U…>`, `<#C…>`,
`<!subteam^…>`), so `&`, `<` and `>` in untrusted text become `&amp;`, `&lt;`
and `&gt;`. After that the only `<…>` in a payload are the links and dates built
here, from URLs that were checked first. Every mrkdwn object is `verbatim`, so
Slack does not auto-link bare `#channel` or `@here` either; the core's word
joiner after `@` is kept as a second line of defence.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from bot.model import Action, RichMessage
from bot.render import defuse

SECTION_LIMIT = 3000  # Block Kit: section text
CONTEXT_LIMIT = 2000  # context mrkdwn element (kept well under Slack's cap)
ALT_LIMIT = 1000  # image alt_text (Slack allows 2000)
FALLBACK_LIMIT = 3000  # top-level `text`, shown in notifications
REPLY_LIMIT = 3900  # command replies; Slack truncates messages past 4000
URL_LIMIT = 3000  # image_url and button url
MAX_IMAGES = 4
OPEN_ACTION = "starling_open"
COMMAND_ACTION = "starling_cmd:"  # + the command; the button's value holds its arguments
BUTTON_TEXT_LIMIT = 75
BUTTON_VALUE_LIMIT = 2000
DATE_FORMAT = "{date_short_pretty} {time}"

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"'|]+")
_TRAILING = ".,;:!?)]}"
_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^<>|\s]+)(?:\|[^<>]*)?>")


def escape(text: str) -> str:
    """Defuse mentions, then escape Slack's three control characters."""
    return "".join(_ESCAPES.get(ch, ch) for ch in defuse(text))


def _escape_capped(text: str, limit: int) -> tuple[str, bool]:
    """Escape already-defused text into at most `limit` characters; False if it was cut."""
    whole = "".join(_ESCAPES.get(ch, ch) for ch in text)
    if len(whole) <= limit:
        return whole, True
    out: list[str] = []
    size = 0
    for ch in text:
        piece = _ESCAPES.get(ch, ch)
        if size + len(piece) > limit - 1:
            return "".join(out).rstrip() + "…", False
        out.append(piece)
        size += len(piece)
    return "".join(out), True


def escape_within(text: str, limit: int) -> str:
    """Escape and cap at `limit` characters without cutting an entity in half."""
    return _escape_capped(defuse(text), limit)[0]


def escape_linked(text: str, limit: int) -> str:
    """Like `escape_within`, but URLs in the text become links.

    mrkdwn objects are `verbatim`, so Slack links nothing by itself; Starling links
    the URLs it finds (checked like every other link) and escapes all the rest.
    """
    text = defuse(text)
    out: list[str] = []
    size = 0
    at = 0
    for match in _URL_IN_TEXT.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        target = safe_url(url)
        if not target:
            continue
        before, complete = _escape_capped(text[at : match.start()], limit - size)
        out.append(before)
        size += len(before)
        token = f"<{target}>"
        if not complete or size + len(token) > limit - 1:
            return "".join(out) if not complete else "".join(out).rstrip() + "…"
        out.append(token)
        size += len(token)
        at = match.start() + len(url)
    out.append(_escape_capped(text[at:], limit - size)[0])
    return "".join(out)


def safe_url(url: str) -> str:
    """The URL escaped for use inside `<…>`, or "" if it cannot be a link safely."""
    if not url.startswith(("https://", "http://")) or len(url) > URL_LIMIT:
        return ""
    if any(ch.isspace() or ch in "<>|\"'" or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return ""
    return url.replace("&", "&amp;")


def link(url: str, label: str, *, limit: int = SECTION_LIMIT) -> str:
    """`<url|label>` when the URL is safe, else just the escaped label."""
    target = safe_url(url)
    shown = escape_within(label, max(limit - len(target) - 3, 16))
    return f"<{target}|{shown}>" if target and shown else shown


def date_token(when: datetime) -> str:
    """Slack's date token: shown in each reader's own time zone, UTC text as fallback."""
    fallback = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{DATE_FORMAT}|{fallback}>"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def render_blocks(message: RichMessage, *, with_images: bool = True) -> list[dict[str, Any]]:
    """A relayed post as Block Kit: byline, text, images, a link button, the footer.

    `with_images=False` leaves out every image Slack would have to download (the
    avatar and the pictures), for a retry after Slack refused one of them.
    """
    author, title, footer = _shown(message.author), _shown(message.title), _shown(message.footer)
    text, network = _shown(message.text), _shown(message.network)
    blocks: list[dict[str, Any]] = []
    byline: list[dict[str, Any]] = []
    if with_images and safe_url(message.avatar_url):
        alt = escape_within(author or "avatar", ALT_LIMIT)
        byline.append({"type": "image", "image_url": message.avatar_url, "alt_text": alt})
    if author:
        byline.append(_mrkdwn("*" + link(message.author_url, author, limit=500) + "*"))
    badge = [f"`{escape_within(network, 40)}`"] if network else []
    if message.timestamp is not None:
        badge.append(date_token(message.timestamp))
    if badge:
        byline.append(_mrkdwn(" · ".join(badge)))
    if byline:
        blocks.append({"type": "context", "elements": byline})

    body = []
    if title:
        body.append("*" + link(message.link, title, limit=600) + "*")
    if text:
        used = sum(len(part) + 1 for part in body)
        body.append(escape_linked(text, SECTION_LIMIT - used))
    if not body and safe_url(message.link):
        body.append(link(message.link, message.link))
    if body:
        blocks.append({"type": "section", "text": _mrkdwn("\n".join(body))})

    if with_images:
        for image in message.images[:MAX_IMAGES]:
            if safe_url(image.url):
                alt = escape_within(_shown(image.alt) or "image", ALT_LIMIT)
                blocks.append({"type": "image", "image_url": image.url, "alt_text": alt})

    if safe_url(message.link):
        where = f"Open on {escape_within(network, 40)}" if network else "Open"
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": where, "emoji": False},
            "url": message.link,
            "action_id": OPEN_ACTION,
        }
        blocks.append({"type": "actions", "elements": [button]})
    if footer:
        blocks.append(
            {"type": "context", "elements": [_mrkdwn(escape_linked(footer, CONTEXT_LIMIT))]}
        )
    blocks += action_blocks(message.actions)
    return blocks


def action_blocks(actions: tuple[Action, ...]) -> list[dict[str, Any]]:
    """Buttons that run a command when clicked: `starling_cmd:<command>`, args in `value`.

    Everything a click needs is in the button, so it still works after a restart;
    the server checks the clicker's permissions as for a typed command.
    """
    buttons = []
    for action in actions[:25]:
        button: dict[str, Any] = {
            "type": "button",
            "text": {
                "type": "plain_text",
                "text": action.label[:BUTTON_TEXT_LIMIT],
                "emoji": False,
            },
            "action_id": COMMAND_ACTION + action.command,
            "value": action.args[:BUTTON_VALUE_LIMIT],
        }
        if action.style in ("primary", "danger"):
            button["style"] = action.style
        buttons.append(button)
    return [{"type": "actions", "elements": buttons}] if buttons else []


def render_fallback(message: RichMessage) -> str:
    """The plain `text` Slack shows in notifications and to screen readers."""
    head = _shown(message.author)
    network = _shown(message.network)
    if network:
        head = f"{head} on {network}" if head else network
    parts = [part for part in (head, _shown(message.title), _shown(message.text)) if part]
    url = safe_url(message.link)
    text = escape_within("\n".join(parts), FALLBACK_LIMIT - len(url) - 3)
    if url:
        text = f"{text}\n<{url}>" if text else f"<{url}>"
    return text or "(empty post)"


def _shown(text: str) -> str:
    """What is left to show once mentions and control characters are gone."""
    return defuse(text).strip()


def reply_text(text: str, command: str, subcommands: list[str]) -> str:
    """A command reply for Slack: `/follow` in core wording becomes `/starling follow`."""
    if subcommands:
        names = "|".join(re.escape(name) for name in subcommands)
        text = re.sub(rf"(?<![\w/])/({names})\b", lambda m: f"{command} {m.group(1)}", text)
    return escape_within(text, REPLY_LIMIT)


def command_text(text: str) -> str:
    """What the member typed: Slack's own escaping and link wrapping undone."""
    text = _SLACK_LINK.sub(lambda m: m.group(1), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
