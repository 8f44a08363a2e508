"""What a Discord channel would show for untrusted upstream text: inert, complete, in limits.

Property tests feed arbitrary text (weighted towards Discord's syntax) through the
same functions the chat plugin sends with, then read the result the way Discord
does: a backslash before punctuation is consumed, URLs are not formatted.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import discord
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.model import Media, RichMessage
from plugins.discord.embeds import (
    CONTENT_LIMIT,
    EMBED_TOTAL_LIMIT,
    FooterMatch,
    build_embeds,
    embed_size,
    footer_marker,
    key_token,
    limit_violations,
    reply_chunks,
    thread_name,
    webhook_username,
)
from plugins.discord.escape import ZWSP, fit, markdown_safe, plain_safe, utf16_len
from tests.fakes.discord_server import Spec

# Anything Discord would turn into a ping, a mention pill, a channel or command link,
# a timestamp or a custom emoji.
LIVE_MENTION = re.compile(
    r"@everyone|@here|<@[!&]?\d+>|<#\d+>|</[^<>\s]+:\d+>|<a?:\w+:\d+>|<t:-?\d+(?::\w)?>|<id:\w+>",
    re.IGNORECASE,
)
# Discord's own autolink rule: inside a link nothing is formatted.
DISCORD_URL = re.compile(r"(?:https?|steam)://[^\s<]+[^<.,:;\"')\]\s]")
# Characters that open Discord formatting anywhere (a masked link opens with `[`;
# a lone `]` or `)` closes nothing), and those that do at the start of a line.
# `<` is made inert by the zero-width space after it.
OPENERS = set("*_~`|[")
LINE_OPENERS = set("#>-")

TOKENS = [
    "@everyone",
    "@here",
    "@EVERYONE",
    "<@123456789012345678>",
    "<@!123456789012345678>",
    "<@&987654321098765432>",
    "<#123456789012345678>",
    "</follow:123456789012345678>",
    "<:wave:123456789012345678>",
    "<t:1700000000:R>",
    "<id:customize>",
    "[totally safe](https://evil.example/x)",
    "[https://good.example](https://evil.example)",
    "```",
    "`",
    "||spoiler||",
    "**bold**",
    "__under__",
    "~~gone~~",
    "# Heading\n",
    "-# small\n",
    "> quote\n",
    "1. item\n",
    "\\",
    "\\\\",
    "https://example.com/a_b*c~d",
    "http://x.y/@everyone",
    "<https://example.com>",
    "\u2060",
    "😀",
    "\n",
    " ",
]
adversarial = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=6)), max_size=40).map(
    "".join
)
long_text = st.one_of(adversarial, st.text(max_size=9000), st.just("😀" * 5000))


def discord_reads(text: str) -> tuple[str, list[tuple[str, bool]]]:
    """What Discord displays, and each displayed character with whether it was escaped."""
    shown: list[tuple[str, bool]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if ch == "\\" and nxt and not nxt.isalnum() and not nxt.isspace():
            shown.append((nxt, True))
            i += 2
            continue
        shown.append((ch, False))
        i += 1
    return "".join(c for c, _ in shown), shown


def unformatted_outside_links(text: str) -> list[str]:
    """Markdown openers Discord would act on: unescaped and outside a link.

    Links are found with Discord's own autolink rule, which may swallow the escape
    of the character right after a link; that character is then shown as text.
    """
    live: list[str] = []
    line_start = True
    for part in DISCORD_URL.split(text):
        _, shown = discord_reads(part)
        for char, escaped in shown:
            if not escaped and (char in OPENERS or (line_start and char in LINE_OPENERS)):
                live.append(char)
            if char == "\n":
                line_start = True
            elif not char.isspace():
                line_start = False
        line_start = False  # a link was in between
    return live


def strings_in(payload: Any) -> list[str]:
    if isinstance(payload, str):
        return [payload]
    if isinstance(payload, dict):
        return [s for v in payload.values() for s in strings_in(v)]
    if isinstance(payload, list):
        return [s for v in payload for s in strings_in(v)]
    return []


@settings(max_examples=300, deadline=None)
@given(adversarial)
def test_markdown_safe_shows_the_text_unchanged_but_inert(text: str) -> None:
    escaped = markdown_safe(text)
    assert not LIVE_MENTION.search(escaped)
    assert unformatted_outside_links(escaped) == []
    shown, _ = discord_reads(escaped)
    expected = text.replace("\r\n", "\n").replace("\r", "\n").replace(ZWSP, "")
    expected = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]", "", expected)
    assert shown.replace(ZWSP, "") == expected


@settings(max_examples=200, deadline=None)
@given(adversarial)
def test_plain_safe_breaks_every_mention_and_adds_no_backslashes(text: str) -> None:
    safe = plain_safe(text)
    assert not LIVE_MENTION.search(safe)
    assert safe.count("\\") == text.count("\\")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=1, max_value=120))
def test_fit_respects_utf16_limits_and_never_leaves_a_dangling_escape(
    text: str, limit: int
) -> None:
    cut = fit(markdown_safe(text), limit)
    assert utf16_len(cut) <= limit
    trailing = len(cut.rstrip("…")) - len(cut.rstrip("…").rstrip("\\"))
    assert trailing % 2 == 0


urls = st.one_of(
    st.just(""),
    st.just("https://example.com/post/1"),
    st.just("javascript:alert(1)"),
    st.text(max_size=20).map(lambda s: "https://example.com/" + s),
    st.just("https://example.com/" + "a" * 3000),
)
messages = st.builds(
    RichMessage,
    text=long_text,
    title=st.one_of(adversarial, st.text(max_size=600)),
    author=st.one_of(adversarial, st.text(max_size=400)),
    author_url=urls,
    avatar_url=urls,
    link=urls,
    images=st.lists(
        st.builds(Media, url=urls, kind=st.just("image"), alt=st.text(max_size=10)), max_size=12
    ).map(tuple),
    footer=st.one_of(adversarial, st.text(max_size=3000)),
    network=st.sampled_from(["feeds", "mastodon", "@everyone", ""]),
    timestamp=st.one_of(st.none(), st.just(datetime(2026, 1, 2, 3, 4, tzinfo=UTC))),
)
SPEC = Spec()
EMBED_SCHEMA = {"$ref": "#/components/schemas/RichEmbed"}


@settings(max_examples=200, deadline=None)
@given(messages, st.text(min_size=1, max_size=80))
def test_every_embed_is_within_discords_limits_and_mentions_nothing(
    message: RichMessage, key: str
) -> None:
    token = key_token(key)
    embeds = build_embeds(message, token)
    assert limit_violations(embeds) == []
    assert 1 <= len(embeds) <= 10
    payload = [embed.to_dict() for embed in embeds]
    for data in payload:
        assert SPEC.errors(data, EMBED_SCHEMA, "embed") == []
        assert embed_size(discord.Embed.from_dict(dict(data))) <= EMBED_TOTAL_LIMIT
    for text in strings_in(payload):
        assert not LIVE_MENTION.search(text), text
    assert FooterMatch(token).found_in({"embeds": payload})
    assert len(token) <= 25
    name = thread_name(message)
    assert 1 <= utf16_len(name) <= 100
    assert not LIVE_MENTION.search(name)
    username = webhook_username(message.author)
    assert username is None or (1 <= len(username) <= 80 and "discord" not in username.lower())


@settings(max_examples=150, deadline=None)
@given(st.one_of(adversarial, st.text(max_size=20000), st.just("x" * 30000)))
def test_replies_are_split_into_messages_discord_accepts(text: str) -> None:
    chunks = reply_chunks(text)
    assert 1 <= len(chunks) <= 8
    for chunk in chunks:
        assert 1 <= utf16_len(chunk) <= CONTENT_LIMIT
        assert not LIVE_MENTION.search(chunk)
        assert unformatted_outside_links(chunk) == []


def test_a_short_reply_reads_exactly_as_the_core_wrote_it() -> None:
    text = "#1 feeds follow https://example.com/feed_1.xml — every 5 min — filters: +py, -hiring"
    (chunk,) = reply_chunks(text)
    assert discord_reads(chunk)[0] == text
    assert "https://example.com/feed_1.xml" in chunk, "links must stay clickable"


def test_a_long_list_is_split_on_line_boundaries_and_nothing_is_lost() -> None:
    lines = [f"#{n} feeds follow https://example.com/{n}.xml — every 5 min" for n in range(120)]
    chunks = reply_chunks("\n".join(lines))
    assert len(chunks) > 1
    shown = "\n".join(discord_reads(c)[0] for c in chunks)
    assert shown.split("\n") == lines


def test_the_ways_upstream_text_could_break_out_are_all_closed() -> None:
    text = (
        "@everyone look <@123456789012345678> in <#123456789012345678> "
        "[click](https://evil.example) ```\n</follow:1> ||x|| # not a heading"
    )
    embed = build_embeds(RichMessage(text=text, title="@here", network="feeds"), "t")[0]
    data = embed.to_dict()
    for value in strings_in(data):
        assert not LIVE_MENTION.search(value)
    description = data["description"]
    assert "```" not in description
    assert "[click](" not in description
    assert discord_reads(description)[0].replace(ZWSP, "") == text


def test_a_message_at_every_limit_at_once_is_cut_to_6000() -> None:
    message = RichMessage(
        text="word " * 2000,
        title="T" * 400,
        author="A" * 400,
        footer="F" * 3000,
        network="feeds",
        link="https://example.com/p",
    )
    (embed,) = build_embeds(message, key_token("k"))
    assert embed_size(embed) <= EMBED_TOTAL_LIMIT
    assert limit_violations([embed]) == []
    assert embed.footer.text is not None
    assert embed.footer.text.endswith(footer_marker(key_token("k")))
    assert embed.description is not None
    assert embed.description.endswith("…")


def test_several_images_become_one_gallery() -> None:
    images = tuple(Media(f"https://img.example/{n}.png") for n in range(6))
    embeds = build_embeds(
        RichMessage(text="t", title="T", link="https://example.com/p", images=images), "tok"
    )
    assert [e.image.url for e in embeds] == [f"https://img.example/{n}.png" for n in range(4)]
    assert {e.url for e in embeds} == {"https://example.com/p"}


def test_webhook_names_discord_refuses_fall_back_to_the_default() -> None:
    assert webhook_username("Discord Official") is None
    assert webhook_username("clyde") is None
    assert webhook_username("   ") is None
    assert webhook_username("Python Insider") == "Python Insider"
