"""X API v2 tweet objects (with their `includes`) to Starling posts.

Everything here is untrusted input: fields may be missing, of the wrong type or
hostile. Text is X's plain text with `&amp;`-style escapes, so it goes through
`html_to_text`; t.co links are replaced by the addresses they stand for; the
t.co link X appends for attached media is dropped, the media is attached instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.html import html_to_text, plain_text
from bot.model import Author, Media, Post

WEB = "https://x.com"
TWITTER_EPOCH_MS = 1288834974657
_USERNAME = re.compile(r"^[A-Za-z0-9_]{1,15}$")
_ID = re.compile(r"^[0-9]{1,19}$")
_RT_PREFIX = re.compile(r"^RT @([A-Za-z0-9_]{1,15}):")
_MEDIA_HOSTS = ("pic.x.com", "pic.twitter.com")

# What every timeline and search request asks for, so posts render fully.
TWEET_FIELDS = (
    "created_at,author_id,entities,referenced_tweets,attachments,edit_history_tweet_ids,note_tweet"
)
EXPANSIONS = (
    "author_id,attachments.media_keys,referenced_tweets.id,"
    "referenced_tweets.id.author_id,referenced_tweets.id.attachments.media_keys"
)
USER_FIELDS = "name,username,profile_image_url"
MEDIA_FIELDS = "url,preview_image_url,alt_text,type"


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def is_tweet_id(value: str) -> bool:
    return bool(_ID.match(value))


def is_username(value: str) -> bool:
    return bool(_USERNAME.match(value))


def snowflake_time(tweet_id: str) -> datetime | None:
    """When a tweet id was minted (ids carry their creation time in milliseconds)."""
    if not is_tweet_id(tweet_id):
        return None
    millis = (int(tweet_id) >> 22) + TWITTER_EPOCH_MS
    return datetime.fromtimestamp(millis / 1000, UTC)


def _parse_time(value: Any) -> datetime | None:
    text = _str(value)
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _http_url(value: Any) -> str:
    url = _str(value).strip()
    return url if url.startswith(("https://", "http://")) and len(url) <= 2000 else ""


@dataclass(slots=True)
class Includes:
    """The `includes` of one answer, indexed: users by id, media by key, tweets by id."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    tweets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Includes:
        raw = body.get("includes")
        if not isinstance(raw, dict):
            return cls()
        return cls(
            users={_str(u.get("id")): u for u in _dicts(raw.get("users"))},
            media={_str(m.get("media_key")): m for m in _dicts(raw.get("media"))},
            tweets={_str(t.get("id")): t for t in _dicts(raw.get("tweets"))},
        )


def author_of(user: Mapping[str, Any] | None, fallback_username: str = "") -> Author:
    """An `Author` from a user object; a known handle stands in when X sent no user."""
    user = user or {}
    username = _str(user.get("username")) or fallback_username
    username = username if is_username(username) else ""
    name = plain_text(_str(user.get("name"))) or (f"@{username}" if username else "X user")
    return Author(
        name=name,
        handle=f"@{username}" if username else "",
        url=f"{WEB}/{username}" if username else "",
        avatar_url=_http_url(user.get("profile_image_url")),
    )


def permalink(username: str, tweet_id: str) -> str:
    if is_username(username):
        return f"{WEB}/{username}/status/{tweet_id}"
    return f"{WEB}/i/web/status/{tweet_id}"


