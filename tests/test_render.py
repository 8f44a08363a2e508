"""Rendering untrusted posts: no live mention, no control character, bounded size."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.model import Author, Media, Post, RichMessage
from bot.render import AUTHOR_LIMIT, MAX_IMAGES, TEXT_LIMIT, TITLE_LIMIT, render

# What any chat platform would read as a ping or a channel link.
BROADCAST = re.compile(r"@(everyone|here|channel|all)\b", re.IGNORECASE)
PLATFORM_MENTION = re.compile(r"<[@!#]")
# C0 controls except tab/newline/carriage return, DEL, and bidi overrides/isolates.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")

NASTY = [
    "@everyone",
    "@Everyone",
    "@HERE",
    "@here",
    "@channel",
    "@all",
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U123>",
    "<@&123>",
    "<#C123>",
    "<@!42>",
    "\x1b[31m",
    "\x00",
    "\u202e",
    "@",
    "<",
    " ",
    "\n",
]

# Arbitrary text, with the dangerous fragments mixed in often enough to matter.
untrusted = st.lists(st.one_of(st.text(max_size=20), st.sampled_from(NASTY)), max_size=30).map(
    "".join
)


def post(text: str = "", *, title: str = "", author: str = "someone", **kw: object) -> Post:
    return Post(
        network="feeds",
        native_id="1",
        author=Author(name=author),
        text=text,
        title=title,
        **kw,  # type: ignore[arg-type]
    )


def text_fields(msg: RichMessage) -> dict[str, str]:
    fields = {"text": msg.text, "title": msg.title, "author": msg.author, "footer": msg.footer}
    fields.update({f"image {n} alt": img.alt for n, img in enumerate(msg.images)})
    return fields


def live_mentions(value: str) -> list[str]:
    return [m.group(0) for m in BROADCAST.finditer(value)] + [
        m.group(0) for m in PLATFORM_MENTION.finditer(value)
    ]


def assert_defused(msg: RichMessage) -> None:
    for name, value in text_fields(msg).items():
        assert live_mentions(value) == [], f"live mention in {name}: {value!r}"
        assert not CONTROL.search(value), f"control character in {name}: {value!r}"


# --- mentions ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(text=untrusted, title=untrusted, author=untrusted, footer=untrusted)
def test_no_live_mention_or_control_character_in_any_field(
    text: str, title: str, author: str, footer: str
) -> None:
    assert_defused(render(post(text, title=title, author=author), footer=footer))


@pytest.mark.parametrize("word", ["@CHANNEL00", "@here1", "@everyone_x", "@alla"])
def test_a_cut_never_makes_a_mention_live(word: str) -> None:
    # Found by the property test above: defused text, then cut at the limit, turned
    # "@CHANNEL00" into "@CHANNEL…", which platforms read as a ping.
    for pad in range(AUTHOR_LIMIT - len(word), AUTHOR_LIMIT + 2):
        author = "0" * pad + word
        msg = render(post("", author=author))
        assert live_mentions(msg.author) == [], msg.author
        assert len(msg.author) <= AUTHOR_LIMIT


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_arbitrary_text_is_defused(text: str) -> None:
    assert_defused(render(post(text, title=text, author=text), footer=text))


@pytest.mark.parametrize("mention", [m for m in NASTY if len(m) > 3 and m[0] in "@<"])
def test_each_mention_form_is_broken_but_still_readable(mention: str) -> None:
    msg = render(post(f"hey {mention} look"))
    assert live_mentions(msg.text) == []
    # The words stay: only an invisible joiner is added.
    assert msg.text.replace("\u2060", "") == f"hey {mention} look"


def test_ordinary_at_signs_and_angle_brackets_are_untouched() -> None:
    text = "mail me at bob@example.com; 3 < 4; @alice said @everyones_favourite"
    assert render(post(text)).text == text


def test_image_alt_text_is_defused() -> None:
    evil = Media("https://img.example/a.png", alt="@everyone <!channel> <@U123> \x1b[31mred")
    assert_defused(render(post("pic", media=(evil,))))


# --- control characters ------------------------------------------------------------------


def test_control_characters_and_ansi_escapes_are_removed() -> None:
    msg = render(
        post(
            "\x1b[31mred\x1b[0m bell\x07 nul\x00 \u202eevil\u202c ok",
            title="ti\x1b[2Jtle\x08",
            author="bob\x1b]0;pwned\x07",
        )
    )
    for value in (msg.text, msg.title, msg.author):
        assert "\x1b" not in value
        assert not CONTROL.search(value)
    assert "red" in msg.text
    assert "evil" in msg.text
    assert msg.text.endswith("ok")


def test_tabs_and_newlines_in_text_survive() -> None:
    assert render(post("line one\n\tline two")).text == "line one\n\tline two"


def test_c1_control_characters_are_removed() -> None:
    msg = render(post("a\x9b31mred\x85b"))
    assert all(not ("\x80" <= ch <= "\x9f") for ch in msg.text), repr(msg.text)


# --- size limits -------------------------------------------------------------------------


def test_long_text_is_capped_at_a_word_with_an_ellipsis() -> None:
    msg = render(post("word " * 500))
    assert len(msg.text) <= TEXT_LIMIT
    assert msg.text.endswith("word…")
    assert msg.text.startswith("word word")


def test_text_within_the_limit_is_kept_whole() -> None:
    text = "x" * TEXT_LIMIT
    assert render(post(text)).text == text
    assert render(post(text + "y")).text == "x" * (TEXT_LIMIT - 1) + "…"


# Text with nothing to defuse: the cap alone decides the length.
plain = st.text(st.characters(blacklist_characters="@<", blacklist_categories=("Cc", "Cs")))


@settings(max_examples=200, deadline=None)
@given(text=plain, limit=st.integers(min_value=100, max_value=4000))
def test_text_never_exceeds_the_limit(text: str, limit: int) -> None:
    rendered = render(post(text), text_limit=limit).text
    assert len(rendered) <= limit
    if len(text.strip()) <= limit:
        assert rendered == text.strip()
    else:
        assert rendered.endswith("…")


def test_title_and_author_are_capped() -> None:
    msg = render(post("body", title="t" * 1000, author="a" * 1000))
    assert len(msg.title) <= TITLE_LIMIT
    assert msg.title.endswith("…")
    assert len(msg.author) <= AUTHOR_LIMIT
    assert msg.author.endswith("…")


def test_text_full_of_mentions_still_fits_the_limit() -> None:
    msg = render(post("<@U1 " * 1000), text_limit=1000)
    assert len(msg.text) <= 1000


# --- title, links, images ----------------------------------------------------------------


def test_title_repeated_at_start_of_text_is_said_once() -> None:
    msg = render(post("Big news: the rest of the story", title="Big news:"))
    assert msg.title == "Big news:"
    assert msg.text == "the rest of the story"


def test_title_equal_to_text_leaves_no_body() -> None:
    msg = render(post("Just a title", title="Just a title"))
    assert (msg.title, msg.text) == ("Just a title", "")


def test_title_elsewhere_in_text_is_kept() -> None:
    msg = render(post("Intro. Big news: again", title="Big news:"))
    assert msg.text == "Intro. Big news: again"


def test_title_whitespace_is_collapsed() -> None:
    assert render(post("x", title="  two\n\n lines  ")).title == "two lines"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "JAVASCRIPT:alert(1)",
        "ftp://example.com/x",
        "//example.com/x",
        "https://example.com/a b",
        'https://example.com/"onmouseover',
        "https://example.com/<@U1>",
        "https://example.com/" + "a" * 3000,
        "",
    ],
)
def test_unsafe_links_are_dropped(url: str) -> None:
    msg = render(
        Post(
            network="feeds",
            native_id="1",
            author=Author(name="a", url=url, avatar_url=url),
            text="x",
            permalink=url,
            media=(Media(url), Media("https://ok.example/i.png")),
        )
    )
    assert (msg.link, msg.author_url, msg.avatar_url) == ("", "", "")
    assert [m.url for m in msg.images] == ["https://ok.example/i.png"]


def test_http_and_https_links_are_kept() -> None:
    msg = render(
        Post(
            network="feeds",
            native_id="1",
            author=Author("a", url="http://a.example/", avatar_url="https://a.example/av.png"),
            text="x",
            permalink="https://a.example/post/1",
        )
    )
    assert msg.link == "https://a.example/post/1"
    assert msg.author_url == "http://a.example/"
    assert msg.avatar_url == "https://a.example/av.png"


def test_at_most_four_images_in_order_and_only_images() -> None:
    media = (
        Media("https://m.example/v.mp4", kind="video"),
        *(Media(f"https://m.example/{n}.png") for n in range(6)),
    )
    msg = render(post("x", media=media))
    assert MAX_IMAGES == 4
    assert [m.url for m in msg.images] == [f"https://m.example/{n}.png" for n in range(4)]


def test_network_and_timestamp_are_carried() -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    msg = render(post("x", created_at=when), footer="via feeds")
    assert (msg.network, msg.timestamp, msg.footer) == ("feeds", when, "via feeds")
