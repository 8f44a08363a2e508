"""Text inside CDATA sections never sends a feed to feedparser (`plugins.feeds.cdata`).

WordPress and most RSS feeds carry their bodies as HTML in CDATA sections. That HTML
can look like feed markup (a pasted XHTML page, a post about Atom, a bare "&"): the
fast-path gates used to read it as markup and send the whole feed to feedparser, ten
times slower. Both parsers read a section as plain text, so the gates now skip it;
each case here shows the same posts as feedparser. "xhtml" in text outside a section
(a link's slug) no longer counts either, only inside a tag.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from bot.model import Post
from plugins.feeds import parse as feeds_parse
from plugins.feeds.cdata import markup
from plugins.feeds.parse import ParsedFeed, parse_feed

FIXTURES = Path(__file__).parent / "fixtures"
URL = "http://example.com/feed.xml"


def shown(feed: ParsedFeed) -> list[tuple[object, ...]]:
    """What a user sees of each post."""
    return [(feed.title, feed.link)] + [
        (p.native_id, p.title, p.permalink, p.text, p.links, p.media, p.created_at,
         p.author.name, p.author.url)
        for p in feed.posts
        if isinstance(p, Post)
    ]  # fmt: skip


def via_feedparser(body: bytes) -> ParsedFeed:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = markup(body) if feeds_parse._extracted(body) is not None else None
        data = feeds_parse._feedparser(body, "", found)
    return feeds_parse._build(data, url=URL, network="feeds", fast=False, html_titles=False)


def test_wordpress_bodies_that_look_like_feed_markup_take_the_fast_path(
    read_by_feedparser: list[bytes],
) -> None:
    body = (FIXTURES / "feeds" / "wordpress_cdata_bodies.xml").read_bytes()
    feed = parse_feed(body, url=URL)
    assert read_by_feedparser == []
    posts = [p for p in feed.posts if isinstance(p, Post)]
    assert [p.title for p in posts] == [
        "An XHTML page, pasted whole",
        "Twenty years of this blog",
        "How a feed names its author",
    ]
    # The pasted page's relative link resolves against the feed, not the xml:base in it.
    assert posts[0].links == ("http://example.com/wires/",)
    assert posts[0].text.startswith("Starlings & swallows on the wires")
    assert posts[1].text.startswith("It\u2019s been twenty years \u2013 here\u2019s")
    # A <media:content> written in a post's text is no attachment.
    assert posts[2].media == ()
    assert shown(feed) == shown(via_feedparser(body))


RSS = (
    b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
    b'xmlns:media="http://search.yahoo.com/mrss/"><channel><title>t</title>'
    b"<item><guid>https://e.org/1</guid><title>one</title>%s</item></channel></rss>"
)


# Shapes that once sent a feed to feedparser, in a section's text or in plain text
# (the fast path reads them), and the same in markup (feedparser still does).
IN_TEXT = [
    (
        "an XHTML namespace",
        b'<description><![CDATA[<div xmlns="http://www.w3.org/1999/xhtml">x</div>]]></description>',
    ),
    ("a <body>", b"<description><![CDATA[<html><body><p>hi</p></body></html>]]></description>"),
    ("a bare &", b"<description><![CDATA[Fish & chips]]></description>"),
    ("a windows-1252 reference", b"<description><![CDATA[It&#146;s]]></description>"),
    ("Atom 0.3's mode", b'<description><![CDATA[<pre mode="xml">x</pre>]]></description>'),
    ("an author <url>", b"<description><![CDATA[<url>https://e.org/me</url>]]></description>"),
    (
        "a binary content type",
        b'<description><![CDATA[<content type="image/png">x</content>]]></description>',
    ),
    (
        "an xml:base",
        b'<description><![CDATA[<p xml:base="https://b.example/">'
        b'<a href="x">x</a></p>]]></description>',
    ),
    (
        "Media RSS",
        b'<description><![CDATA[<media:thumbnail url="https://e.org/t.jpg"/>]]></description>',
    ),
    ("a section's opener", b"<description><![CDATA[<![CDATA[ nested? ]]></description>"),
    ("xhtml in a link's text", b"<link>https://e.org/why-xhtml-died/</link>"),
]
IN_MARKUP = [
    # "<![CDATA[" in a comment or an instruction opens nothing: what follows is markup.
    (
        "after a comment holding an opener",
        b"<!-- <![CDATA[ --><description mode='xml'>x</description><!-- ]]> -->",
    ),
    (
        "after an instruction holding an opener",
        b"<?pi <![CDATA[ ?><description mode='xml'>x</description><?pi ]]> ?>",
    ),
    (
        "between two sections",
        b"<description><![CDATA[a]]></description>"
        b"<author><url>https://e.org/me</url></author><comments><![CDATA[b]]></comments>",
    ),
    ("xhtml in a tag", b'<description type="application/xhtml+xml">x</description>'),
]


@pytest.mark.parametrize(
    ("shape", "item", "fast"),
    [(shape, item, True) for shape, item in IN_TEXT]
    + [(shape, item, False) for shape, item in IN_MARKUP],
)
def test_shapes_in_text_take_the_fast_path_and_in_markup_go_to_feedparser(
    shape: str, item: bytes, fast: bool, read_by_feedparser: list[bytes]
) -> None:
    body = RSS % item
    feed = parse_feed(body, url=URL)
    assert read_by_feedparser == ([] if fast else [body]), shape
    assert shown(feed) == shown(via_feedparser(body)), shape


def test_markup_leaves_out_each_section_and_nothing_else() -> None:
    body = b"<rss><![CDATA[x]]><!-- <![CDATA[ --><b><![CDATA[<c>]]></b><?p <![CDATA[ ?></rss>"
    found = markup(body)
    assert found is not None
    assert [body[start:end] for start, end in found.spans] == [
        b"<rss>",
        b"<!-- <![CDATA[ --><b>",
        b"</b><?p <![CDATA[ ?></rss>",
    ]
    assert found.holds(body.index(b"<b>"))
    assert not found.holds(body.index(b"<c>"))
    assert found.starts(re.compile(rb"<[bc]>")) == [body.index(b"<b>")]


@pytest.mark.parametrize(
    ("shape", "body"),
    [
        ("no section", b"<rss>x</rss>"),
        (
            "a DOCTYPE (its subset may hold an opener)",
            b"<?xml version='1.0'?><!DOCTYPE rss><rss><![CDATA[x]]></rss>",
        ),
        ("a section that never closes", b"<rss><![CDATA[x</rss>"),
        ("a comment that never closes", b"<rss><!-- <![CDATA[x]]></rss>"),
        # fastfeedparser drops junk before the declaration, so the extractor's word on
        # the document says nothing about it: an opener there would hide the markup.
        (
            "an opener in junk before the declaration",
            b'<![CDATA[\n<?xml version="1.0"?><rss><b><![CDATA[x]]></b></rss>',
        ),
    ],
)
def test_documents_it_does_not_map(shape: str, body: bytes) -> None:
    assert markup(body) is None, shape


def test_many_brackets_before_an_opener_or_a_close_are_stepped_over() -> None:
    """The opener and the close are found from the "["s and "]"s (memchr), and past a
    few that are neither, by a plain search: both ways find the same section."""
    text = b"[x] " * 40
    body = b"<rss>" + text + b"<b><![CDATA[" + text.replace(b"[", b"]") + b"]]></b></rss>"
    found = markup(body)
    assert found is not None
    start = body.index(b"<![CDATA[")
    assert found.spans == [(0, start), (body.index(b"]]>") + 3, len(body))]
