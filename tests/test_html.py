"""HTML from upstream turns into plain text a chat member can read, and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.html import absolute_http_url, clip_text, html_to_text, plain_text


def text_of(html: str, base_url: str = "") -> str:
    return html_to_text(html, base_url)[0]


# -- layout ---------------------------------------------------------------------------


def test_paragraphs_become_blank_line_separated_blocks() -> None:
    assert text_of("<p>First</p><p>Second</p>") == "First\n\nSecond"


def test_br_and_list_items_become_line_breaks() -> None:
    assert text_of("one<br>two<br/>three") == "one\ntwo\nthree"
    assert text_of("<ul><li>apples</li><li>pears</li></ul>") == "• apples\n• pears"


def test_never_more_than_one_blank_line() -> None:
    text = text_of("a<br><br><br><br><br>b<p></p><p></p><div></div><p>c</p>")
    assert "\n\n\n" not in text
    assert text == "a\n\nb\n\nc"


def test_whitespace_is_collapsed_and_trimmed() -> None:
    html = "\n\n   <p>  lots   of\n\t space </p>\n\n  <p>  here </p>  "
    assert text_of(html) == "lots of space\n\nhere"


def test_inline_markup_is_unwrapped_without_gluing_words() -> None:
    assert text_of("<p>a <b>bold</b> <i>move</i>, <span>really</span></p>") == (
        "a bold move, really"
    )


def test_table_cells_stay_apart() -> None:
    assert text_of("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>") == (
        "a | b\nc"
    )


def test_image_alt_text_is_kept() -> None:
    assert text_of('<p>Look: <img src="x.png" alt="a cat"></p>') == "Look: [a cat]"


# -- entities and plain text ----------------------------------------------------------------


def test_entities_are_decoded() -> None:
    assert text_of("<p>Fish &amp; chips &lt;3 &#8212; caf&eacute; &#x1F600;</p>") == (
        "Fish & chips <3 — café 😀"
    )


def test_plain_text_input_stays_as_is_with_entities_decoded() -> None:
    assert text_of("Tom &amp; Jerry: 1 < 2 > 0") == "Tom & Jerry: 1 < 2 > 0"
    assert text_of("line one\nline two") == "line one\nline two"
    assert html_to_text("just words") == ("just words", [])


def test_mentions_survive_as_text() -> None:
    """Neutralising @everyone is the renderer's job; the converter must not lose it."""
    assert text_of("<p>Hi @everyone and @here</p>") == "Hi @everyone and @here"


# -- links ------------------------------------------------------------------------------


def test_link_text_is_followed_by_its_url() -> None:
    text, links = html_to_text('Read <a href="https://example.org/post">the post</a>.')
    assert text == "Read the post (https://example.org/post)."
    assert links == ["https://example.org/post"]


def test_link_whose_text_is_the_url_is_shown_once() -> None:
    html = (
        '<a href="https://example.org/a">https://example.org/a</a> '
        '<a href="https://www.example.org/b/">example.org/b</a>'
    )
    text, links = html_to_text(html)
    assert text == "https://example.org/a example.org/b"
    assert links == ["https://example.org/a", "https://www.example.org/b/"]


def test_link_shortened_in_its_text_is_not_repeated() -> None:
    html = '<a href="https://example.org/very/long/path?x=1">example.org/very/lo…</a>'
    assert text_of(html) == "example.org/very/lo…"
    # a mere prefix without an ellipsis is a different page: show where it goes
    assert text_of('<a href="https://example.org/docs/a">example.org/docs</a>') == (
        "example.org/docs (https://example.org/docs/a)"
    )


def test_link_without_text_shows_the_url() -> None:
    text, links = html_to_text('<a href="https://example.org/pic"><img src="x.png"></a>')
    assert text == "https://example.org/pic"
    assert links == ["https://example.org/pic"]


def test_relative_links_are_resolved_against_the_base_url() -> None:
    text, links = html_to_text(
        '<a href="/about">About</a> <a href="next?p=2&amp;q=1">next</a>',
        "https://blog.example.com/posts/1",
    )
    assert links == [
        "https://blog.example.com/about",
        "https://blog.example.com/posts/next?p=2&q=1",
    ]
    assert text == (
        "About (https://blog.example.com/about) next (https://blog.example.com/posts/next?p=2&q=1)"
    )


def test_relative_links_without_a_base_are_not_reported() -> None:
    assert html_to_text('<a href="/about">About</a>') == ("About", [])


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "ftp://files.example.com/x",
        "mailto:someone@example.com",
    ],
)
def test_non_http_links_are_dropped_but_their_text_kept(href: str) -> None:
    text, links = html_to_text(f'<a href="{href}">click me</a>', "https://example.com/")
    assert text == "click me"
    assert links == []


