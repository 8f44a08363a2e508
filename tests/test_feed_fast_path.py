"""The fast parser's gate, proved over the whole feedparser corpus.

`plugins.feeds.parse` reads a document with fastfeedparser only when
`plugins.feeds.fastpath` says it reads that shape and encoding correctly, else with
feedparser. Here every corpus file (and every hand-written fixture) that takes the
fast path is parsed by feedparser too, and the posts a user would see must be the
same: ids (so a feed that changes path never re-posts), titles, links, text, media,
dates and authors. Undeclared UTF-8 documents are included: they take the fast path
since round 2.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from bot.model import Post
from plugins.feeds import cdata
from plugins.feeds import fastpath as feeds_fastpath
from plugins.feeds import parse as feeds_parse
from plugins.feeds.parse import FeedParseError, ParsedFeed, parse_feed

FIXTURES = Path(__file__).parent / "fixtures"
URL = "http://example.com/feed.xml"

# Shapes where both parsers still disagree on the fast path, each one a document
# written to test an oddity (several values for one field, ill-formed XML, Atom
# elements inside RSS). None of them is an encoding problem.
KNOWN_DIFFERENCES = {
    # ill-formed: an unfinished CDATA section, recovered differently
    "feedparser/illformed/rss_incomplete_cdata.xml",
    # two <published>/<updated> in one entry: each parser keeps a different one
    "feedparser/wellformed/atom/entry_published_parsed_date_overwriting.xml",
    "feedparser/wellformed/atom/entry_updated_multiple_values.xml",
    # author given only as an e-mail address: feedparser names the address
    "feedparser/wellformed/atom10/entry_authors_email.xml",
    "feedparser/wellformed/namespace/rss2.0NSwithModules.xml",
    "feedparser/wellformed/namespace/rss2.0NSwithModulesNoDefNS.xml",
    # an entry whose only link is rel="self"
    "feedparser/wellformed/atom10/entry_link_rel_self.xml",
    # a foreign element with an RSS element's local name
    "feedparser/wellformed/namespace/rss2.0NSwithModulesNoDefNSLocalNameClash.xml",
    # Atom <id>/<link href> inside an RSS <item>
    "feedparser/wellformed/psc/rss2.0simplechapter.xml",
    # an RSS item with both <description> and a non-standard <summary>
    "feedparser/wellformed/rss/item_description_and_summary.xml",
}


def header_content_type(body: bytes) -> str:
    match = re.search(rb"Header:\s*Content-type:\s*([^\r\n]+)", body, re.IGNORECASE)
    return match.group(1).decode("latin-1").strip() if match else ""


def via_feedparser(body: bytes, content_type: str) -> ParsedFeed:
    """What the feedparser path makes of the document, whatever the gate says (told
    where CDATA sections are, as `_parse` tells it, when the extractor reads it)."""
    markup = cdata.markup(body) if feeds_parse._extracted(body) is not None else None
    data = feeds_parse._feedparser(body, content_type, markup)
    return feeds_parse._build(data, url=URL, network="feeds", fast=False, html_titles=False)


def shown(feed: ParsedFeed) -> list[tuple[object, ...]]:
    def key(post: Post) -> tuple[object, ...]:
        return (post.native_id, post.title, post.permalink, post.text, post.links, post.media,
                post.created_at, post.edited_at, post.author.name, post.author.url)  # fmt: skip

    return [(feed.title, feed.link), *(key(p) for p in feed.posts if isinstance(p, Post))]


def documents() -> list[Path]:
    corpus = sorted(p for p in (FIXTURES / "feedparser").rglob("*") if p.is_file())
    return [p for p in corpus if p.name != "LICENSE"] + sorted((FIXTURES / "feeds").glob("*"))


@pytest.fixture
def fast_results(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What fastfeedparser gave for each document it was given (its native route or its
    public `parse`), None where it failed; it still parses."""
    results: list[Any] = []
    real = feeds_parse._fastfeedparser

    def spy(source: bytes, *extracted: Any) -> Any:
        result = real(source, *extracted)
        results.append(result)
        return result

    monkeypatch.setattr(feeds_parse, "_fastfeedparser", spy)
    return results


