"""Slack rendering: whatever upstream text says, no payload pings anyone or breaks Block Kit."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.model import Author, Media, Post, RichMessage
from bot.render import defuse, render
from plugins.slack.format import (
    command_text,
    escape,
    render_blocks,
    render_fallback,
    reply_text,
)
from tests.fakes.slack_server import FakeSlack

HOSTILE = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!here|here>",
    "<@U012AB3CD>",
    "<@W012AB3CD|boss>",
    "<#C012AB3CD>",
    "<!subteam^S012AB3CD>",
    "<!subteam^S012AB3CD|@team>",
    "<!date^1392734382^{date}|x>",
    "<https://evil.example|Click me>",
    "<mailto:a@b.example|mail>",
    "@here",
    "@channel",
    "@everyone",
    "&lt;!channel&gt;",
    "&amp;",
    "&",
    "<",
    ">",
    "|",
    "*bold*",
    "\u2060",
    "\x1b[31m",
    "\x1f",
    "\u202e",
    " ",
    "\n",
]
upstream_text = st.lists(
    st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE)), max_size=30
).map("".join)
long_text = st.builds(
    lambda piece, n: piece * n,
    st.sampled_from(["&", "<!channel>", "a ", "é", "<@U1> &amp; "]),
    st.integers(0, 1500),
)
any_text = st.one_of(upstream_text, long_text)
good_url = st.builds(
    lambda host, path, query: f"https://{host}.example/{path}?q={query}&x=1",
    st.from_regex(r"[a-z]{1,12}", fullmatch=True),
    st.from_regex(r"[a-zA-Z0-9_/.\-]{0,30}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{0,8}", fullmatch=True),
)
any_url = st.one_of(good_url, st.just(""), st.sampled_from(HOSTILE), st.text(max_size=30))
messages = st.builds(
    RichMessage,
    text=any_text,
    title=any_text,
    author=any_text,
    author_url=any_url,
    avatar_url=any_url,
    link=any_url,
    images=st.lists(st.builds(Media, url=any_url, alt=any_text), max_size=6).map(tuple),
    footer=any_text,
    network=st.sampled_from(["feeds", "mastodon", "x <!here>", ""]),
    timestamp=st.one_of(
        st.none(),
        st.datetimes(
            min_value=datetime(2001, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ),
    ),
)

_TOKEN = re.compile(r"<([^<>]*)>")
_LINK = re.compile(r"^(https?://[^\s<>|]+)(\|[^<>]*)?$")
_DATE = re.compile(r"^!date\^-?\d+\^\{date_short_pretty\} \{time\}\|[0-9: -]+UTC$")
_ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")


def texts_in(payload: Any, *, key: str = "") -> list[str]:
    """Every string Slack shows as text: text objects, context text, alt_text."""
    if isinstance(payload, list):
        return [t for item in payload for t in texts_in(item)]
    if isinstance(payload, dict):
        found = []
        for k, value in payload.items():
            if k in ("text", "alt_text") and isinstance(value, str):
                found.append(value)
            else:
                found += texts_in(value, key=k)
        return found
    return []


def _text_objects(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, list):
        return [t for item in payload for t in _text_objects(item)]
    if isinstance(payload, dict):
        own = [payload] if payload.get("type") in ("mrkdwn", "plain_text") else []
        return own + [t for value in payload.values() for t in _text_objects(value)]
    return []


def urls_in(payload: Any) -> list[str]:
    if isinstance(payload, list):
        return [u for item in payload for u in urls_in(item)]
    if isinstance(payload, dict):
        return [
            u
            for k, value in payload.items()
            for u in ([value] if k in ("url", "image_url") else urls_in(value))
        ]
    return []


def assert_safe_slack_text(
    text: str, allowed_urls: set[str], sources: tuple[str, ...] = ()
) -> None:
    """No control sequence but our own links and dates; no bare `&`; no `<`/`>` left over.

    A link must point to one of the message's URLs, or to a URL written in its text.
    """
    for token in _TOKEN.finditer(text):
        inner = token.group(1)
        link = _LINK.match(inner)
        if link:
            target = link.group(1).replace("&amp;", "&")
            assert target in allowed_urls or any(target in defuse(s) for s in sources), inner
            assert "&" not in link.group(1).replace("&amp;", ""), inner
            continue
        assert _DATE.match(inner), f"live control sequence {token.group(0)!r} in {text!r}"
    rest = _TOKEN.sub("", text)
    assert "<" not in rest, text
    assert ">" not in rest, text
    assert not _ENTITY.search(text), f"broken escape in {text!r}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
@example(  # found by Hypothesis: parts that defuse to nothing must not become empty blocks
    RichMessage(
        text=" ",
        title="\x1f",
        author="\x1f",
        avatar_url="https://a.example/a.png",
        footer="\x1f",
        network=" ",
        images=(Media("https://i.example/x.png", alt="\x1b[0m"),),
    )
)
def test_no_payload_contains_a_live_mention_or_broken_escape(message: RichMessage) -> None:
    allowed = {message.link, message.author_url, message.avatar_url} | {
        m.url for m in message.images
    }
    for with_images in (True, False):
        blocks = render_blocks(message, with_images=with_images)
        fallback = render_fallback(message)
        sources = (message.text, message.footer)
        for text in [fallback, *texts_in(blocks)]:
            assert_safe_slack_text(text, allowed, sources)
        for url in urls_in(blocks):
            assert url in allowed
            assert not any(ch.isspace() or ch in "<>|" for ch in url)
        # Slack's own reading of the payload finds nothing to ping and nothing to refuse.
        slack = FakeSlack()
        slack._scan(fallback, verbatim=True, where="text")
        slack._scan_blocks(blocks)
        assert slack.pings == []
        assert slack._block_problems(blocks) == []
        assert 0 < len(fallback) <= 3000


@settings(max_examples=200, deadline=None)
@given(any_text)
def test_escape_keeps_every_visible_character(text: str) -> None:
    escaped = escape(text)
    assert_safe_slack_text(escaped, set())
    shown = escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert shown == defuse(text)


@settings(max_examples=100, deadline=None)
@given(any_text, any_text)
def test_a_post_rendered_by_the_core_is_safe_in_slack_too(title: str, text: str) -> None:
    post = Post(
        "feeds",
        "1",
        Author(name=title[:50], url="https://blog.example/me", avatar_url="https://blog.example/a"),
        text,
        permalink="https://blog.example/post?id=1&ref=rss",
        title=title,
    )
    message = render(post)
    allowed = {message.link, message.author_url, message.avatar_url}
    blocks = render_blocks(message)
    for piece in [render_fallback(message), *texts_in(blocks)]:
        assert_safe_slack_text(piece, allowed, (message.text,))


def test_a_relayed_post_becomes_a_card() -> None:
    when = datetime(2026, 11, 23, 14, 2, tzinfo=UTC)
    message = RichMessage(
        text="Fish & chips <3",
        title="Python 3.14.1 is out",
        author="Python Insider",
        author_url="https://blog.python.org/",
        avatar_url="https://blog.python.org/avatar.png",
        link="https://blog.python.org/2026/11/python-3141.html?a=1&b=2",
        images=(Media("https://blog.python.org/pic.png", alt="a snake"),),
        footer="via #3",
        network="feeds",
        timestamp=when,
    )
    context, section, image, actions, footer = render_blocks(message)
    assert context["type"] == "context"
    assert context["elements"][0] == {
        "type": "image",
        "image_url": "https://blog.python.org/avatar.png",
        "alt_text": "Python Insider",
    }
    assert context["elements"][1]["text"] == "*<https://blog.python.org/|Python Insider>*"
    assert context["elements"][2]["text"] == (
        "`feeds` · <!date^1795442520^{date_short_pretty} {time}|2026-11-23 14:02 UTC>"
    )
    assert section["text"] == {
        "type": "mrkdwn",
        "verbatim": True,
        "text": "*<https://blog.python.org/2026/11/python-3141.html?a=1&amp;b=2|"
        "Python 3.14.1 is out>*\nFish &amp; chips &lt;3",
    }
    assert image == {
        "type": "image",
        "image_url": "https://blog.python.org/pic.png",
        "alt_text": "a snake",
    }
    assert actions["elements"][0]["url"] == message.link
    assert actions["elements"][0]["text"]["text"] == "Open on feeds"
    assert footer["elements"][0]["text"] == "via #3"
    assert render_fallback(message) == (
        "Python Insider on feeds\nPython 3.14.1 is out\nFish &amp; chips &lt;3\n"
        "<https://blog.python.org/2026/11/python-3141.html?a=1&amp;b=2>"
    )
    mrkdwn = [t for t in _text_objects(render_blocks(message)) if t["type"] == "mrkdwn"]
    assert len(mrkdwn) == 4
    assert all(t["verbatim"] is True for t in mrkdwn)  # no auto-linked #channel or @here
    assert [b["type"] for b in render_blocks(message, with_images=False)] == [
        "context",
        "section",
        "actions",
        "context",
    ]


def test_long_text_is_cut_inside_the_section_limit_without_splitting_an_entity() -> None:
    message = RichMessage(text="&" * 5000)
    (section,) = render_blocks(message)
    text = section["text"]["text"]
    assert len(text) <= 3000
    assert text.endswith("&amp;…")


def test_urls_in_the_text_become_links_to_exactly_what_is_shown() -> None:
    message = RichMessage(
        text="• Release — https://e.example/a?x=1&y=2. See <https://evil.example|this> too",
        footer="More at https://e.example/more",
    )
    section, footer = render_blocks(message)
    assert section["text"]["text"] == (
        "• Release — <https://e.example/a?x=1&amp;y=2>. "
        "See &lt;<https://evil.example>|this&gt; too"  # shown as typed, linked to itself
    )
    assert footer["elements"][0]["text"] == "More at <https://e.example/more>"


def test_a_link_that_does_not_fit_is_left_out_whole() -> None:
    message = RichMessage(text="x" * 2990 + " https://e.example/long/path")
    (section,) = render_blocks(message)
    assert section["text"]["text"] == "x" * 2990 + "…"


def test_command_replies_name_the_slack_command_and_are_escaped() -> None:
    reply = "/follow: unknown option --x; see /help. Feed <b> & https://e.example/follow"
    assert reply_text(reply, "/starling", ["follow", "help"]) == (
        "/starling follow: unknown option --x; see /starling help. "
        "Feed &lt;b&gt; &amp; https://e.example/follow"
    )


def test_typed_commands_are_unescaped_and_unwrapped() -> None:
    assert command_text("follow feeds <https://e.example/a?x=1&amp;y=2|e.example/a>") == (
        "follow feeds https://e.example/a?x=1&y=2"
    )
    assert command_text("follow x --regex a&lt;b&gt;c") == "follow x --regex a<b>c"
