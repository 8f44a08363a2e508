"""fastfeedparser's native entry extractor, without its Python pass over the feed fields.

On a small document `fastfeedparser.parse` spends about three quarters of its time
outside its native extractor, most of it in `_parse_feed_info`, which reads some
twenty channel fields; Starling reads four (title, link, links, author). `parse`
runs the same steps as `fastfeedparser.parse` up to and including the extractor,
then reads those four fields itself, the way `_parse_feed_info` reads them: 27 %
fewer instructions over the benchmark's real-mix XML documents (bench/README.md,
round 5).

This leans on fastfeedparser's private names, so it runs only with a version in
`VETTED_VERSIONS`: tests/test_feed_native.py checks that both routes give the same
entries and fields for every document of the corpus. Any other version, a build
without the extractor, a document the extractor hands back, and any surprise fall
back to the public `fastfeedparser.parse`, so a new release can cost speed, never
correctness. To vet a release: add it here and run that test.
"""

from __future__ import annotations

import functools
import html
import importlib.metadata
import logging
from collections.abc import Callable
from typing import Any, Final

log = logging.getLogger(__name__)

VETTED_VERSIONS: Final = frozenset({"0.6.5"})

_ATOM10: Final = "http://www.w3.org/2005/Atom"
_RSS1_CHANNEL: Final = "{http://purl.org/rss/1.0/}channel"
_DC_CREATOR: Final = "{http://purl.org/dc/elements/1.1/}creator"
# Larger documents get fastfeedparser's check for an HTML page first (its
# `_HTML_HEAD_BYTES`); the public route runs it.
_MAX_BYTES: Final = 256 * 1024
# An RSS document with fewer entries than this that is larger than _REPARSE_BYTES
# may be re-read by fastfeedparser as HTML: the public route decides.
_FEW_ENTRIES: Final = 5
_REPARSE_BYTES: Final = 20000
# Links that fastfeedparser leaves out of the feed's `links`.
_UNLISTED_RELS: Final = frozenset({"hub", "self", "replies", "edit"})


def parse(body: bytes) -> dict[str, Any] | None:
    """`fastfeedparser.parse(body, include_tags=False)` as far as Starling reads it
    (its entries; the feed's title, link, links and author), or None where only the
    public route can say (see the module docstring). Raises what that would raise
    on the steps both share."""
    route = _route()
    # fastfeedparser tries JSON first on exactly these; the public route does that.
    if route is None or body.lstrip().startswith(b"{"):
        return None
    return route(body)


@functools.cache
def _route() -> Callable[[bytes], dict[str, Any] | None] | None:
    """The native route for the installed fastfeedparser, or None (public route)."""
    try:
        version = importlib.metadata.version("fastfeedparser")
        from fastfeedparser import main
    except Exception:  # not installed the way we know: the public route still works
        return None
    if version not in VETTED_VERSIONS or main._core is None:
        log.info("fastfeedparser %s: feeds are read through its public parse()", version)
        return None
    prepare = main._prepare_xml_bytes
    extract = main._core.parse_entries
    # Plain dicts (fastfeedparser's own only add attribute access, which nothing here
    # uses): the normaliser reads a plain dict in place without checking its type.
    dict_type = dict
    parse_date = main._parse_date
    may_reparse = main._html_reparse_may_find_more_items
    parse_root = main._parse_xml_root

    def native(body: bytes) -> dict[str, Any] | None:
        xml, malformed = prepare(body)
        if malformed or len(xml) > _MAX_BYTES:
            return None
        # include_content, include_tags, include_media, include_enclosures
        found = extract(xml, dict_type, parse_date, html.unescape, True, False, True, True)
        if isinstance(found, str):  # handed back: fastfeedparser reads it with lxml
            return None
        kind, atom_namespace, header, entries = found
        if (
            kind == "rss"
            and len(entries) < _FEW_ENTRIES
            and len(xml) > _REPARSE_BYTES
            and may_reparse(xml, len(entries))
        ):
            return None
        root = parse_root(header)
        channel = root.find("channel") if kind == "rss" else root
        if channel is None:
            return None
        return {"feed": feed_fields(channel, kind, atom_namespace), "entries": entries}

    return native