def test_both_parsers_show_the_same_posts_for_every_fast_path_document(
    fast_results: list[Any],
) -> None:
    differing: dict[str, str] = {}
    fast_documents = undeclared = 0
    for path in documents():
        body = path.read_bytes()
        content_type = header_content_type(body)
        fast_results.clear()
        try:
            fast = parse_feed(body, content_type=content_type, url=URL)
        except FeedParseError:
            continue
        if not fast_results or not (fast_results[0] or {}).get("entries"):
            continue  # feedparser read it: nothing to compare
        fast_documents += 1
        if not feeds_fastpath._XML_DECL_ENCODING.match(body[:1024]):
            undeclared += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slow = via_feedparser(body, content_type)
        if shown(fast) != shown(slow):
            name = path.relative_to(FIXTURES).as_posix()
            differing[name] = next(
                f"{a!r} != {b!r}" for a, b in zip(shown(fast), shown(slow), strict=False) if a != b
            ) if len(shown(fast)) == len(shown(slow)) else "different number of posts"  # fmt: skip
    unexpected = {k: v for k, v in differing.items() if k not in KNOWN_DIFFERENCES}
    assert not unexpected, "\n".join(f"{k}: {v[:300]}" for k, v in unexpected.items())
    assert fast_documents > 700
    assert undeclared > 600


@pytest.mark.parametrize(
    ("shape", "document"),
    [
        ("RSS <fullitem>", "wellformed/rss/item_fullitem.xml"),
        ("xml:base", "wellformed/base/entry_content_xml_base.xml"),
        ("base64 Atom content", "wellformed/atom10/entry_content_base64.xml"),
        ("Atom 0.3 author <url>", "wellformed/atom/entry_author_url.xml"),
        ("bare & in a URL", "entities/query_variable_entry.xml"),
        ("&#146; (windows-1252 in a reference)", "encoding/demoronize-1.xml"),
        ("markup after text in a summary", "wellformed/atom/entry_summary_naked_markup.xml"),
        ("a media:title as the only title", "wellformed/media-rss/item_media_title1.xml"),
        ("a media:title before the item's <title>", "wellformed/media-rss/item_media_title2.xml"),
    ],
)
def test_shapes_the_fast_parser_loses_go_to_feedparser(
    shape: str, document: str, fast_results: list[Any]
) -> None:
    """Even with an encoding declared, these shapes are read by feedparser."""
    body = (FIXTURES / "feedparser" / document).read_bytes()
    body = re.sub(rb"^\s*<\?xml[^>]*\?>", b"", body)
    declared = b'<?xml version="1.0" encoding="utf-8"?>\n' + body
    parse_feed(declared, url=URL)
    assert fast_results == [], shape


def test_undeclared_utf8_takes_the_fast_path_and_reads_like_feedparser(
    fast_results: list[Any],
) -> None:
    body = (
        "<rss version='2.0'><channel><title>Café</title><link>https://cafe.example/</link>"
        "<item><title>Crème brûlée — ½ price</title><guid>https://cafe.example/1</guid>"
        "<link>https://cafe.example/1</link><description>Déjà vu</description></item>"
        "</channel></rss>"
    ).encode()
    fast = parse_feed(body, url=URL)
    assert len(fast_results) == 1
    assert [p.title for p in fast.posts if isinstance(p, Post)] == ["Crème brûlée — ½ price"]
    assert shown(fast) == shown(via_feedparser(body, ""))


def test_undeclared_windows_1252_still_goes_to_feedparser(fast_results: list[Any]) -> None:
    body = (
        "<rss version='2.0'><channel><title>x</title><item><title>Caf\u00e9 \u2019s</title>"
        "<guid>https://cafe.example/1</guid></item></channel></rss>"
    ).encode("cp1252")
    feed = parse_feed(body, url=URL)
    assert fast_results == []
    assert [p.title for p in feed.posts if isinstance(p, Post)] == ["Caf\u00e9 \u2019s"]