def test_duplicate_links_are_reported_once() -> None:
    _, links = html_to_text('<a href="https://x.org/">a</a> <a href="https://x.org/">b</a>')
    assert links == ["https://x.org/"]


# -- hostile markup -----------------------------------------------------------------------


def test_script_style_and_iframe_contents_are_dropped() -> None:
    html = (
        "<p>before</p><script>alert('x')</script><style>p{color:red}</style>"
        "<iframe src='https://evil.example/'>frame text</iframe><noscript>ns</noscript>"
        "<svg><text>svg text</text></svg><p>after</p>"
    )
    text = text_of(html)
    assert text == "before\n\nafter"


def test_event_handlers_and_comments_leave_no_trace() -> None:
    text = text_of('<p onclick="steal()">hi<!-- secret comment --></p><img src=x onerror=alert(1)>')
    assert text == "hi"


def test_unclosed_and_broken_markup_still_reads() -> None:
    assert text_of("<p>one<p>two") == "one\n\ntwo"
    assert text_of("<div>a<div>b") == "a\nb"
    assert text_of("<b>bold <i>both</b> italic") == "bold both italic"
    assert "x" in text_of("<![CDATA[nope]]>x<!-- unclosed")


@pytest.mark.parametrize(
    "nasty",
    [
        "",
        "<",
        "<<<>>>",
        "&",
        "&#xD800;",
        "&#99999999999;",
        "x\ud800y",
        "a\x00b",
        "<a href='\x00javascript:alert(1)'>x</a>",
        "<![if !supportLists]>word<![endif]>",
        "<!DOCTYPE html><html><head><title>t</title></head><body>b</body></html>",
        "<" * 10_000,
        "<div>" * 5_000 + "deep" + "</div>" * 5_000,
        "<a href='" + "x" * 100_000 + "'>long</a>",
        "<p>" + "word " * 300_000 + "</p>",
    ],
)
def test_never_raises_on_nasty_input(nasty: str) -> None:
    text, links = html_to_text(nasty, "https://example.com/")
    assert isinstance(text, str)
    assert all(link.startswith(("http://", "https://")) for link in links)


def test_never_raises_on_non_string_input() -> None:
    assert html_to_text(None) == ("", [])  # type: ignore[arg-type]
    text, links = html_to_text(b"<p>x</p>")  # type: ignore[arg-type]
    assert isinstance(text, str)
    assert links == []


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [*"<>/=\"'&;# abcpdivlrshtf\n\t!-[]?:", "<p>", "</p>", "<a href=", "&amp;", "<br>"]
        )
    ).map("".join)
)
def test_never_raises_on_random_markup(html: str) -> None:
    text, links = html_to_text(html, "https://example.com/base/")
    assert isinstance(text, str)
    assert "\n\n\n" not in text
    assert text == text.strip()
    assert all(link.startswith(("http://", "https://")) for link in links)


# -- limits and helpers ---------------------------------------------------------------------


def test_max_chars_clips_at_a_word_boundary() -> None:
    html = "<p>" + "lorem ipsum " * 2000 + "</p><a href='https://late.example/'>late</a>"
    text, links = html_to_text(html, max_chars=100)
    assert len(text) <= 100
    assert text.endswith("…")
    assert text.removesuffix("…").split()[-1] in ("lorem", "ipsum")
    assert links == []  # the link sits past the cut: the reader never sees it


def test_clip_text() -> None:
    assert clip_text("short", 10) == "short"
    assert clip_text("a few words that go on", 12) == "a few words…"
    assert len(clip_text("x" * 50, 10)) == 10


def test_plain_text_gives_one_line() -> None:
    assert plain_text("Release <b>1.2</b>\n is   out") == "Release 1.2 is out"
    assert plain_text("AT&amp;T &lt;3") == "AT&T <3"
    assert plain_text("<p>a</p><p>b</p>") == "a b"
    assert plain_text("") == ""


@pytest.mark.parametrize(
    ("href", "base", "expected"),
    [
        ("https://example.com/a", "", "https://example.com/a"),
        ("/a", "https://example.com/x/y", "https://example.com/a"),
        ("b", "https://example.com/x/y", "https://example.com/x/b"),
        ("//cdn.example.com/i.png", "https://example.com/", "https://cdn.example.com/i.png"),
        ("/a", "", ""),
        ("javascript:alert(1)", "https://example.com/", ""),
        ("data:image/png;base64,AAAA", "", ""),
        ("https://exa mple.com/", "", ""),
        ("https://example.com/my photo.jpg", "", "https://example.com/my%20photo.jpg"),
        ("HTTPS://Example.com/A", "", "https://Example.com/A"),
        ("https://example.com/\nx", "", ""),
        ("http://[bad", "", ""),
        ("https://", "", ""),
    ],
)
def test_absolute_http_url(href: str, base: str, expected: str) -> None:
    assert absolute_http_url(href, base) == expected
