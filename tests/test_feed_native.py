"""fastfeedparser's native route (plugins/feeds/native.py) reads what its public one does.

The route calls fastfeedparser's private extractor and reads the feed fields itself,
so it is proved here over every document of the corpus: same entries, same title,
link, links and author as `fastfeedparser.parse` gives, and the same exception where
that raises. A fastfeedparser release that is not vetted takes the public route; the
last test shows users then see the same posts.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import fastfeedparser
import pytest

from plugins.feeds import native
from plugins.feeds.parse import FeedParseError, parse_feed

FIXTURES = Path(__file__).parent / "fixtures"
FEED_FIELDS = ("title", "link", "links", "author")


def xml_documents() -> list[Path]:
    corpus = sorted(p for p in (FIXTURES / "feedparser").rglob("*.xml") if p.is_file())
    return corpus + sorted((FIXTURES / "feeds").glob("*.xml"))


def outcome(parse: Any, body: bytes) -> Any:
    try:
        return parse(body)
    except Exception as exc:
        return type(exc)


@pytest.fixture
def vetted() -> None:
    version = importlib.metadata.version("fastfeedparser")
    if native._route() is None:
        pytest.skip(f"fastfeedparser {version} is not vetted for the native route")


@pytest.mark.usefixtures("vetted")
def test_the_native_route_reads_every_corpus_document_as_fastfeedparser_does() -> None:
    taken = 0
    differing: dict[str, str] = {}
    for path in xml_documents():
        body = path.read_bytes()
        ours = outcome(native.parse, body)
        if ours is None:
            continue  # the public route reads it
        theirs = outcome(lambda b: fastfeedparser.parse(b, include_tags=False), body)
        name = path.relative_to(FIXTURES).as_posix()
        if isinstance(ours, type) or isinstance(theirs, type):
            if ours is not theirs:
                differing[name] = f"{ours!r} != {theirs!r}"
            continue
        taken += 1
        if ours["entries"] != theirs["entries"]:
            differing[name] = "entries differ"
        for field in FEED_FIELDS:
            if ours["feed"].get(field) != theirs["feed"].get(field):
                differing[name] = (
                    f"{field}: {ours['feed'].get(field)!r} != {theirs['feed'].get(field)!r}"
                )
    assert not differing, "\n".join(f"{k}: {v}" for k, v in differing.items())
    # Most of the corpus is well-formed UTF-8 RSS and Atom, which the extractor reads.
    assert taken > 1000


@pytest.mark.usefixtures("vetted")
def test_documents_the_extractor_hands_back_take_the_public_route() -> None:
    rss_1 = (FIXTURES / "feedparser/wellformed/namespace/rss1.0withModules.xml").read_bytes()
    assert native.parse(rss_1) is None  # RDF: fastfeedparser reads it with lxml
    assert parse_feed(rss_1, url="https://example.com/rdf").posts


@pytest.mark.usefixtures("vetted")
@pytest.mark.parametrize(
    ("shape", "description", "after"),
    [
        ("a byte that is not UTF-8", b"caf\xe9", b""),
        ("a byte that is not UTF-8, after the root element", b"x", b"\xff"),
        ("windows-1252 punctuation", "\u2019".encode("cp1252"), b""),
        ("an unclosed CDATA section", b"<![CDATA[abc", b""),
        ("a CDATA section opened after the root element", b"x", b"<![CDATA["),
        ("]]> in text", b"a ]]> b", b""),
    ],
)
def test_the_extractor_reads_no_document_the_skipped_gate_checks_would_refuse(
    shape: str, description: bytes, after: bytes
) -> None:
    """The gate skips its UTF-8 and CDATA checks for what the extractor has read
    (`fast_path_shapes(well_formed=True)`): this is the extractor's side of that."""
    document = rss(b"<title>T</title>").replace(
        b"<title>a</title>", b"<title>a</title><description>" + description + b"</description>"
    )
    assert native.parse(document + after) is None, shape
    assert native.parse(rss(b"<title>T</title>")) is not None


def test_an_unvetted_release_takes_the_public_route_and_users_see_the_same_posts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    documents = [p.read_bytes() for p in xml_documents()]
    before = [outcome(lambda b: parse_feed(b, url="https://example.com/f"), b) for b in documents]
    native._route.cache_clear()
    monkeypatch.setattr(native, "VETTED_VERSIONS", frozenset())
    try:
        assert native.parse(documents[0]) is None
        after = [
            outcome(lambda b: parse_feed(b, url="https://example.com/f"), b) for b in documents
        ]
    finally:
        native._route.cache_clear()
    assert after == before
    assert sum(1 for result in after if result is not FeedParseError) > 1000


def rss(channel: bytes, namespaces: bytes = b"") -> bytes:
    return (
        b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0" ' + namespaces + b"><channel>"
        + channel + b"<item><title>a</title><guid>1</guid></item></channel></rss>"
    )  # fmt: skip


def atom(head: bytes) -> bytes:
    return (
        b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        + head + b"<entry><id>1</id><title>x</title></entry></feed>"
    )  # fmt: skip


ATOM_NS = b'xmlns:atom="http://www.w3.org/2005/Atom"'
RARER_SHAPES = {
    "an Atom <name> inside an RSS <author>": rss(
        b'<title>T</title><author> <name xmlns="http://www.w3.org/2005/Atom">Jane</name></author>'
    ),
    "an empty RSS title, then atom:title; atom:author; links of every kind": rss(
        b"<title> </title><atom:title>T</atom:title>"
        b'<atom:link rel="self" href="http://e.com/f"/><atom:link href="http://e.com/"/>'
        b'<atom:link rel="alternate"/><atom:author><atom:name>A</atom:name></atom:author>',
        ATOM_NS,
    ),
    "an RSS link in atom:link's link attribute, and managingEditor": rss(
        b'<atom:link link=" http://e.com/ " rel="related"/>'
        b"<managingEditor>ed@e.com (Ed)</managingEditor>",
        ATOM_NS,
    ),
    "Atom: hub, two alternates, a related link, managingEditor": atom(
        b'<title>T</title><link rel="hub" href="h"/><link rel="alternate" href="http://a/"/>'
        b'<link rel="alternate" href="http://b/"/><link rel="related" href="http://c/"/>'
        b"<managingEditor>Ed</managingEditor>"
    ),
    "Atom: two authors, only the second named": atom(
        b"<title>T</title><author><email>a@e.com</email></author><author><name>B</name></author>"
    ),
    "Atom: no title text, an author without a name, a comment": atom(
        b'<title type="html"></title><author><email>a@e.com</email></author><!-- c -->'
        b'<link href="http://a/"/>'
    ),
}


@pytest.mark.usefixtures("vetted")
@pytest.mark.parametrize("shape", RARER_SHAPES)
def test_feed_fields_of_rarer_shapes(shape: str) -> None:
    document = RARER_SHAPES[shape]
    ours = native.parse(document)
    theirs = fastfeedparser.parse(document, include_tags=False)
    assert ours is not None, shape
    assert ours["entries"] == theirs["entries"]
    assert {f: ours["feed"].get(f) for f in FEED_FIELDS} == {
        f: theirs["feed"].get(f) for f in FEED_FIELDS
    }
