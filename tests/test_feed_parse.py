"""Feed documents become the posts a channel would see, or a one-line reason why not."""

from __future__ import annotations

import codecs
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.model import Post
from plugins.feeds import parse as feeds_parse
from plugins.feeds.parse import FeedParseError, ParsedFeed, parse_feed

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = FIXTURES / "feedparser"
FEEDS = FIXTURES / "feeds"
FEED_URL = "http://example.com/feed.xml"


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "LICENSE")


def header_content_type(body: bytes) -> str:
    """The Content-Type a corpus file says its server sent (its `Header:` comment line)."""
    match = re.search(rb"Header:\s*Content-type:\s*([^\r\n]+)", body, re.IGNORECASE)
    return match.group(1).decode("latin-1").strip() if match else ""


def expect_lines(path: Path) -> str:
    return "\n".join(
        line.decode("utf-8", "replace")
        for line in path.read_bytes().splitlines()
        if b"Expect:" in line
    )


def fixture(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def parse_fixture(name: str, **kwargs: Any) -> ParsedFeed:
    return parse_feed(fixture(name), **kwargs)


def post_problems(feed: ParsedFeed) -> Iterator[str]:
    """What would be wrong with these posts for the relay and the renderer."""
    seen: set[str] = set()
    for post in feed.posts:
        if not isinstance(post, Post):
            yield f"not a Post: {post!r}"
            continue
        if not post.native_id or len(post.native_id) > 256:
            yield f"bad native_id {post.native_id!r}"
        if post.native_id in seen:
            yield f"duplicate native_id {post.native_id!r}"
        seen.add(post.native_id)
        if len(post.text) > 4000 or "\n\n\n" in post.text:
            yield f"text not tidied/capped ({len(post.text)} chars)"
        if "\n" in post.title:
            yield f"multi-line title {post.title!r}"
        urls = [post.permalink, *post.links, *(m.url for m in post.media), post.author.url]
        for url in urls:
            if url and not url.startswith(("http://", "https://")):
                yield f"non-http url {url!r}"
        for moment in (post.created_at, post.edited_at):
            if moment is not None and moment.utcoffset() != UTC.utcoffset(None):
                yield f"date not aware UTC: {moment!r}"
        if not post.author.name:
            yield "author without a name"


# -- (a) robustness over the whole feedparser corpus ---------------------------------------


def check_corpus(transform: Callable[[bytes], bytes | None]) -> tuple[list[str], int]:
    offenders: list[str] = []
    with_posts = 0
    for path in corpus_files():
        body = transform(path.read_bytes())
        if body is None:
            continue
        name = path.relative_to(CORPUS)
        try:
            feed = parse_feed(body, content_type=header_content_type(body), url=FEED_URL)
        except FeedParseError as err:
            if not str(err) or "\n" in str(err):
                offenders.append(f"{name}: unclear FeedParseError {str(err)!r}")
            continue
        except Exception as err:  # the point of the test: nothing else may escape
            offenders.append(f"{name}: raised {type(err).__name__}: {err}")
            continue
        with_posts += bool(feed.posts)
        offenders.extend(f"{name}: {problem}" for problem in post_problems(feed))
    return offenders, with_posts


def test_corpus_is_complete() -> None:
    files = corpus_files()
    assert len(files) == 2248, "tests/fixtures/feedparser is incomplete"
    assert "Redistribution and use" in (CORPUS / "LICENSE").read_text()


def test_every_corpus_file_parses_or_fails_with_a_feed_parse_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="plugins.feeds.parse")
    started = time.monotonic()
    offenders, with_posts = check_corpus(lambda body: body)
    assert not offenders, f"{len(offenders)} corpus files misbehaved:\n" + "\n".join(offenders)
    # A crash hidden by the catch-all would show up as a warning; there must be none.
    assert not caplog.records, "\n".join(r.getMessage() for r in caplog.records)
    assert with_posts > 1000
    assert time.monotonic() - started < 60