@pytest.mark.parametrize(
    "declared", ["iso-8859-1", "windows-1252", "latin1", "iso-8859-9", "us-ascii", "latin-9"]
)
def test_utf8_declared_as_another_encoding_reads_as_feedparser_repairs_it(
    declared: str, fast_results: list[Any]
) -> None:
    """Old CMSs declare Latin-1 over UTF-8 bytes: feedparser reads the text as the
    UTF-8 it is, where fastfeedparser would show "CafÃ©" (or cut it at "Caf" under
    ASCII). A name Python does not know (latin-9) goes to feedparser whatever the
    bytes: lxml may know it."""
    body = (
        f'<?xml version="1.0" encoding="{declared}"?>'
        "<rss version='2.0'><channel><title>Café</title><item><title>Crème brûlée</title>"
        "<guid>https://cafe.example/1</guid></item></channel></rss>"
    ).encode()
    feed = parse_feed(body, url=URL)
    assert [p.title for p in feed.posts if isinstance(p, Post)] == ["Crème brûlée"]
    assert feed.title == "Café"
    assert fast_results == []
    if declared in ("us-ascii", "latin-9"):
        return
    # Real Latin-1 bytes under that declaration still take the fast path.
    latin1 = body.decode().encode("latin-1")
    fast_results.clear()
    feed = parse_feed(latin1, url=URL)
    assert [p.title for p in feed.posts if isinstance(p, Post)] == ["Crème brûlée"]
    assert len(fast_results) == 1


