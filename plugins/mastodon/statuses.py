"""Mastodon API statuses (also Pleroma, Akkoma, GoToSocial) to Starling `Post`s.

Everything in a status is untrusted: content is HTML and goes through
`bot.html.html_to_text`; names are collapsed to one line. Mention and hashtag
links are unlinked first so the text reads "@bob #python", not "@bob (https://…)".
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from bot.html import absolute_http_url, html_to_text
from bot.model import Author, Media, Post

MAX_TEXT_CHARS = 4000
MAX_MEDIA = 8
_HIDDEN_VISIBILITY = frozenset({"private", "direct", "limited"})
_ANCHOR_OPEN = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_MENTION_CLASS = re.compile(
    r"""\bclass\s*=\s*["'][^"']*\b(?:mention|hashtag|u-url)\b""", re.IGNORECASE
)
# Pleroma and Misskey-compatible servers inline custom emoji as <img alt=":name:">.
_EMOJI_IMG = re.compile(r"""<img\b[^>]*\balt\s*=\s*["'](:[\w+-]{1,64}:)["'][^>]*>""", re.IGNORECASE)
_MEDIA_KINDS = {"image": "image", "gifv": "video", "video": "video", "audio": "audio"}


def id_order(native_id: str) -> tuple[int, str]:
    """Sort key for status ids: Mastodon's are numeric, others (ULIDs, flake ids) sortable text."""
    return (len(native_id), native_id)


def newest_id(ids: list[str], current: str | None = None) -> str | None:
    """The greatest id of `ids` and `current`, so a cursor never moves backwards."""
    candidates = [i for i in ids if i] + ([current] if current else [])
    return max(candidates, key=id_order) if candidates else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def full_acct(account: dict[str, Any], domain: str) -> str:
    """`user@domain` for an account, adding the instance's domain to local accounts."""
    acct = _str(account.get("acct")) or _str(account.get("username"))
    return acct if "@" in acct else f"{acct}@{domain}"


def author_of(account: dict[str, Any], domain: str) -> Author:
    acct = full_acct(account, domain)
    name = _one_line(_str(account.get("display_name"))) or acct
    avatar = _str(account.get("avatar_static")) or _str(account.get("avatar"))
    return Author(
        name=name,
        handle=f"@{acct}",
        url=absolute_http_url(_str(account.get("url"))),
        avatar_url=absolute_http_url(avatar),
    )


def content_text(status: dict[str, Any]) -> tuple[str, list[str]]:
    """A status's HTML content as text, plus the links it carries (mentions/tags excluded)."""
    html = _str(status.get("content"))
    html = _ANCHOR_OPEN.sub(
        lambda m: "<a>" if _MENTION_CLASS.search(m.group(0)) else m.group(0), html
    )
    html = _EMOJI_IMG.sub(lambda m: m.group(1), html)
    base = _str(status.get("url")) or _str(status.get("uri"))
    return html_to_text(html, base, max_chars=MAX_TEXT_CHARS)


def _media(status: dict[str, Any]) -> tuple[list[Media], list[str]]:
    """Attachments as `Media` (images carry their description as alt) and text notes."""
    media: list[Media] = []
    notes: list[str] = []
    for item in status.get("media_attachments") or []:
        attachment = _dict(item)
        url = absolute_http_url(_str(attachment.get("url")) or _str(attachment.get("remote_url")))
        if not url or len(media) >= MAX_MEDIA:
            continue
        kind = _MEDIA_KINDS.get(_str(attachment.get("type")), "link")
        alt = _one_line(_str(attachment.get("description")))
        media.append(Media(url=url, kind=kind, alt=alt))
        if kind != "image":
            notes.append(f"[{kind}] {alt or url}")
    return media, notes


def _poll_lines(status: dict[str, Any]) -> list[str]:
    poll = _dict(status.get("poll"))
    options = [_one_line(_str(_dict(o).get("title"))) for o in poll.get("options") or []]
    return ["Poll: " + " / ".join(o for o in options if o)] if any(options) else []


def _quoted(status: dict[str, Any]) -> dict[str, Any] | None:
    """The quoted status, in Mastodon 4.5's `{"state", "quoted_status"}` or Pleroma's form."""
    quote = _dict(status.get("quote"))
    if not quote:
        quote = _dict(_dict(status.get("pleroma")).get("quote"))
    inner = _dict(quote.get("quoted_status")) if "quoted_status" in quote else quote
    if "state" in quote and quote.get("state") != "accepted":
        return None
    return inner if inner.get("id") and "content" in inner else None


def is_hidden(status: dict[str, Any]) -> bool:
    """Followers-only and direct posts are never relayed unless the operator allows it."""
    return _str(status.get("visibility")) in _HIDDEN_VISIBILITY


def status_to_post(
    status: dict[str, Any], *, network: str, domain: str, show_private: bool = False
) -> Post | None:
    """One status as a `Post`, or None if it must not be relayed (private, malformed)."""
    native_id = _str(status.get("id"))
    if not native_id:
        return None
    reblog = _dict(status.get("reblog"))
    shown = reblog if reblog.get("id") else status
    if not show_private and (is_hidden(status) or is_hidden(shown)):
        return None
    text, links = content_text(shown)
    spoiler = _one_line(_str(shown.get("spoiler_text")))
    parts = [f"CW: {spoiler}"] if spoiler else []
    if text:
        parts.append(text)
    media, notes = _media(shown)
    parts += notes + _poll_lines(shown)
    quoted = _quoted(shown)
    if quoted is not None:
        quoted_text, quoted_links = content_text(quoted)
        quoted_author = author_of(_dict(quoted.get("account")), domain)
        quoted_cw = _one_line(_str(quoted.get("spoiler_text")))
        body = f"CW: {quoted_cw} — {quoted_text}" if quoted_cw else quoted_text
        parts.append(f"Quoting {quoted_author.name} ({quoted_author.handle}): {body}".rstrip())
        quoted_url = absolute_http_url(_str(quoted.get("url")) or _str(quoted.get("uri")))
        links += [u for u in [quoted_url, *quoted_links] if u and u not in links]
    title = ""
    if shown is not status:
        booster = author_of(_dict(status.get("account")), domain)
        title = f"Boosted by {booster.name} ({booster.handle})"
    permalink = absolute_http_url(_str(shown.get("url")) or _str(shown.get("uri")))
    return Post(
        network=network,
        native_id=native_id,
        author=author_of(_dict(shown.get("account")), domain),
        text="\n\n".join(parts),
        permalink=permalink,
        title=title,
        links=tuple(links),
        media=tuple(media),
        created_at=_when(status.get("created_at")),
        edited_at=_when(shown.get("edited_at")),
        is_reply=bool(shown.get("in_reply_to_id")),
        is_repost=shown is not status,
        is_quote=quoted is not None,
        # A boost is not a reply in the channel's thread sense, even of a reply.
        reply_to_id=_str(shown.get("in_reply_to_id")) if shown is status else "",
    )


def statuses_to_posts(
    statuses: list[Any], *, network: str, domain: str, show_private: bool = False
) -> tuple[list[Post], str | None]:
    """Convert a timeline page; also return its newest id (hidden statuses count too)."""
    posts: list[Post] = []
    ids: list[str] = []
    for raw in statuses:
        status = _dict(raw)
        native_id = _str(status.get("id"))
        if native_id:
            ids.append(native_id)
        post = status_to_post(status, network=network, domain=domain, show_private=show_private)
        if post is not None:
            posts.append(post)
    return posts, newest_id(ids)