def expanded_text(tweet: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The full text (a long post's `note_tweet` when present) with t.co links expanded."""
    note = tweet.get("note_tweet")
    if isinstance(note, dict) and _str(note.get("text")):
        text = _str(note.get("text"))
        entities = note.get("entities")
    else:
        text = _str(tweet.get("text"))
        entities = tweet.get("entities")
    urls = _dicts(entities.get("urls")) if isinstance(entities, dict) else []
    # Unescape first: an expanded address may hold "&copy=1", which is not an entity.
    text, _ = html_to_text(text)
    links: list[str] = []
    for entity in urls:
        short = _str(entity.get("url"))
        if not short:
            continue
        if entity.get("media_key") or _str(entity.get("display_url")).startswith(_MEDIA_HOSTS):
            text = text.replace(short, "")
            continue
        target = _http_url(entity.get("unwound_url")) or _http_url(entity.get("expanded_url"))
        if target:
            text = text.replace(short, target)
            if target not in links:
                links.append(target)
    # Dropped media links leave gaps behind; close them line by line.
    text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    return text.strip(), links


def _media(tweet: Mapping[str, Any], includes: Includes) -> tuple[Media, ...]:
    attachments = tweet.get("attachments")
    keys = attachments.get("media_keys") if isinstance(attachments, dict) else None
    found: list[Media] = []
    for key in keys if isinstance(keys, list) else []:
        item = includes.media.get(_str(key))
        if item is None:
            continue
        kind = _str(item.get("type"))
        alt = plain_text(_str(item.get("alt_text")))
        if kind == "photo" and _http_url(item.get("url")):
            found.append(Media(_http_url(item.get("url")), "image", alt))
        elif kind in ("video", "animated_gif") and _http_url(item.get("preview_image_url")):
            found.append(Media(_http_url(item.get("preview_image_url")), "video", alt))
    return tuple(found)


def _references(tweet: Mapping[str, Any]) -> dict[str, str]:
    return {
        _str(ref.get("type")): _str(ref.get("id"))
        for ref in _dicts(tweet.get("referenced_tweets"))
        if _str(ref.get("id"))
    }


def to_post(
    tweet: Mapping[str, Any], includes: Includes, network: str, fallback_username: str = ""
) -> Post | None:
    """One tweet as a `Post`, or None when it lacks an id (nothing to link or dedupe)."""
    tweet_id = _str(tweet.get("id"))
    if not is_tweet_id(tweet_id):
        return None
    author = author_of(includes.users.get(_str(tweet.get("author_id"))), fallback_username)
    username = author.handle.removeprefix("@")
    refs = _references(tweet)
    text, links = expanded_text(tweet)
    media = _media(tweet, includes)
    original = includes.tweets.get(refs.get("retweeted", ""))
    if original is not None:
        # A retweet's own text is cut at 140 characters; show the original in full.
        match = _RT_PREFIX.match(_str(tweet.get("text")))
        source = includes.users.get(_str(original.get("author_id")), {})
        source_name = _str(source.get("username")) or (match.group(1) if match else "")
        body, links = expanded_text(original)
        text = f"RT @{source_name}: {body}" if is_username(source_name) else body
        media = media or _media(original, includes)
    quoted = includes.tweets.get(refs.get("quoted", ""))
    if quoted is not None:
        quoted_user = _str(includes.users.get(_str(quoted.get("author_id")), {}).get("username"))
        quoted_text, _ = expanded_text(quoted)
        who = f"@{quoted_user}" if is_username(quoted_user) else "a post"
        text = f"{text}\n\nQuoting {who}: {quoted_text}".strip()
    raw_history = tweet.get("edit_history_tweet_ids")
    history = (
        [_str(i) for i in raw_history if is_tweet_id(_str(i))]
        if isinstance(raw_history, list)
        else []
    )
    first_id = history[0] if history else tweet_id
    created = _parse_time(tweet.get("created_at")) or snowflake_time(tweet_id)
    edited_at: datetime | None = None
    if first_id != tweet_id:
        # An edit is a new tweet id with the original first in its history: keep the
        # original's identity (so the edit is not relayed as a new post) and time.
        edited_at = created
        created = snowflake_time(first_id) or created
    return Post(
        network=network,
        native_id=first_id,
        author=author,
        text=text,
        permalink=permalink(username, tweet_id),
        links=tuple(links),
        media=media,
        created_at=created,
        edited_at=edited_at,
        is_reply="replied_to" in refs,
        is_repost="retweeted" in refs,
        is_quote="quoted" in refs,
        reply_to_id=_parent_id(refs.get("replied_to", ""), includes)
        if "retweeted" not in refs
        else "",
    )


def _parent_id(replied_to: str, includes: Includes) -> str:
    """The replied-to tweet's identity, as its own `Post` has it: the first id of its
    edit history when X included the parent, else the id the reply names."""
    if not is_tweet_id(replied_to):
        return ""
    history = includes.tweets.get(replied_to, {}).get("edit_history_tweet_ids")
    first = _str(history[0]) if isinstance(history, list) and history else ""
    return first if is_tweet_id(first) else replied_to


def to_posts(body: Mapping[str, Any], network: str, fallback_username: str = "") -> list[Post]:
    includes = Includes.of(body)
    posts = []
    for tweet in _dicts(body.get("data")):
        post = to_post(tweet, includes, network, fallback_username)
        if post is not None:
            posts.append(post)
    return posts