def feed_fields(channel: Any, kind: str, atom_namespace: str | None) -> dict[str, Any]:
    """The feed's title, link, links and author as `_parse_feed_info` reads them from
    the channel (RSS) or root (Atom) element: each field's first non-empty candidate."""
    atom = "{" + (atom_namespace or _ATOM10) + "}"
    value = _ChildValues(channel)
    if kind == "rss":
        title = (
            value.text("title")
            or value.text(atom + "title")
            or value.path(_RSS1_CHANNEL, "{http://purl.org/rss/1.0/}title")
        )
        link = (
            value.text("link")
            or value.attribute(atom + "link", "href")
            or value.attribute(atom + "link", "link")
        )
        author = (
            value.text("author")
            or value.path(atom + "author", atom + "name")
            or value.path(_RSS1_CHANNEL, _DC_CREATOR)
            or value.path("author", atom + "name")
        )
    else:
        title = value.text(atom + "title")
        link = value.attribute(atom + "link", "href") or value.attribute(atom + "link", "link")
        author = value.path(atom + "author", atom + "name")
    feed: dict[str, Any] = {}
    if title:
        feed["title"] = title
    if link:
        feed["link"] = link
    if author or (author := value.text("managingEditor")):
        feed["author"] = author
    links, alternate = _links(value.all(atom + "link"))
    if alternate:
        feed["link"] = alternate
    feed["links"] = links
    return feed


def _links(elements: list[Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The feed's `links` from its link elements, and the alternate link that replaces
    its `link`, if any."""
    links: list[dict[str, Any]] = []
    alternate: str | None = None
    for element in elements:
        rel = element.get("rel")
        href = element.get("href") or element.get("link")
        if rel == "alternate" and href and not alternate:
            alternate = href
        elif rel is None and href:
            alternate = alternate or href
            continue
        elif rel in _UNLISTED_RELS:
            continue
        links.append(
            {"rel": rel, "type": element.get("type"), "href": href, "title": element.get("title")}
        )
    if alternate:
        links.insert(0, {"rel": "alternate", "type": "text/html", "href": alternate})
    return links, alternate


class _ChildValues:
    """Text and attributes of an element's children, found as fastfeedparser finds them
    (the first child of a tag), stripped, and None when empty.

    fastfeedparser also looks for a plain name under an unresolved "rss:", "atom:" or
    "dc:" prefix; a tag keeps one only when the prefix is undeclared, and the
    extractor hands such documents back, so on this route there are none.
    """

    def __init__(self, parent: Any) -> None:
        # One walk (each `.tag` builds a string; a `find` walks the children again).
        self.by_tag: dict[str, list[Any]] = {}
        for child in parent:
            tag = child.tag
            if isinstance(tag, str):  # not a comment or processing instruction
                if (same := self.by_tag.get(tag)) is None:
                    self.by_tag[tag] = [child]
                else:
                    same.append(child)

    def all(self, tag: str) -> list[Any]:
        return self.by_tag.get(tag, [])

    def text(self, tag: str) -> str | None:
        same = self.by_tag.get(tag)
        return _stripped(same[0].text) if same else None

    def attribute(self, tag: str, name: str) -> str | None:
        same = self.by_tag.get(tag)
        return _stripped(same[0].get(name)) if same else None

    def path(self, parent: str, child: str) -> str | None:
        """The text of the first `child` of any `parent` child (ElementPath "a/b")."""
        for element in self.by_tag.get(parent, ()):
            found = element.find(child)
            if found is not None:
                return _stripped(found.text)
        return None


def _stripped(value: str | None) -> str | None:
    return (value.strip() or None) if value else None