def test_every_corpus_file_also_survives_the_fast_parser(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The corpus mostly lacks an encoding declaration, which keeps it off the fast path.

    Declaring UTF-8 on its ASCII documents runs them through fastfeedparser too.
    """
    caplog.set_level(logging.WARNING, logger="plugins.feeds.parse")

    def declared(body: bytes) -> bytes | None:
        if not body.isascii() or header_content_type(body):
            return None
        body = re.sub(rb"^\s*<\?xml[^>]*\?>", b"", body)
        return b'<?xml version="1.0" encoding="utf-8"?>\n' + body

    offenders, with_posts = check_corpus(declared)
    assert not offenders, f"{len(offenders)} corpus files misbehaved:\n" + "\n".join(offenders)
    assert not caplog.records, "\n".join(r.getMessage() for r in caplog.records)
    assert with_posts > 1000


# -- (b) the corpus's own expectations, as our Post fields --------------------------------

# (corpus file, what its Expect line literally says, Post field, what we show)
CORPUS_EXPECTATIONS: list[tuple[str, str, str, object]] = [
    # RSS 0.90 (fastfeedparser finds no entries in it) and RSS 1.0 / RDF
    ("wellformed/rdf/rss090_item_title.xml", "'Item title'", "title", "Item title"),
    ("wellformed/rdf/rdf_item_title.xml", "'Example title'", "title", "Example title"),
    ("wellformed/rdf/rdf_item_link.xml", "'http://example.com/1'", "permalink",
     "http://example.com/1"),
    ("wellformed/rdf/rdf_item_rdf_about.xml", "'http://example.org/1'", "native_id",
     "http://example.org/1"),
    ("wellformed/rdf/rdf_item_description.xml", "'Example description'", "text",
     "Example description"),
    # RSS 2.0
    ("wellformed/rss/item_guid.xml", "'http://guid.example.com/'", "native_id",
     "http://guid.example.com/"),
    ("wellformed/rss/item_link.xml", "'http://example.com/'", "permalink", "http://example.com/"),
    ("wellformed/rss/item_guid_isPermaLink_map_link.xml", "'http://guid.example.com/'",
     "permalink", "http://guid.example.com/"),
    ("wellformed/rss/item_guid_isPermaLink_conflict_link.xml", "'http://link.example.com/'",
     "permalink", "http://link.example.com/"),
    ("wellformed/rss/item_description.xml", "'Example description'", "text",
     "Example description"),
    ("wellformed/rss/item_content_encoded.xml", "'<p>Example content</p>'", "text",
     "Example content"),
    ("wellformed/rss/item_author.xml", "'Example editor'", "author.name", "Example editor"),
    ("wellformed/rss/item_pubDate_map_updated_parsed.xml", "(2004, 1, 1, 19, 48, 21",
     "created_at", datetime(2004, 1, 1, 19, 48, 21, tzinfo=UTC)),
    # Atom 1.0, including XHTML titles (fastfeedparser loses those)
    ("wellformed/atom10/entry_id.xml", "'http://example.com/'", "native_id",
     "http://example.com/"),
    ("wellformed/atom10/entry_link_alternate_map_link.xml", "'http://www.example.com/'",
     "permalink", "http://www.example.com/"),
    ("wellformed/atom10/entry_title_inline_markup.xml", "'Example <b>Atom</b>'", "title",
     "Example Atom"),
    ("wellformed/atom10/entry_title_inline_markup_2.xml", "'History of the &lt;blink&gt; tag'",
     "title", "History of the <blink> tag"),
    ("wellformed/atom10/entry_title_escaped_markup.xml", "'Example <b>Atom</b>'", "title",
     "Example Atom"),
    ("wellformed/atom10/entry_title_text_plain_brackets.xml", "'History of the <blink> tag'",
     "title", "History of the <blink> tag"),
    ("wellformed/atom10/entry_content_inline_markup.xml", "'Example <b>Atom</b>'", "text",
     "Example Atom"),
    ("wellformed/atom10/entry_content_escaped_markup.xml", "'Example <b>Atom</b>'", "text",
     "Example Atom"),
    ("wellformed/atom10/entry_author_name.xml", "'Example author'", "author.name",
     "Example author"),
    # Atom 0.3
    ("wellformed/atom/entry_title_inline_markup.xml", "'<div>Example <b>Atom</b></div>'",
     "title", "Example Atom"),
    ("wellformed/atom/entry_title_escaped_markup.xml", "'Example <b>Atom</b>'", "title",
     "Example Atom"),
    # Encodings: declared EUC-KR, windows-1252 from the HTTP header, none declared at all
    ("encoding/euc-kr-item.xml", "'\\ub144'", "text", "\ub144"),
    ("encoding/euc-kr-attribute.xml", "'<img alt=\"\\ub144\" />'", "text", "[\ub144]"),
    ("encoding/http_text_xml_charset_2.xml", "'This is a \\xa3\\u201ctest.\\u201d'", "text",
     "This is a \xa3\u201ctest.\u201d"),
    ("encoding/demoronize-1.xml", "'don\\u2019t'", "text", "don\u2019t"),
    ("encoding/double-encoded-html.xml", "== 8230", "text", "\u2026"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "literal", "field", "expected"),
    CORPUS_EXPECTATIONS,
    ids=[case[0] for case in CORPUS_EXPECTATIONS],
)
def test_corpus_expectations_hold_for_our_posts(
    name: str, literal: str, field: str, expected: object
) -> None:
    path = CORPUS / name
    assert literal in expect_lines(path), "the table no longer matches the corpus file"
    body = path.read_bytes()
    feed = parse_feed(body, content_type=header_content_type(body))
    assert feed.posts, f"{name}: no posts"
    value: Any = feed.posts[0]
    for attr in field.split("."):
        value = getattr(value, attr)
    assert value == expected


BIG5_TITLE = "\u6e2c\u8a66\u6a19\u984c"  # 測試標題
BIG5_TEXT = "\u7e41\u9ad4\u4e2d\u6587"  # 繁體中文


def rss(title: str, description: str, declaration: str = "") -> str:
    return (
        f"{declaration}<rss version='2.0'><channel><title>c</title>"
        f"<item><guid>g1</guid><title>{title}</title><description>{description}</description>"
        "</item></channel></rss>"
    )


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(
            rss(BIG5_TITLE, BIG5_TEXT, '<?xml version="1.0" encoding="big5"?>').encode("big5"),
            "",
            id="big5-declared",
        ),
        pytest.param(
            rss(BIG5_TITLE, BIG5_TEXT).encode("big5"),
            "application/rss+xml; charset=big5",
            id="big5-from-http-header",
        ),
        pytest.param(
            rss(BIG5_TITLE, BIG5_TEXT, '<?xml version="1.0"?>').encode("utf-8"),
            "",
            id="utf8-undeclared",
        ),
        pytest.param(
            codecs.BOM_UTF16_LE
            + rss(BIG5_TITLE, BIG5_TEXT, '<?xml version="1.0" encoding="utf-16"?>').encode(
                "utf-16-le"
            ),
            "",
            id="utf16-bom",
        ),
        pytest.param(
            rss(BIG5_TITLE, BIG5_TEXT, '<?xml version="1.0" encoding="utf-8"?>').encode("utf-8"),
            "text/xml; charset=utf-8",
            id="utf8-declared-twice",
        ),
    ],
)
def test_text_is_decoded_whatever_the_encoding_source(body: bytes, content_type: str) -> None:
    [post] = parse_feed(body, content_type=content_type).posts
    assert (post.title, post.text) == (BIG5_TITLE, BIG5_TEXT)


def test_undeclared_windows_1252_is_not_garbled() -> None:
    body = rss("Caf\xe9 \u201cquoted\u201d", "na\xefve").encode("cp1252")
    assert b"\x93quoted\x94" in body
    [post] = parse_feed(body).posts
    assert post.title == "Caf\xe9 \u201cquoted\u201d"
    assert post.text == "na\xefve"


# -- hand-written feeds: what a channel sees ------------------------------------------------


def test_rss_20_posts() -> None:
    feed = parse_fixture("rss20.xml", url="https://blog.example.org/feed.xml", network="blogs")
    assert feed.title == "Starling & Friends"
    assert feed.link == "https://blog.example.org/"
    first, second = feed.posts
    assert first.network == "blogs"
    assert first.uid == "blogs:starling-post-12"
    assert first.title == "Release 1.2 is out"
    assert first.author.name == "Ada Lovelace"
    assert first.permalink == "https://blog.example.org/posts/release-1-2"
    assert first.created_at == datetime(2025, 6, 10, 7, 30, tzinfo=UTC)
    assert first.edited_at is None
    assert second.native_id == "https://blog.example.org/posts/second"
    assert second.author.name == "Grace Hopper"  # "editor@example.org (Grace Hopper)"
    assert second.text == "Plain & simple, 1 < 2."


def test_html_content_is_made_safe_but_keeps_what_a_reader_needs() -> None:
    post = parse_fixture("rss20.xml", url="https://blog.example.org/feed.xml").posts[0]
    # full content wins over the summary
    assert "Short summary" not in post.text
    assert post.text.startswith("Hello @everyone, release 1.2 is out!")
    # scripts, styles and frames are gone, content and all
    for gone in ("alert", "pwned", "color: red", "tracking frame", "javascript"):
        assert gone not in post.text
    # links survive, resolved against the feed URL; the javascript: one keeps only its text
    assert "changelog (https://blog.example.org/docs/changelog)" in post.text
    assert "visit https://example.org/download." in post.text
    assert "click me" in post.text
    assert post.links == ("https://blog.example.org/docs/changelog", "https://example.org/download")
    assert "• faster\n• smaller" in post.text
    # media: images only (no audio enclosure), http(s) only (no javascript: media)
    assert [m.url for m in post.media] == [
        "https://cdn.example.org/img/release.png",
        "https://cdn.example.org/img/banner.jpg",
    ]


def test_atom_10_posts() -> None:
    feed = parse_fixture("atom10.xml", url="https://atom.example.com/feed.atom")
    assert (feed.title, feed.link) == ("Example Atom Feed", "https://atom.example.com/")
    first, second = feed.posts
    assert first.native_id == "tag:atom.example.com,2025:entry-1"
    assert first.title == "Atom bold entry"
    assert first.text == "Full content (https://atom.example.com/more) here."
    assert first.permalink == "https://atom.example.com/2025/06/entry-1"
    assert first.author.name == "Entry Author"
    assert first.created_at == datetime(2025, 6, 12, 8, 0, tzinfo=UTC)
    assert first.edited_at == datetime(2025, 6, 12, 18, 30, 2, tzinfo=UTC)
    assert [m.url for m in first.media] == ["https://atom.example.com/img/1.jpg"]
    # no author on the entry: the feed's author stands in; only `updated`: it is the date
    assert second.author.name == "Feed Author"
    assert second.created_at == datetime(2025, 6, 11, 8, 0, tzinfo=UTC)
    assert second.text == "Only a summary."


def test_posts_without_any_author_are_attributed_to_the_feed() -> None:
    feed = parse_fixture("rss20_no_guid.xml", url="https://news.example.com/rss")
    assert {post.author.name for post in feed.posts} == {"No guids here"}


def test_titles_are_unescaped_and_stripped_of_tags() -> None:
    body = rss("Caf&amp;eacute; &lt;b&gt;bold&lt;/b&gt; &amp;amp; more", "x").encode()
    assert parse_feed(body).posts[0].title == "Café bold & more"


def test_long_text_is_capped() -> None:
    body = rss("t", "&lt;p&gt;" + "word " * 5000 + "&lt;/p&gt;").encode()
    text = parse_feed(body).posts[0].text
    assert 3000 < len(text) <= 4000
    assert text.endswith("…")


# -- (c) JSON Feed ----------------------------------------------------------------------


def test_json_feed_10() -> None:
    feed = parse_fixture(
        "jsonfeed10.json", content_type="application/feed+json", url="https://json.example.net/f"
    )
    assert (feed.title, feed.link) == ("JSON Feed 1.0 example", "https://json.example.net/")
    first, second = feed.posts
    assert first.native_id == "2"
    assert first.title == "Second item"
    assert first.text == "Hello JSON (https://json.example.net/tags/json) world"
    assert first.links == ("https://json.example.net/tags/json",)
    assert first.permalink == "https://json.example.net/2"
    assert first.author.name == "Item Writer"
    assert first.author.avatar_url == "https://json.example.net/avatar.png"
    assert [m.url for m in first.media] == ["https://json.example.net/images/2.png"]
    assert first.created_at == datetime(2025, 6, 10, 16, 0, tzinfo=UTC)
    assert first.edited_at == datetime(2025, 6, 10, 22, 0, tzinfo=UTC)
    # a numeric id still identifies the item; content_text is plain, brackets and all
    assert second.native_id == "1"
    assert second.text == "Plain text with <angle brackets> & an ampersand."
    # 1.0's single `author` object of the feed stands in for the item's
    assert second.author.name == "Feed Writer"


def test_json_feed_11() -> None:
    feed = parse_fixture("jsonfeed11.json", content_type="application/json")
    first, second = feed.posts
    assert first.title == "Uses <details> literally"  # JSON Feed titles are plain text
    assert first.text == "First paragraph.\n\nSecond paragraph."
    assert first.author.name == "Grace"  # 1.1 `authors`: the first one
    # image attachments only, and only http(s)
    assert [(m.url, m.alt) for m in first.media] == [
        ("https://json11.example.net/a.jpg", "A photo")
    ]
    assert first.created_at == datetime(2025, 6, 12, 9, 0, tzinfo=UTC)
    assert second.native_id == "b"
    assert second.permalink == "https://elsewhere.example.com/b"
    assert second.author.name == "Team Starling"  # the feed's 1.1 `authors`


def test_json_feed_is_detected_without_a_content_type() -> None:
    feed = parse_feed(b"\xef\xbb\xbf  \n" + fixture("jsonfeed11.json"))
    assert len(feed.posts) == 2


# -- (d) identity: an item is never posted twice --------------------------------------------


def with_dates_moved(body: bytes) -> bytes:
    body = re.sub(rb"<updated>[^<]*</updated>", b"<updated>2031-01-01T00:00:00Z</updated>", body)
    body = re.sub(
        rb"<pubDate>[^<]*</pubDate>", b"<pubDate>Wed, 01 Jan 2031 00:00:00 GMT</pubDate>", body
    )
    return re.sub(rb'"date_modified": "[^"]*"', b'"date_modified": "2031-01-01T00:00:00Z"', body)


@pytest.mark.parametrize(
    "name", ["atom10.xml", "rss20.xml", "rss20_no_guid.xml", "jsonfeed10.json"]
)
def test_native_ids_do_not_change_when_only_dates_change(name: str) -> None:
    before = parse_fixture(name, url="https://news.example.com/rss")
    moved = with_dates_moved(fixture(name))
    assert moved != fixture(name)
    after = parse_feed(moved, url="https://news.example.com/rss")
    assert [p.native_id for p in after.posts] == [p.native_id for p in before.posts]


def test_feed_without_guid_is_identified_by_links_then_by_content() -> None:
    feed = parse_fixture("rss20_no_guid.xml", url="https://news.example.com/rss")
    ids = [post.native_id for post in feed.posts]
    assert ids[:2] == ["https://news.example.com/story/1", "https://news.example.com/story/2"]
    assert ids[2].startswith("hash:")
    # stable from one poll to the next...
    again = parse_fixture("rss20_no_guid.xml", url="https://news.example.com/rss")
    assert [post.native_id for post in again.posts] == ids
    # ...but a different text is a different item
    edited = fixture("rss20_no_guid.xml").replace(b"Only a title", b"Only one title")
    assert parse_feed(edited, url="https://news.example.com/rss").posts[2].native_id != ids[2]


def test_atom_entry_with_an_id_keeps_it_even_when_its_link_changes() -> None:
    body = fixture("atom10.xml")
    moved = body.replace(b"/2025/06/entry-1", b"/posts/entry-1-renamed")
    old, new = parse_feed(body).posts[0], parse_feed(moved).posts[0]
    assert old.native_id == new.native_id
    assert new.permalink == "https://atom.example.com/posts/entry-1-renamed"


def test_long_ids_are_hashed_to_a_bounded_stable_id() -> None:
    body = rss("t", "x").replace("<guid>g1</guid>", f"<guid>{'g' * 5000}</guid>").encode()
    first, again = parse_feed(body).posts[0], parse_feed(body).posts[0]
    assert len(first.native_id) <= 256
    assert first.native_id == again.native_id


@pytest.fixture
def fast_parser_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Records what fastfeedparser is asked to parse (it still parses it)."""
    calls: list[bytes] = []
    real = feeds_parse._fastfeedparser

    def spy(source: bytes, *extracted: Any) -> Any:
        calls.append(source)
        return real(source, *extracted)

    monkeypatch.setattr(feeds_parse, "_fastfeedparser", spy)
    return calls


def without_encoding_declaration(body: bytes) -> bytes:
    return re.sub(rb'\s+encoding="[^"]*"', b"", body, count=1)


@pytest.mark.parametrize(
    ("name", "fast_path"),
    [("rss20.xml", True), ("rss20_no_guid.xml", True), ("atom10.xml", True)],
)
def test_both_parsers_give_the_same_posts(
    name: str, fast_path: bool, fast_parser_calls: list[bytes]
) -> None:
    """Declared or not, the fast path gives the posts feedparser gives (author URIs too)."""
    url = "https://news.example.com/rss"
    chosen = parse_fixture(name, url=url)
    assert len(fast_parser_calls) == (1 if fast_path else 0)
    for body in (fixture(name), without_encoding_declaration(fixture(name))):
        data = feeds_parse._feedparser(body, "")
        slow = feeds_parse._build(data, url=url, network="feeds", fast=False, html_titles=False)

        def key(post: Post) -> tuple[object, ...]:
            return (post.native_id, post.title, post.permalink, post.text, post.links,
                    post.media, post.created_at, post.edited_at, post.author.name)  # fmt: skip

        assert [key(p) for p in slow.posts] == [key(p) for p in chosen.posts]
        assert (slow.title, slow.link) == (chosen.title, chosen.link)


def test_rss_090_falls_back_to_feedparser(fast_parser_calls: list[bytes]) -> None:
    """fastfeedparser finds no items in RSS 0.90, even with a declared encoding."""
    body = (
        b'<?xml version="1.0" encoding="utf-8"?>\n'
        + (CORPUS / "wellformed/rdf/rss090_item_title.xml").read_bytes()
    )
    assert [p.title for p in parse_feed(body).posts] == ["Item title"]
    assert len(fast_parser_calls) == 1


def test_atom_wrapped_in_xhtml_is_still_read() -> None:
    body = (
        b'<?xml version="1.0" encoding="utf-8"?>'
        b'<html xmlns="http://www.w3.org/1999/xhtml"><body>'
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b"<entry><id>urn:x:1</id><title>Wrapped</title></entry></feed></body></html>"
    )
    assert [(p.native_id, p.title) for p in parse_feed(body).posts] == [("urn:x:1", "Wrapped")]


# -- (f) not a feed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        pytest.param(fixture("not_a_feed.html"), "text/html", "HTML page", id="html-page"),
        pytest.param(b"<html><body><p>hi</p></body></html>", "", "HTML page", id="bare-html"),
        pytest.param(b"", "", "empty", id="empty"),
        pytest.param(b" \r\n\t ", "application/rss+xml", "empty", id="whitespace"),
        pytest.param(b"\x00\x9f\x92\x96garbage\xff\xfe\x00", "", "not valid XML", id="garbage"),
        pytest.param(b"hello, world", "text/plain", "not valid XML", id="plain-text"),
        pytest.param(b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "", "not valid XML", id="gzip"),
        pytest.param(b"<config><item>1</item></config>", "", "no feed entries", id="other-xml"),
        pytest.param(b'{"items": [', "application/json", "not valid XML or JSON", id="bad-json"),
        pytest.param(b'{"hello": "world"}', "", "not a JSON Feed", id="other-json"),
        pytest.param(b"[1, 2, 3]", "application/json", "not a JSON Feed", id="json-list"),
    ],
)
def test_not_a_feed_is_a_one_line_reason(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(FeedParseError) as caught:
        parse_feed(body, content_type=content_type, url="https://example.com/")
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message
    assert len(message) < 80


def test_a_valid_feed_with_no_items_yet_is_not_an_error() -> None:
    feed = parse_feed(
        b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        b"<title>Brand new</title><link>https://new.example.com/</link></channel></rss>"
    )
    assert (feed.title, feed.link, feed.posts) == ("Brand new", "https://new.example.com/", [])


def test_never_reads_a_local_file_named_by_the_body(tmp_path: Path) -> None:
    """feedparser opens strings that name files; parse_feed must treat bytes as data."""
    secret = tmp_path / "secret.xml"
    secret.write_text(rss("SECRET", "leaked"))
    with pytest.raises(FeedParseError):
        parse_feed(str(secret).encode())


# -- robustness beyond the corpus ---------------------------------------------------------

FIXTURE_NAMES = [
    "rss20.xml",
    "rss20_no_guid.xml",
    "atom10.xml",
    "jsonfeed10.json",
    "jsonfeed11.json",
]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_truncated_documents_fail_cleanly(name: str) -> None:
    """A download cut short anywhere gives posts or a FeedParseError, nothing else."""
    body = fixture(name)
    for end in range(0, len(body), 7):
        try:
            feed = parse_feed(body[:end], url=FEED_URL)
        except FeedParseError:
            continue
        assert not list(post_problems(feed)), f"cut at byte {end}"


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(FIXTURE_NAMES),
    cuts=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 40), st.binary(max_size=12))),
    content_type=st.sampled_from(["", "application/rss+xml; charset=big5", "application/json"]),
)
def test_mangled_documents_fail_cleanly(
    name: str, cuts: list[tuple[int, int, bytes]], content_type: str
) -> None:
    body = bytearray(fixture(name))
    for start, length, insert in cuts:
        body[start : start + length] = insert
    try:
        feed = parse_feed(bytes(body), content_type=content_type, url=FEED_URL)
    except FeedParseError:
        return
    assert not list(post_problems(feed))


