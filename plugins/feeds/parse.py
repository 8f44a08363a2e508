"""Feed documents (RSS, Atom, RDF, JSON Feed) to `Post`s.

`fastfeedparser` is fast but loses data on a few document shapes; `feedparser` is
slow but thorough. Documents the fast parser is known to mishandle go straight to
`feedparser`, and anything it fails on is retried there, so callers see one
behaviour. Both results are read through the same normaliser, and ids are computed
from the raw fields, so an item keeps its `native_id` whichever parser read it.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import html as _stdlib_html
import io
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from bot.html import absolute_http_url, clip_text, html_to_text, plain_text
from bot.known import KnownPosts, placeholder
from bot.model import Author, Media, Post
from plugins.feeds import native
from plugins.feeds.cdata import Markup
from plugins.feeds.cdata import markup as cdata_markup
from plugins.feeds.fastpath import (
    _UTF8_BOM,
    EntryBases,
    add_atom_author_uris,
    add_media_rss,
    base_attribute,
    entry_bases,
    fast_path_shapes,
    media_rss_fields,
)

__all__ = ["FeedParseError", "ParsedFeed", "parse_feed"]

log = logging.getLogger(__name__)

MAX_TEXT_CHARS: Final = 4000
MAX_TITLE_CHARS: Final = 300
MAX_ID_CHARS: Final = 256
MAX_MEDIA: Final = 8
MAX_LINKS: Final = 20

_FIRST_ELEMENT: Final = re.compile(rb"<([A-Za-z_][\w.:-]*)")
# Root elements `_FEED_ROOT_HINT` finds (so `_looks_like_html` is false for them).
_FEED_ROOTS: Final = frozenset((b"rss", b"feed", b"rdf", b"channel"))
_FEED_ROOT_HINT: Final = re.compile(rb"<(?:[\w.-]+:)?(?:rss|feed|rdf|channel)\b", re.IGNORECASE)
_URI_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_EMAIL: Final = re.compile(r"^[^@\s<>()]+@[^@\s<>()]+$")
# What sends a name through `plain_text`'s full route (split/join removed line breaks).
_NAME_MARKUP: Final = re.compile(r"[<&\x00\ud800-\udfff]")
_IMAGE_EXTENSIONS: Final = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")


# URLs, URNs, tag: URIs and hashes are unique beyond one feed; short counters are not.
GLOBAL_ID: Final = re.compile(
    r"^([a-z][a-z0-9+.-]*:\S|hash:|[0-9a-f-]{32,}$|\S{24,})", re.IGNORECASE
)


class FeedParseError(Exception):
    """The body is not a readable feed; `str(err)` is a one-line reason for humans."""


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    title: str
    link: str
    posts: list[Post]


def parse_feed(
    body: bytes,
    *,
    content_type: str = "",
    url: str = "",
    network: str = "feeds",
    id_host: str = "",
    known: KnownPosts | None = None,
) -> ParsedFeed:
    """Parse one fetched feed document into posts, in the order the document lists them.

    `content_type` is the HTTP header (its charset matters); `url` is the address the
    document came from, used to resolve relative links. With `id_host`, ids that are
    not globally unique ("1", "42") get that host as prefix (see `scoped_id`). Items
    in `known` (unchanged since the relay admitted them) come back as placeholders
    (`bot.known`), without the cost of converting them. Raises only `FeedParseError`.
    """
    try:
        return _parse(bytes(body), content_type or "", url or "", network, id_host, known)
    except FeedParseError:
        raise
    except Exception as exc:  # a bug here must not take the poller down with it
        log.warning("feed parser failed unexpectedly on %s", url or "<bytes>", exc_info=True)
        raise FeedParseError("the feed could not be read (parser error)") from exc


# -- dispatch -------------------------------------------------------------------


def scoped_id(native_id: str, id_host: str) -> str:
    """Give an id that is not globally unique (guid "1", "42") its feed's host.

    RSS guids and Atom ids are meant to be unique everywhere, and then the same
    item reached through two addresses is delivered once. Many feeds number their
    items instead; unscoped, item "1" of one feed would hide item "1" of another.
    """
    if not id_host or GLOBAL_ID.match(native_id):
        return native_id
    return f"{id_host}/{native_id}"


def _parse(
    body: bytes, content_type: str, url: str, network: str, id_host: str, known: KnownPosts | None
) -> ParsedFeed:
    head = body[len(_UTF8_BOM) :] if body.startswith(_UTF8_BOM) else body
    head = head.lstrip()
    if not head:
        raise FeedParseError("the document is empty")
    mime = content_type.split(";", 1)[0].strip().lower()
    if head.startswith((b"{", b"[")) or (
        (mime.endswith(("/json", "+json"))) and not head.startswith(b"<")
    ):
        return _parse_json_feed(head, url, network, id_host, known)
    first = _first_element_name(head[:4096])
    # A feed's root element is never an HTML page's: the commonest case, checked first.
    if first.lower() not in _FEED_ROOTS and _looks_like_html(head):
        raise FeedParseError("this is an HTML page, not a feed")

    data: dict[str, Any] | None = None
    # fastfeedparser's native extractor reads only well-formed UTF-8, so a document it
    # has read needs no UTF-8 or CDATA check in the gate (the dearest on a large one),
    # and where its CDATA sections lie is known: the searches below skip their text.
    extracted = _extracted(body)
    markup = cdata_markup(body) if extracted is not None else None
    has_base = b"xml:base" in (body if markup is None else markup.joined)
    # The xml:base shapes read here: on the root and entries' contents, or on each one.
    bases = entry_bases(body, markup) if has_base else None
    # fastfeedparser reports no title type, so decide it for the whole document.
    is_atom = False
    media: list[dict[str, Any]] | None = None
    # The shapes found at "<" while gating, so none of them is searched for again.
    shapes = fast_path_shapes(
        body,
        content_type,
        base_ok=not has_base or bases is not None,
        entries=True,
        well_formed=extracted is not None,
        markup=markup,
    )
    found: frozenset[str] = shapes or frozenset()
    # Where the entries start, when the walk above recorded them (large documents).
    starts = shapes.entry_starts if shapes is not None else None
    if shapes is not None:
        is_atom = first == b"feed"
        has_media = "media" in found
        media = media_rss_fields(body, is_atom=is_atom, markup=markup) if has_media else None
        if not has_media or media is not None:
            data = _fastfeedparser(body, extracted)
    if data is not None:
        if "uri" in found and not (is_atom and add_atom_author_uris(body, data, starts, markup)):
            data = None
        if data is not None and media is not None and not add_media_rss(data, media):
            data = None
        if data is not None and bases is not None and not _bases_fit(data, bases):
            data = None
    if data is not None:
        html_titles = not is_atom or "html_title" in found
        return _build(
            data,
            url=url,
            network=network,
            fast=True,
            html_titles=html_titles,
            id_host=id_host,
            known=known,
            bases=bases,
        )
    data = _feedparser(body, content_type, markup)
    return _build(
        data,
        url=url,
        network=network,
        fast=False,
        html_titles=False,
        id_host=id_host,
        known=known,
    )


@functools.cache
def _feedparser_module() -> Any:
    """feedparser, loaded when first needed (memory at rest), reading with expat.

    It asks xml.sax for the "drv_libxml2" driver first (`PREFERRED_XML_PARSERS`), on
    every parse. Where that is not installed (it is not a dependency), each parse
    searched `sys.path` for it in vain (~25 us) before taking expat; where it is,
    documents would be read by another parser than the one the fast path was
    compared with (tests/test_feed_fast_path.py). So name expat.
    """
    import feedparser
    import feedparser.api

    feedparser.api.PREFERRED_XML_PARSERS = ["xml.sax.expatreader"]
    return feedparser


def _looks_like_html(head: bytes) -> bool:
    """An HTML page (a site's front page, a login wall) rather than a feed."""
    lowered = head[:4096].lower()
    if not (lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered):
        return False
    first = _first_element_name(lowered)
    if first not in (b"html", b"head", b"body"):
        return False
    # An Atom feed wrapped in an XHTML page is still a feed; feedparser reads those.
    return not _FEED_ROOT_HINT.search(head[:262144])


def _first_element_name(doc: bytes) -> bytes:
    """The first element's local name, skipping declarations, comments and doctype."""
    pos = 0
    end = len(doc)
    while pos < end:
        lt = doc.find(b"<", pos)
        if lt < 0:
            return b""
        if doc.startswith(b"<!--", lt):
            close = doc.find(b"-->", lt + 4)
            pos = end if close < 0 else close + 3
        elif doc.startswith((b"<?", b"<!"), lt):
            if doc[lt : lt + 9].lower() == b"<!doctype" and b"html" in doc[lt : lt + 20]:
                return b"html"
            close = doc.find(b">", lt)
            pos = end if close < 0 else close + 1
        else:
            match = _FIRST_ELEMENT.match(doc, lt)
            if not match:
                pos = lt + 1
                continue
            return match.group(1).rsplit(b":", 1)[-1]
    return b""


def _extracted(body: bytes) -> dict[str, Any] | None:
    """What fastfeedparser's native route read (`plugins.feeds.native`), or None."""
    try:
        return native.parse(body)
    except Exception as exc:  # the public route or feedparser will say what is wrong
        log.debug("fastfeedparser's extractor gave up: %s", exc)
        return None


def _fastfeedparser(body: bytes, extracted: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """fastfeedparser's result, or None when feedparser must try instead; `extracted`
    is its native route's (`_extracted`), where that read the document."""
    # Loaded on the first parse: with lxml and dateutil it is ~5.5 MiB that an idle
    # bot (no feed followed yet, or between restarts and first poll) does not need.
    import fastfeedparser

    result: Any = extracted
    if result is None:
        try:
            # Always bytes: given a str that looks like a URL, it would fetch it.
            # No tags: nothing here reads categories, and they cost ~4 % of the parse.
            result = fastfeedparser.parse(body, include_tags=False)
        except Exception as exc:
            log.debug("fastfeedparser gave up: %s", exc)
            return None
    if not isinstance(result, dict):
        return None
    entries = result.get("entries")
    if not isinstance(entries, list) or not entries:
        return None
    return result


def _feedparser(body: bytes, content_type: str, markup: Markup | None = None) -> dict[str, Any]:
    # No content-location: feedparser would resolve ids against it too, so an Atom
    # id of "1" would become "https://host/1" here but stay "1" on the fast path.
    # Links are resolved against `url` by the normaliser instead.
    feedparser = _feedparser_module()
    headers = {"content-type": content_type} if content_type else {}
    try:
        # A stream, never bytes or str: feedparser opens strings as paths or URLs.
        # Its sanitiser keeps the text inside <iframe> and the like; nh3 drops it, so
        # it gets the raw markup, as from the fast path. Its pass that resolves the
        # links in HTML bodies rewrites every body to resolve them against a base;
        # with none in the document there is none to resolve against (the normaliser
        # resolves them against `url`), so the bodies stay raw, as on the fast path
        # (a third of the time of a small document). With `markup` (`cdata.markup`),
        # text in CDATA sections is no attribute.
        result: Any = feedparser.parse(
            io.BytesIO(body),
            response_headers=headers,
            sanitize_html=False,
            resolve_relative_uris=base_attribute(body if markup is None else markup.joined),
        )
    except Exception as exc:
        raise FeedParseError("the document is not valid XML or JSON") from exc
    if not isinstance(result, dict):
        raise FeedParseError("the document is not valid XML or JSON")
    head = body[len(_UTF8_BOM) :] if body.startswith(_UTF8_BOM) else body
    root = _first_element_name(head.lstrip()[:4096].lower())
    # feedparser calls any <item> an entry; only a recognised feed counts, even an
    # empty one (a brand-new feed has no items yet). CDF has no version, only a root.
    if dict.get(result, "version") or root in (b"rss", b"feed", b"rdf", b"channel"):
        return result
    if root in (b"html", b"head", b"body"):
        raise FeedParseError("this is an HTML page, not a feed")
    if dict.get(result, "bozo") and not (root and dict.get(result, "entries")):
        raise FeedParseError("the document is not valid XML or JSON")
    raise FeedParseError("no feed entries found in this XML document")


# -- XML feeds (both parsers' shapes) ---------------------------------------------


def _build(
    data: dict[str, Any],
    *,
    url: str,
    network: str,
    fast: bool,
    html_titles: bool,
    id_host: str = "",
    known: KnownPosts | None = None,
    bases: EntryBases | None = None,
) -> ParsedFeed:
    """Posts from either parser's result; `fast` says which one produced `data`.

    `bases` are the `xml:base`s of the root and of each entry's content
    (fastfeedparser ignores them): relative URLs resolve against the root's, and
    those in an entry's body against its content's.
    """
    # The document's address still names the feed (its host is the default author).
    resolve = bases.root if bases is not None and bases.root else url
    feed = _mapping(dict.get(data, "feed"))
    title = clip_text(plain_text(_str(feed.get("title"))), MAX_TITLE_CHARS)
    link = absolute_http_url(_str(feed.get("link")), resolve) or _alternate_link(feed, resolve)
    feed_author = _person(feed)
    default_author = feed_author or Author(name=title or _host(url) or "feed")
    posts: list[Post] = []
    seen: set[str] = set()
    content_base = ""
    for index, raw in enumerate(_list(dict.get(data, "entries"))):
        entry = _mapping(raw)
        if bases is not None:
            content_base = bases.content[index] or bases.root
        try:
            post = _entry_post(
                entry,
                url=resolve,
                network=network,
                author=default_author,
                fast=fast,
                html_titles=html_titles,
                id_host=id_host,
                known=known,
                content_base=content_base,
            )
        except Exception:
            log.warning("skipped an unreadable entry in %s", url or "<bytes>", exc_info=True)
            continue
        if post.native_id not in seen:
            seen.add(post.native_id)
            posts.append(post)
    return ParsedFeed(title=title, link=link or absolute_http_url(url), posts=posts)


def _uris_absolute(nodes: list[Mapping[str, Any]], *, links: bool) -> bool:
    """Whether the ids of the entries (`nodes[1:]`), the author URIs and Media RSS
    URLs of the feed (`nodes[0]`) and the entries, and with `links` their links, are
    all absolute (or empty)."""
    for index, node in enumerate(nodes):
        if index and _relative(node.get("id")):
            return False
        if _relative(_mapping(node.get("author_detail")).get("href")):
            return False
        for person in _list(node.get("authors")):
            person = _mapping(person)
            if _relative(person.get("href")) or _relative(person.get("uri")):
                return False
        for key in ("media_content", "media_thumbnail"):
            for item in _list(node.get(key)):
                if _relative(_mapping(item).get("url")):
                    return False
        if links:
            if _relative(node.get("link")):
                return False
            for link in _list(node.get("links")):
                if _relative(_mapping(link).get("href")):
                    return False
    return True


def _relative(value: object) -> bool:
    """Whether a parser field holds a URI without a scheme (`_str` of it, stripped)."""
    uri = _str(value)
    if not uri or uri.startswith(("http://", "https://")):
        return False  # the commonest: nothing, or an absolute web address
    uri = uri.strip()
    return bool(uri) and not _URI_SCHEME.match(uri)


def _bases_fit(data: dict[str, Any], bases: EntryBases) -> bool:
    """Whether `bases` apply to fastfeedparser's entries as feedparser applies them: one
    per entry; every id and author URI absolute (feedparser resolves them against the
    root's base) and every Media RSS URL too (it does not); without a base on the
    root, every link too (feedparser resolves one after a content against that
    content's base); and an entry with a content base takes its body from that
    content (a summary resolves against another)."""
    entries = data.get("entries")
    if not isinstance(entries, list) or len(entries) != len(bases.content):
        return False
    nodes = [_mapping(data.get("feed")), *(_mapping(e) for e in entries)]
    if not _uris_absolute(nodes, links=not bases.root):
        return False
    for entry, base in zip(nodes[1:], bases.content, strict=True):
        if base:
            body, _ = _entry_body(entry)
            for item in _list(entry.get("content")):
                if _mapping(item).get("value") is body:
                    break
            else:
                return False
    return True


def _entry_post(
    entry: Mapping[str, Any],
    *,
    url: str,
    network: str,
    author: Author,
    fast: bool,
    html_titles: bool,
    id_host: str = "",
    known: KnownPosts | None = None,
    content_base: str = "",
) -> Post:
    raw_id, raw_link = _raw_id_and_link(entry, fast=fast)
    created, updated = _entry_dates(entry)
    edited = updated if created and updated and updated > created else None
    # Where the id is the link, it is resolved once for both id and permalink (not
    # before the known check otherwise: known items are the common case when polling).
    abs_link = absolute_http_url(raw_link, url) if raw_link and raw_id in ("", raw_link) else None
    # With an id or a link the identity is known now; else it is a hash of the text.
    native_id = (
        scoped_id(_native_id(raw_id, raw_link, url, "", "", abs_link), id_host)
        if raw_id or raw_link
        else ""
    )
    if native_id and known is not None and (f"{network}:{native_id}", edited) in known:
        return placeholder(network, native_id, created or updated, edited)
    if abs_link is None:
        abs_link = absolute_http_url(raw_link, url)
    link = abs_link or absolute_http_url(raw_id)

    title = _entry_title(entry, fast=fast, html_titles=html_titles)
    body_html, is_plain = _entry_body(entry)
    if is_plain:
        text, links = html_to_text(
            _stdlib_html.escape(body_html, quote=False), max_chars=MAX_TEXT_CHARS
        )
    else:
        text, links = html_to_text(body_html, content_base or url, max_chars=MAX_TEXT_CHARS)

    if not native_id:
        native_id = scoped_id(_native_id(raw_id, raw_link, url, title, text), id_host)
    return Post(
        network=network,
        native_id=native_id,
        author=_person(entry) or author,
        text=text,
        permalink=link,
        title=title,
        links=tuple(links[:MAX_LINKS]),
        media=_entry_media(entry, url),
        created_at=created or updated,
        edited_at=edited,
    )


def _raw_id_and_link(entry: Mapping[str, Any], *, fast: bool) -> tuple[str, str]:
    """The entry's own id and alternate link, undoing each parser's guesswork.

    fastfeedparser copies the link into a missing id, and takes any lone link as the
    entry link even when it is an enclosure or `rel="self"`; feedparser copies an RSS
    permalink guid into a missing link. Both are undone here so ids and links mean
    the same thing whichever parser read the document.
    """
    raw_id = _str(entry.get("id")).strip()
    raw_link = _str(entry.get("link")).strip()
    if fast:
        if raw_link and (links := _list(entry.get("links"))):
            # One walk: is the link among the alternates, and which is the first one set.
            listed = False
            first = ""
            for item in links:
                link = _mapping(item)
                if _str(link.get("rel") or "alternate") == "alternate":
                    href = _str(link.get("href")).strip()
                    if href == raw_link:
                        listed = True
                        break
                    if href and not first:
                        first = href
            if not listed:
                if raw_id == raw_link:
                    raw_id = ""
                raw_link = first
    elif entry.get("guidislink") and raw_link == raw_id:
        raw_link = ""
    return raw_id, raw_link


def _native_id(
    raw_id: str, raw_link: str, base: str, title: str, text: str, abs_link: str | None = None
) -> str:
    """The entry's identity: guid/id, else link, else a hash of what it says.

    Dates never take part, so an item whose `updated` changes is not posted again.
    An id equal to the link is treated as the link (fastfeedparser invents exactly
    that id when there is none), and links are made absolute, so both parsers agree.
    `abs_link` is `absolute_http_url(raw_link, base)`, when the caller has it.
    """
    if raw_id and raw_id != raw_link:
        native_id = raw_id
    elif raw_link:
        if abs_link is None:
            abs_link = absolute_http_url(raw_link, base)
        native_id = abs_link or raw_link
    else:
        digest = hashlib.sha256(f"{title}\n{text}".encode("utf-8", "replace")).hexdigest()
        return f"hash:{digest[:40]}"
    if len(native_id) > MAX_ID_CHARS:
        return "sha256:" + hashlib.sha256(native_id.encode("utf-8", "replace")).hexdigest()
    return native_id


def _entry_title(entry: Mapping[str, Any], *, fast: bool, html_titles: bool) -> str:
    """A one-line title; markup is stripped unless the feed says the title is plain text.

    feedparser sniffs titles for markup, so its "text/plain" can be trusted;
    fastfeedparser labels every RSS title text/plain, markup or not, and drops the
    Atom type, so the caller decides for the whole document.
    """
    raw = _str(entry.get("title"))
    if not raw:
        return ""
    if fast:
        literal = not html_titles
    else:
        literal = _str(_mapping(entry.get("title_detail")).get("type")).lower() == "text/plain"
    if literal:
        return clip_text(_literal_line(raw), MAX_TITLE_CHARS)
    return clip_text(plain_text(raw), MAX_TITLE_CHARS)


def _entry_body(entry: Mapping[str, Any]) -> tuple[str, bool]:
    """The fullest body the entry has, and whether it is plain text rather than HTML."""
    best: tuple[str, bool] = ("", False)
    for item in _list(entry.get("content")):
        content = _mapping(item)
        value = _str(content.get("value"))
        # `not isspace()` is `strip()` being non-empty, without copying a long body.
        if value and not value.isspace():
            kind = _str(content.get("type")).lower()
            if _is_textual(kind):
                if kind not in ("text", "text/plain"):
                    return value, False
                if not best[0]:
                    best = (value, True)
    if best[0]:
        return best
    for key in ("summary", "description"):
        value = _str(entry.get(key))
        if value and not value.isspace():
            detail = _mapping(entry.get("summary_detail"))
            return value, _str(detail.get("type")).lower() == "text/plain"
    return "", False


def _is_textual(kind: str) -> bool:
    """Whether content of this type is readable text rather than e.g. a base64 blob."""
    return (
        not kind
        or kind in ("text", "html", "xhtml")
        or kind.startswith("text/")
        or ("html" in kind or kind.endswith("xml"))
    )


def _entry_dates(entry: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """`_entry_date` of "published" and "updated"; the same date is read once (Atom
    feeds often give both, equal)."""
    created = _entry_date(entry, "published")
    if entry.get("updated") == entry.get("published") and entry.get("updated_parsed") == entry.get(
        "published_parsed"
    ):
        return created, created
    return created, _entry_date(entry, "updated")


def _entry_date(entry: Mapping[str, Any], key: str) -> datetime | None:
    parsed = entry.get(f"{key}_parsed")
    if isinstance(parsed, time.struct_time):
        try:
            return datetime(*parsed[:6], tzinfo=UTC)
        except (ValueError, OverflowError):
            return None
    return _date_from_str(_str(entry.get(key)))


def _date_from_str(value: str) -> datetime | None:
    """An aware UTC datetime from RFC 3339 (JSON Feed, fastfeedparser) or RFC 822 text."""
    value = value.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    # Whole seconds: feedparser drops fractions, so both parsers agree.
    if moment.tzinfo is None:
        moment = moment.replace(microsecond=0, tzinfo=UTC)
    elif moment.microsecond:
        moment = moment.replace(microsecond=0)
    try:
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _person(node: Mapping[str, Any]) -> Author | None:
    """The entry's (or feed's) author, whichever way either parser spelled it."""
    raw_detail = node.get("author_detail")
    raw_listed = node.get("authors")
    raw_author = node.get("author")
    if raw_detail is None and raw_listed is None and raw_author is None:
        return None  # most entries name no author: nothing below would find one
    detail = _mapping(raw_detail)
    listed = _list(raw_listed)
    # First non-empty of: the first listed author, "author", the author detail.
    name = (
        (_person_name(_str(_mapping(listed[0]).get("name"))) if listed else "")
        or _person_name(_str(raw_author))
        or _person_name(_str(detail.get("name")))
    )
    if not name:
        return None
    href = _str(detail.get("href"))
    if not href:
        for item in listed:
            person = _mapping(item)
            found = person.get("href") or person.get("uri")
            if found:
                href = _str(found)
                break
    return Author(name=name, url=absolute_http_url(href) if href else "")


def _person_name(value: str) -> str:
    """The display name in "jane@ex.com (Jane)", "Jane <jane@ex.com>" or plain "Jane"."""
    value = " ".join(value.split())
    if not value:
        return ""
    if (
        len(value) <= 200
        and not (value[-1] == ")" and "(" in value)
        and not _NAME_MARKUP.search(value)
    ):
        # One line of plain words (split/join left single spaces only, no "<" so no
        # "<email>"): `plain_text` and `clip_text` below would return it unchanged.
        return value
    if value.endswith(")") and "(" in value:
        outside, _, inside = value[:-1].rpartition("(")
        outside, inside = outside.strip(), inside.strip()
        if _EMAIL.match(outside) and inside:
            value = inside
        elif _EMAIL.match(inside) and outside:
            value = outside
    elif value.endswith(">") and "<" in value:
        outside, _, inside = value[:-1].rpartition("<")
        if _EMAIL.match(inside.strip()) and outside.strip():
            value = outside.strip().strip('"')
    return clip_text(plain_text(value), 200)


def _entry_media(entry: Mapping[str, Any], base: str) -> tuple[Media, ...]:
    enclosures = entry.get("enclosures")
    if not enclosures and not entry.get("media_content") and not entry.get("media_thumbnail"):
        # Most entries carry no media: only Atom enclosure links can still add some.
        if enclosures is not None:
            return ()
        for link in _list(entry.get("links")):
            if _mapping(link).get("rel") == "enclosure":
                break
        else:
            return ()
    found: list[Media] = []

    def add(href: object, alt: object = "") -> None:
        media_url = absolute_http_url(_str(href), base)
        if media_url and all(m.url != media_url for m in found) and len(found) < MAX_MEDIA:
            found.append(Media(url=media_url, alt=clip_text(plain_text(_str(alt)), 300)))

    if enclosures is None:  # feedparser keeps them among the links
        enclosures = [
            link for link in _list(entry.get("links")) if _mapping(link).get("rel") == "enclosure"
        ]
    for raw in _list(enclosures):
        enc = _mapping(raw)
        href = enc.get("url") or enc.get("href")
        if _is_image(_str(enc.get("type")), "", _str(href)):
            add(href)
    thumbnails: list[object] = []
    for raw in _list(entry.get("media_content")):
        item = _mapping(raw)
        if _is_image(_str(item.get("type")), _str(item.get("medium")), _str(item.get("url"))):
            add(item.get("url"), item.get("title") or item.get("description"))
        if item.get("thumbnail_url"):
            thumbnails.append(item.get("thumbnail_url"))
    thumbnails.extend(_mapping(t).get("url") for t in _list(entry.get("media_thumbnail")))
    for thumb in thumbnails:
        add(thumb)
    return tuple(found)


def _is_image(mime: str, medium: str, href: str) -> bool:
    mime, medium = mime.strip().lower(), medium.strip().lower()
    if mime or medium:
        return mime.startswith("image/") or medium == "image"
    path = href.split("?", 1)[0].split("#", 1)[0].lower()
    return path.endswith(_IMAGE_EXTENSIONS)


def _alternate_link(node: Mapping[str, Any], base: str) -> str:
    for raw in _list(node.get("links")):
        link = _mapping(raw)
        if _str(link.get("rel") or "alternate") == "alternate":
            href = absolute_http_url(_str(link.get("href")), base)
            if href:
                return href
    return ""


# -- JSON Feed --------------------------------------------------------------------


def _parse_json_feed(
    body: bytes, url: str, network: str, id_host: str = "", known: KnownPosts | None = None
) -> ParsedFeed:
    try:
        data: Any = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, ValueError) as exc:
        raise FeedParseError("the document is not valid XML or JSON") from exc
    if not isinstance(data, dict):
        raise FeedParseError("this JSON document is not a JSON Feed")
    version = _str(data.get("version"))
    items = data.get("items")
    if not isinstance(items, list) or (version and "jsonfeed.org/version/" not in version):
        raise FeedParseError("this JSON document is not a JSON Feed")

    title = clip_text(plain_text(_str(data.get("title"))), MAX_TITLE_CHARS)
    link = absolute_http_url(_str(data.get("home_page_url")), url) or absolute_http_url(url)
    feed_author = _json_author(data, url)
    default_author = feed_author or Author(name=title or _host(url) or "feed")
    posts: list[Post] = []
    seen: set[str] = set()
    for raw in items:
        if not isinstance(raw, dict):
            continue
        try:
            post = _json_item_post(
                raw, url=url, network=network, author=default_author, id_host=id_host, known=known
            )
        except Exception:
            log.warning("skipped an unreadable JSON Feed item in %s", url, exc_info=True)
            continue
        if post.native_id not in seen:
            seen.add(post.native_id)
            posts.append(post)
    return ParsedFeed(title=title, link=link, posts=posts)


def _json_item_post(
    item: Mapping[str, Any],
    *,
    url: str,
    network: str,
    author: Author,
    id_host: str = "",
    known: KnownPosts | None = None,
) -> Post:
    raw_id = item.get("id")
    # The spec says string, but numbers are common in the wild; booleans are nonsense.
    id_text = "" if isinstance(raw_id, bool) else _str(raw_id).strip()
    raw_link = _str(item.get("url")).strip()
    created = _date_from_str(_str(item.get("date_published")))
    updated = _date_from_str(_str(item.get("date_modified")))
    edited = updated if created and updated and updated > created else None
    # With an id or a link the identity is known now; else it is a hash of the text.
    native_id = (
        scoped_id(_native_id(id_text, raw_link, url, "", ""), id_host)
        if id_text or raw_link
        else ""
    )
    if native_id and known is not None and (f"{network}:{native_id}", edited) in known:
        return placeholder(network, native_id, created or updated, edited)
    link = absolute_http_url(raw_link, url) or absolute_http_url(
        _str(item.get("external_url")), url
    )
    # JSON Feed titles are plain text by spec: "<blink>" in one is meant literally.
    title = clip_text(_literal_line(_str(item.get("title"))), MAX_TITLE_CHARS)
    content_html = _str(item.get("content_html"))
    if content_html.strip():
        text, links = html_to_text(content_html, url, max_chars=MAX_TEXT_CHARS)
    else:
        plain = _str(item.get("content_text")) or _str(item.get("summary"))
        text, links = html_to_text(
            _stdlib_html.escape(plain, quote=False), max_chars=MAX_TEXT_CHARS
        )
    if not native_id:
        native_id = scoped_id(_native_id(id_text, raw_link, url, title, text), id_host)

    media: list[Media] = []
    candidates: list[tuple[object, object]] = [
        (item.get("image"), ""),
        (item.get("banner_image"), ""),
    ]
    for raw in _list(item.get("attachments")):
        attachment = _mapping(raw)
        if _str(attachment.get("mime_type")).lower().startswith("image/"):
            candidates.append((attachment.get("url"), attachment.get("title")))
    for href, alt in candidates:
        media_url = absolute_http_url(_str(href), url)
        if media_url and all(m.url != media_url for m in media) and len(media) < MAX_MEDIA:
            media.append(Media(url=media_url, alt=clip_text(plain_text(_str(alt)), 300)))

    return Post(
        network=network,
        native_id=native_id,
        author=_json_author(item, url) or author,
        text=text,
        permalink=link,
        title=title,
        links=tuple(links[:MAX_LINKS]),
        media=tuple(media),
        created_at=created or updated,
        edited_at=edited,
    )


def _json_author(node: Mapping[str, Any], base: str) -> Author | None:
    """JSON Feed 1.1 `authors` (a list) or 1.0 `author` (one object)."""
    people = [_mapping(a) for a in _list(node.get("authors"))]
    people.append(_mapping(node.get("author")))
    for person in people:
        name = clip_text(plain_text(_str(person.get("name"))), 200)
        if name:
            return Author(
                name=name,
                url=absolute_http_url(_str(person.get("url")), base),
                avatar_url=absolute_http_url(_str(person.get("avatar")), base),
            )
    return None


# -- small helpers ------------------------------------------------------------------


def _str(value: object) -> str:
    """Text from a parser field that may be missing, a number, or a nested value."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _mapping(value: object) -> Mapping[str, Any]:
    """A read-only view that bypasses feedparser's deprecated key aliases.

    A plain dict, or one of fastfeedparser's (a dict subclass that only adds
    attribute access), is its own view: nothing here writes to what this returns,
    so copying it would only cost time.
    """
    if type(value) is dict:
        return value
    if isinstance(value, dict):
        kind = type(value)
        # A subclass with dict's own `get` and iteration (fastfeedparser's dicts) reads
        # exactly as the copy would; feedparser's, which remaps keys, is copied.
        if kind.get is dict.get and kind.__iter__ is dict.__iter__:
            return value
        return dict(value)
    return {}


def _list(value: object) -> Sequence[Any]:
    """The items of a list or tuple field (read only, never copied), else none."""
    if isinstance(value, list | tuple):
        return value
    return ()


def _literal_line(text: str) -> str:
    """Plain text (never markup) squeezed onto one line."""
    return " ".join(text.split())


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""