@pytest.mark.parametrize(
    ("shown_as", "repaired"),
    [
        ("Cr\u00c3\u00a8me br\u00c3\u00bbl\u00c3\u00a9e", "Crème brûlée"),
        ("\u00c2\u00ab hi \u00c2\u00bb", "« hi »"),
        ("Caf&#195;&#169;", "Café"),  # written with references, which XML decodes first
        ("Caf&#xC3;&#xA9;", "Café"),
        ("Caf\u00c3&#169;", "Café"),
    ],
)
def test_text_encoded_twice_reads_as_feedparser_repairs_it(
    shown_as: str, repaired: str, fast_results: list[Any]
) -> None:
    """UTF-8 read as Latin-1 and stored again ("CrÃ¨me"): feedparser repairs such
    text, so such a document goes to it rather than show the garbled text."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        f"<item><title>{shown_as}</title><guid>https://cafe.example/1</guid></item>"
        "</channel></rss>"
    ).encode()
    feed = parse_feed(body, url=URL)
    assert [p.title for p in feed.posts if isinstance(p, Post)] == [repaired]
    assert fast_results == []


def test_youtube_channel_feed_takes_the_fast_path_with_its_descriptions_and_thumbnails(
    fast_results: list[Any],
) -> None:
    """A YouTube channel feed (Atom, one media:group per entry) reads like feedparser."""
    body = (FIXTURES / "feeds" / "youtube_channel.xml").read_bytes()
    fast = parse_feed(body, url=URL)
    assert len(fast_results) == 1
    posts = [p for p in fast.posts if isinstance(p, Post)]
    assert [p.title for p in posts][2] == "Short: the <blink> starling"
    assert posts[0].text.startswith("Part two: cutting the cedar roof panels.\nPlans: ")
    assert "03:12 Cutting <45°> angles" in posts[0].text
    assert posts[1].text == ""
    assert [m.url for p in posts for m in p.media] == [
        f"https://i{n}.ytimg.com/vi/{v}/hqdefault.jpg"
        for n, v in ((2, "Qw3rTy7uIo0"), (3, "Zx9-_aB1cD2"), (4, "mN4bV5cX6zL"))
    ]
    assert posts[0].author.url == "https://www.youtube.com/channel/UCstarlingTestChan01"
    assert shown(fast) == shown(via_feedparser(body, ""))


def test_a_wordpress_feed_with_a_site_icon_takes_the_fast_path(fast_results: list[Any]) -> None:
    """The channel's <image><url> (every WordPress site with an icon, every podcast)
    once sent the whole feed to feedparser, as if it were an Atom 0.3 author URI."""
    body = (FIXTURES / "feeds" / "wordpress_site_icon.xml").read_bytes()
    fast = parse_feed(body, url=URL)
    assert len(fast_results) == 1
    posts = [p for p in fast.posts if isinstance(p, Post)]
    assert [(p.title, p.author.name) for p in posts] == [
        ("A murmuration over the pier \u2013 40,000 birds", "Ada Fieldfare"),
        ("Nest box roofs: cedar or larch?", "Ben Wren"),
    ]
    assert shown(fast) == shown(via_feedparser(body, ""))


@pytest.mark.parametrize(
    ("shape", "channel"),
    [
        ("inside an author-like element", b"<managingEditor><image><url>i</url></image>"),
        ("after another child", b"<image><x>y</x><url>https://e.org/i.png</url></image>"),
        ("inside an item", b"<item><image><url>https://e.org/i.png</url></image></item>"),
    ],
)
def test_an_image_url_anywhere_else_still_goes_to_feedparser(
    shape: str, channel: bytes, fast_results: list[Any]
) -> None:
    body = b"<rss version='2.0'><channel><title>t</title>%s<item><title>a</title></item>" % (
        channel
    )
    parse_feed(body + b"</channel></rss>", url=URL)
    assert fast_results == [], shape


def test_a_wordpress_atom_feed_takes_the_fast_path_with_its_xml_bases(
    fast_results: list[Any],
) -> None:
    """WordPress's Atom feed has an xml:base on the root and another on each entry's
    content: relative links resolve against the content's, or else the root's."""
    body = (FIXTURES / "feeds" / "wordpress_atom.xml").read_bytes()
    fast = parse_feed(body, url="https://mirror.example.com/feed/atom/")
    assert len(fast_results) == 1
    posts = [p for p in fast.posts if isinstance(p, Post)]
    assert [p.links for p in posts] == [
        (
            "https://notes.example.org/2026/11/23/murmuration-pier/gallery/",
            "https://notes.example.org/about/",
        ),
        ("https://notes.example.org/roofs/larch/",),
    ]
    assert shown(fast) == shown(via_feedparser(body, ""))


WP_ATOM = (
    b'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://e.org/wp-atom.php">'
    b"<title>t</title><entry><id>%s</id><title>a</title>%s</entry></feed>"
)
CONTENT_A = (
    b'<content type="html" xml:base="https://e.org/a/">&lt;a href="b"&gt;b&lt;/a&gt;</content>'
)
ID = b"https://e.org/?p=1"
MEDIA_NS = b'xmlns:media="http://search.yahoo.com/mrss/" '


def wp_atom(entry_id: bytes, body: bytes) -> bytes:
    return WP_ATOM % (entry_id, body)


@pytest.mark.parametrize(
    ("shape", "document"),
    [
        ("a base on a summary", wp_atom(ID,
         b'<summary type="html" xml:base="https://e.org/a/">&lt;a href="b"&gt;b&lt;/a&gt;'
         b"</summary>")),
        ("a relative base", wp_atom(ID,
         b'<content type="html" xml:base="/a/">&lt;a href="b"&gt;b&lt;/a&gt;</content>')),
        ("two bases in one entry", wp_atom(ID,
         b'<content type="html" xml:base="https://e.org/a/">x</content>'
         b'<content type="html" xml:base="https://e.org/b/">y</content>')),
        ("a relative id, which feedparser resolves against the root's base",
         wp_atom(b"1", CONTENT_A)),
        ("a base on a title", wp_atom(ID, b'<title xml:base="https://e.org/a/">t</title>')),
        # feedparser restores an outer base only where there is one: without the root's,
        # entry 1's content base carries over to entry 2's id.
        ("content bases without one on the root",
         b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
         b'<entry><id>1</id><content type="html" xml:base="https://e.org/a/">x</content></entry>'
         b'<entry><id>2</id><content type="html" xml:base="https://e.org/b/">y</content></entry>'
         b"</feed>"),
        ("an xml:base in a comment before the root, none on it",
         b'<!-- xml:base="https://evil.example/" -->'
         + wp_atom(ID, CONTENT_A).replace(b' xml:base="https://e.org/wp-atom.php"', b"")),
        ("an empty content with a base, and a summary",
         wp_atom(ID, b'<summary type="html">&lt;a href="s.html"&gt;s&lt;/a&gt;</summary>'
                     b'<content type="html" xml:base="https://e.org/a/"></content>')),
        ("a relative author URI, which feedparser resolves against the root's base",
         wp_atom(ID, b"<author><name>Bob</name><uri>/about/bob</uri></author>" + CONTENT_A)),
        # feedparser keeps entry 1's content base for entry 2's link when the root has
        # none to restore: "two.html" becomes https://e.org/a/two.html there.
        ("a relative link after a uniform content base",
         b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
         b'<entry><id>https://e.org/1</id><link href="https://e.org/1"/>'
         b'<content type="html" xml:base="https://e.org/a/">x</content></entry>'
         b'<entry><id>https://e.org/2</id><link href="two.html"/>'
         b'<content type="html" xml:base="https://e.org/a/">y</content></entry></feed>'),
        # feedparser sets no base before the first one, nor from a summary's.
        ("an entry before the first content base",
         b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
         b'<entry><id>https://e.org/1</id><content type="html">&lt;a href="x/y"&gt;l'
         b'&lt;/a&gt;</content></entry><entry><id>https://e.org/2</id>'
         b'<content type="html" xml:base="https://e.org/b/">y</content></entry></feed>'),
        ("a base on a summary after the content",
         b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
         b'<entry><id>https://e.org/1</id><content type="html">&lt;a href="x/y"&gt;l'
         b'&lt;/a&gt;</content><summary type="html" xml:base="https://e.org/b/">s</summary>'
         b"</entry></feed>"),
        ("the feed's relative link after entries with a uniform content base",
         b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
         b'<entry><id>https://e.org/1</id><link href="https://e.org/1"/>'
         b'<content type="html" xml:base="https://e.org/a/">x</content></entry>'
         b'<link href="home/"/></feed>'),
        ("a relative Media RSS URL, which feedparser does not resolve against it",
         wp_atom(ID, b'<media:content url="img/t.png" medium="image"/>' + CONTENT_A)
         .replace(b"<feed ", b"<feed " + MEDIA_NS)),
    ],
)  # fmt: skip
def test_other_xml_base_shapes_still_go_to_feedparser(
    shape: str, document: bytes, read_by_feedparser: list[bytes]
) -> None:
    feed = parse_feed(document, url=URL)
    assert read_by_feedparser == [document], shape
    assert shown(feed) == shown(via_feedparser(document, ""))


def test_a_root_base_with_absolute_uris_and_a_content_base_reads_fast(
    fast_results: list[Any],
) -> None:
    """The guards above keep the fast path where every URL in question is absolute."""
    document = wp_atom(
        ID, b"<author><name>Bob</name><uri>https://e.org/bob</uri></author>" + CONTENT_A
    )
    feed = parse_feed(document, url=URL)
    assert len(fast_results) == 1
    assert [p.links for p in feed.posts if isinstance(p, Post)] == [("https://e.org/a/b",)]
    assert shown(feed) == shown(via_feedparser(document, ""))


@pytest.mark.parametrize(
    ("where", "attribute"),
    [
        ("content", b' base="https://b.example/dir/"'),
        ("entry", b' base="https://b.example/dir/"'),
        ("entry", b' BASE="https://b.example/dir/"'),
        ("entry", b' xml:Base="https://b.example/dir/"'),
        ("entry", b' xmlns:x="urn:x" x:base="https://b.example/dir/"'),
    ],
)
def test_any_other_base_attribute_goes_to_feedparser(
    where: str, attribute: bytes, read_by_feedparser: list[bytes]
) -> None:
    """feedparser reads a plain `base` attribute as it reads xml:base, in any case and
    under a prefix it does not know (fastfeedparser reads none of them): relative links
    in the body resolve against it."""
    entry = (
        b'<entry%s><id>https://e.org/1</id><title>a</title><content type="html"%s>'
        b'&lt;a href="x.html"&gt;x&lt;/a&gt;</content></entry>'
    )
    document = b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>%s</feed>' % (
        entry % ((attribute, b"") if where == "entry" else (b"", attribute))
    )
    feed = parse_feed(document, url=URL)
    assert read_by_feedparser == [document]
    assert [p.links for p in feed.posts if isinstance(p, Post)] == [
        ("https://b.example/dir/x.html",)
    ]
    assert shown(feed) == shown(via_feedparser(document, ""))


@pytest.mark.parametrize(
    "attribute",
    [
        b' base\xc2\xa0="https://b.example/dir/"',  # a no-break space before "="
        b' base$="https://b.example/dir/"',
        b' type="html"base="https://b.example/dir/"',  # no space before the name
        b' \xc3\xa9xml:base="https://b.example/dir/"',  # not xml:base: feedparser drops it
    ],
)
def test_odd_base_spellings_read_as_feedparser_reads_them(
    attribute: bytes, read_by_feedparser: list[bytes]
) -> None:
    """Spellings expat refuses and the extractor lets through: feedparser's loose parser
    reads some as a base and drops others; either way the document goes to it."""
    document = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry>'
        b'<id>https://e.org/1</id><title>a</title><content type="html"%s>'
        b"&lt;a href=&quot;x.html&quot;&gt;x&lt;/a&gt;</content></entry></feed>" % attribute
    )
    feed = parse_feed(document, url=URL)
    assert read_by_feedparser == [document]
    assert shown(feed) == shown(via_feedparser(document, ""))


def test_text_that_reads_like_a_base_attribute_reads_as_feedparser_does(
    read_by_feedparser: list[bytes],
) -> None:
    """feedparser rewrites bodies to resolve their links whenever the document seems
    to set a base; so "a base = 1" in a title sends the document to it as well, and
    even an odd body shows what feedparser shows."""
    document = (
        b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
        b"<item><title>a base = 1</title><guid>http://e.com/1</guid>"
        b'<description>&lt;!\' &lt;a href="foo"&gt;</description></item></channel></rss>'
    )
    feed = parse_feed(document, url=URL)
    assert read_by_feedparser == [document]
    assert shown(feed) == shown(via_feedparser(document, ""))
    read_by_feedparser.clear()
    parse_feed(document.replace(b"a base = 1", b"a"), url=URL)
    assert read_by_feedparser == []


MRSS = 'xmlns:media="http://search.yahoo.com/mrss/"'


@pytest.mark.parametrize(
    ("shape", "item", "fast"),
    [
        (
            "group after the title",
            "<title>t</title><media:group><media:title>m</media:title>"
            "<media:description>d &amp; e</media:description></media:group>",
            True,
        ),
        (
            "group before the title",
            "<media:group><media:title>m</media:title></media:group><title>t</title>",
            True,
        ),
        (
            "thumbnail beside an image",
            "<title>t</title><media:content url='http://a/1.jpg' "
            "medium='image'/><media:thumbnail url='http://a/2.jpg'/>",
            True,
        ),
        (
            "description inside an image",
            "<title>t</title><media:content url='http://a/1.jpg' "
            "medium='image'><media:description>alt?</media:description></media:content>",
            True,
        ),
        (
            "CDATA description",
            "<title>t</title><media:group><media:description><![CDATA[a "
            "<b>b</b>]]> &lt;c&gt;</media:description></media:group>",
            True,
        ),
        (
            "description and summary",
            "<title>t</title><summary>s</summary><media:group>"
            "<media:description>d</media:description></media:group>",
            False,
        ),
        (
            "two descriptions",
            "<title>t</title><media:description>a</media:description>"
            "<media:group><media:description>d</media:description></media:group>",
            False,
        ),
        (
            "markup in a description",
            "<title>t</title><media:group><media:description>a "
            "<b>b</b></media:description></media:group>",
            False,
        ),
        ("a DTD entity", "<title>t</title><media:description>&eacute;</media:description>", False),
        ("media:title first", "<media:title>m</media:title><title>t</title>", False),
        (
            "empty title",
            "<title></title><media:group><media:title>m</media:title></media:group>",
            False,
        ),
        (
            "thumbnail without url",
            "<title>t</title><media:thumbnail>http://a/2.jpg</media:thumbnail>",
            False,
        ),
    ],
)
def test_media_rss_shapes(shape: str, item: str, fast: bool, fast_results: list[Any]) -> None:
    """Media RSS shapes either read like feedparser on the fast path or go to feedparser."""
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" {MRSS}>'
        f"<title>f</title><entry><id>urn:x:1</id>{item}</entry>"
        f"<entry><id>urn:x:2</id><title>two</title></entry></feed>"
    ).encode()
    feed = parse_feed(body, url=URL)
    assert bool(fast_results) == fast, shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert shown(feed) == shown(via_feedparser(body, "")), shape