FEEDPARSER_ONLY = (
    # RSS 0.90 (fastfeedparser reads nothing of it): the fallback reads it.
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
    b'xmlns="http://my.netscape.com/rdf/simple/0.9/"%s><channel><title>t</title>'
    b"<link>https://e.org/</link><description>d</description></channel>"
    b"<item><title>one</title><link>https://e.org/1</link>"
    b"<description>&lt;a href=&quot;two/&quot;&gt;two&lt;/a&gt;</description></item></rdf:RDF>"
)


@pytest.mark.parametrize(
    ("base", "link"),
    [
        (b"", "https://feeds.example.org/news/two/"),
        (b' xml:base="https://base.example/x/"', "https://base.example/x/two/"),
        (b' base="https://base.example/y/"', "https://base.example/y/two/"),
    ],
)
def test_the_fallback_resolves_links_against_a_base_or_else_the_feed(
    base: bytes, link: str, read_by_feedparser: list[bytes]
) -> None:
    """feedparser's own pass over HTML bodies runs only where a base asks for it."""
    feed = parse_feed(FEEDPARSER_ONLY % base, url="https://feeds.example.org/news/rss")
    assert read_by_feedparser == [FEEDPARSER_ONLY % base]
    assert [p.links for p in feed.posts if isinstance(p, Post)] == [(link,)]


def test_the_fallback_reads_with_expat_whatever_else_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """feedparser prefers the "drv_libxml2" SAX driver; Starling's parity with the fast
    path was checked against expat, so that driver is never asked for."""
    asked: list[str] = []

    class Driver:
        @staticmethod
        def create_parser() -> Any:
            asked.append("drv_libxml2")
            raise RuntimeError("not this one")

    monkeypatch.setitem(sys.modules, "drv_libxml2", Driver)
    feed = parse_feed(FEEDPARSER_ONLY % b"", url="https://feeds.example.org/news/rss")
    assert [p.title for p in feed.posts if isinstance(p, Post)] == ["one"]
    assert asked == []
