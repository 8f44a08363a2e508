"""Turn a post into the neutral rich message every chat plugin formats its own way.

Everything in a post is untrusted. Here it is capped and defused for every
platform at once: broadcast mentions (`@everyone`, `@here`, `@channel`) get a
zero-width joiner so no platform reads them as pings, and platform mention
syntax (`<@U123>`, `<!channel>`, `<@&role>`) is broken the same way. Each chat
plugin still escapes for its own format; this is the shared first line.
"""

from __future__ import annotations

import re

from bot.model import Media, Post, RichMessage

_ZW = "\u2060"  # word joiner: invisible, and breaks every platform's mention parser
_BROADCAST = re.compile(r"@(everyone|here|channel|all)\b", re.IGNORECASE)
_PLATFORM_MENTION = re.compile(r"<([@#!])")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

TEXT_LIMIT = 1000
TITLE_LIMIT = 200
AUTHOR_LIMIT = 80
URL_LIMIT = 2000
MAX_IMAGES = 4
ALT_LIMIT = 300


def defuse(text: str) -> str:
    """Neutralise mentions and control characters in untrusted text."""
    text = _CONTROL.sub("", _ANSI.sub("", text))
    text = _BROADCAST.sub(lambda m: f"@{_ZW}{m.group(1)}", text)
    return _PLATFORM_MENTION.sub(lambda m: f"<{_ZW}{m.group(1)}", text)


def cap(text: str, limit: int) -> str:
    """Shorten at a word boundary with an ellipsis, so a cut is visible.

    A cut can turn defused text live again ("@channel00" cut to "@channel…"), so
    the result is defused once more; if that made it longer, the cut moves back.
    """
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.7:
        cut = cut[:space]
    while True:
        capped = defuse(cut.rstrip() + "…")
        if len(capped) <= limit or not cut:
            return capped
        cut = cut[:-1]


def _safe_url(url: str) -> str:
    if len(url) > URL_LIMIT or not url.startswith(("https://", "http://")):
        return ""
    return url if not any(ch.isspace() or ch in '<>"|' for ch in url) else ""


def render(post: Post, *, text_limit: int = TEXT_LIMIT, footer: str = "") -> RichMessage:
    # Defuse first, then cap: defusing adds characters, capping only removes them.
    title = cap(defuse(" ".join(post.title.split())), TITLE_LIMIT)
    text = cap(defuse(post.text.strip()), text_limit)
    if title and text.startswith(title):
        # Feeds without a separate body repeat the title as text; say it once.
        text = text[len(title) :].lstrip()
    author = cap(defuse(" ".join(post.author.name.split())), AUTHOR_LIMIT)
    images = tuple(
        Media(m.url, m.kind, cap(defuse(" ".join(m.alt.split())), ALT_LIMIT))
        for m in post.media
        if m.kind == "image" and _safe_url(m.url)
    )[:MAX_IMAGES]
    return RichMessage(
        text=text,
        title=title,
        author=author,
        author_url=_safe_url(post.author.url),
        avatar_url=_safe_url(post.author.avatar_url),
        link=_safe_url(post.permalink),
        images=images,
        footer=defuse(footer),
        network=post.network,
        timestamp=post.created_at,
        reply_to=post.parent_uid,
    )


DELETED_NOTICE = "This post was deleted upstream by its author."


def render_deleted(network: str) -> RichMessage:
    """What a relayed message becomes when its post is deleted upstream and the
    deployment marks instead of deleting (or the chat cannot delete). The original
    words are not kept: the author took them back."""
    return RichMessage(text=DELETED_NOTICE, title="Deleted upstream", network=network)


DIGEST_LINE_LIMIT = 160


def render_digest(messages: list[RichMessage]) -> RichMessage:
    """Fold a burst of messages into one: a line per post with its link.

    The parts were rendered (and defused) already; only their lengths are capped
    again so the digest stays one readable message.
    """
    lines = []
    for msg in messages:
        headline = msg.title or msg.text.split("\n", 1)[0]
        who = f"{msg.author}: " if msg.author and msg.author not in headline else ""
        line = cap(f"{who}{headline}", DIGEST_LINE_LIMIT)
        lines.append(f"• {line}" + (f" — {msg.link}" if msg.link else ""))
    networks = sorted({m.network for m in messages if m.network})
    return RichMessage(
        text="\n".join(lines),
        title=f"{len(messages)} new posts",
        footer="Sent as one digest because many arrived at once.",
        network=", ".join(networks),
        timestamp=max((m.timestamp for m in messages if m.timestamp), default=None),
    )
