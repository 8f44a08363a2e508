"""When fastfeedparser reads a feed document right, and what it needs put back.

fastfeedparser decodes by BOM or XML declaration only and loses data on a few
document shapes (found by comparing it with feedparser over the whole corpus:
tests/test_feed_fast_path.py). `fast_path_shapes` decides from the bytes, in as few
passes over them as possible (a 157 KB document costs more to scan than to parse),
and the fix-ups (`add_atom_author_uris`, `add_media_rss`, `uniform_content_base`)
restore from the bytes what it drops, so both parsers give users the same posts.
"""

from __future__ import annotations

import codecs
import functools
import html as _stdlib_html
import itertools
import re
from collections.abc import Iterator
from typing import Any, Final, NamedTuple

from plugins.feeds.cdata import Markup

_UTF8_BOM: Final = b"\xef\xbb\xbf"
_BOMS: Final = (codecs.BOM_UTF32_BE, codecs.BOM_UTF32_LE, _UTF8_BOM, b"\xfe\xff", b"\xff\xfe")
_XML_DECL_ENCODING: Final = re.compile(
    rb"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']"""
)
_CHARSET_PARAM: Final = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.IGNORECASE)
# Markup fastfeedparser reads wrongly, which sends a document to feedparser: inline
# XHTML titles/summaries/bodies come out empty, Atom 0.3 base64/xml modes stay raw,
# DOCTYPE entities are dropped, unescaped markup right inside a body element is lost.
# Patterns that would start with `\b` leave it out and `_word_matches` checks the
# byte before: a leading `\b` stops sre from scanning for the literal prefix, which
# makes a search over a large document about 16 times slower.
_ATOM03_MODE: Final = re.compile(rb"""mode\s*=\s*["'](?:xml|base64)""")
_NAKED_MARKUP: Final = re.compile(
    rb"<(?:description|content:encoded|summary|title)\b[^>]*>[^<]*<[A-Za-z]"
)
# Atom titles default to plain text; a feed that marks them as HTML does so on every one.
_ATOM_HTML_TITLE: Final = re.compile(
    rb"""<(?:[\w.-]+:)?title\b[^>]*\btype\s*=\s*["'](?:text/)?html["']"""
)
# More shapes it gets wrong, found by comparing both parsers over the feedparser corpus
# (tests/test_feed_fast_path.py): Atom content of a binary type stays base64 (a
# media:content only has attributes, so it is left out); Atom 0.3
# author URIs (<url>/<homepage>) are dropped; xml:base and RSS <fullitem>
# are ignored; a bare "&" (ill-formed XML) is recovered differently; numeric
# references to C1 controls (&#146;) are not read as the windows-1252 they mean.
_BINARY_TYPE: Final = re.compile(
    rb"""<(?!media:)(?:[\w.-]+:)?(?:content|summary|title|subtitle)\b[^>]*?\btype\s*=\s*["']"""
    rb"""(?!(?:text|html|xhtml)["']|text/|application/xhtml)"""
)
_AUTHOR_URI: Final = re.compile(rb"<(?:[\w.-]+:)?(?:url|homepage)\s*>")
# feedparser reads a <url> as an author's URI only inside an author-like element
# (author, managingEditor, dc:creator, itunes:author: what sets its `inauthor`). The
# commonest <url> of all, an RSS channel's <image><url> (WordPress sites with an icon,
# podcasts), is harmless: `_image_url` lets a plain <url> through when it is a child
# of the channel's <image> (before any item), after its simple children only, and no
# author-like element is open.
_IMAGE_HEAD: Final = re.compile(
    rb"<image(?:\s[^>]*+)?>(?:\s++|<(title|link|width|height|description)\s*>[^<]*+</\1\s*>)*+"
)
_AUTHOR_LIKE: Final = re.compile(
    rb"<(/?)(?:[\w.-]+:)?(?:author|managingeditor|creator)[\s>/]", re.IGNORECASE
)
# Atom 1.0 author URIs fastfeedparser drops; `add_atom_author_uris` puts them back.
_ATOM_URI: Final = re.compile(rb"<(?:[\w.-]+:)?uri\s*>")
_ATOM_ENTRY_START: Final = re.compile(rb"<(?:[\w.-]+:)?entry[\s>/]")
# Its local name alone, which sre finds by its literal prefix; `_element_open` checks
# the "<" or "<prefix:" before (a search from "<" tries every tag of the document).
_ENTRY_NAME: Final = re.compile(rb"entry[\s>/]")
# The element's text runs to the first closing tag, as `(.*?)` (DOTALL) would take
# it; written as possessive runs up to each "<" because sre tries what follows a lazy
# `.*?` at every byte.
_ATOM_AUTHOR: Final = re.compile(
    rb"<(?:[\w.-]+:)?author\b[^>]*>((?:[^<]++|<(?!/(?:[\w.-]+:)?author\s*>))*+)"
    rb"</(?:[\w.-]+:)?author\s*>"
)
_ATOM_AUTHOR_URI: Final = re.compile(rb"<(?:[\w.-]+:)?uri\s*>([^<]*)</(?:[\w.-]+:)?uri\s*>")
# Media RSS as feedparser reads it (fastfeedparser keeps a media:description only on the
# media:content beside it, drops a media:thumbnail beside a media:content, and can take
# an item's media:title for its title); `add_media_rss` rebuilds it from the bytes.
_MEDIA_RSS: Final = re.compile(rb"<media:(?:group|title|description|thumbnail)[\s>/]")
_MRSS_NAMESPACE: Final = re.compile(rb"search\.yahoo\.com/mrss")
_MRSS_DECLARATION: Final = re.compile(
    rb"""xmlns:([\w.-]+)\s*=\s*(["'])http://search\.yahoo\.com/mrss/?\2"""
)
_MEDIA_PREFIX_DECLARATION: Final = re.compile(rb"""xmlns:media\s*=\s*["']([^"']*)["']""")
_ENTRY_OR_ITEM_START: Final = re.compile(rb"<(?:[\w.-]+:)?(?:entry|item)[\s>/]")
_MEDIA_ELEMENT: Final = re.compile(
    rb"<media:(content|thumbnail|title|description)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>"
)
_MEDIA_DESCRIPTION_END: Final = re.compile(rb"</media:description\s*>")
_MEDIA_GROUP_OPEN: Final = re.compile(rb"<media:group[\s>]")
_MEDIA_GROUP_CLOSE: Final = re.compile(rb"</media:group\s*>")
_TITLE_WITH_TEXT: Final = re.compile(rb"<title(?:\s[^>]*)?>\s*(?:<!\[CDATA\[\s*)?[^<\s]")
_TITLE_END: Final = re.compile(rb"</title\s*>")
# Elements feedparser reads as an entry's summary or content besides media:description.
_OTHER_BODY: Final = re.compile(
    rb"<(?!media:)(?:[\w.-]+:)?(?:description|summary|content|abstract|encoded|fullitem|body)"
    rb"[\s>/]"
)
_ENTRY_SOURCE: Final = re.compile(rb"<(?:[\w.-]+:)?source[\s>/]")
_ATTRIBUTE: Final = re.compile(rb"""([\w.:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
# The references an XML parser decodes without a DTD; any other makes it read otherwise.
_XML_REFERENCE: Final = re.compile(rb"&(?!(?:lt|gt|amp|quot|apos|#[0-9]+|#x[0-9A-Fa-f]+);)")
_CDATA_SECTION: Final = re.compile(rb"<!\[CDATA\[(.*?)\]\]>", re.DOTALL)
_BARE_AMPERSAND: Final = re.compile(rb"&(?![A-Za-z][\w.-]*;|#[0-9]+;|#[xX][0-9A-Fa-f]+;)")
# Two patterns, not one alternation: each keeps its literal prefix scan.
_C1_REFERENCE: Final = re.compile(rb"&#(?:1[2-5][0-9]|x[89][0-9A-Fa-f]);")
_C1_UTF8: Final = re.compile(rb"\xc2[\x80-\x9f]")
# An RSS <body> (XHTML) is read from other elements than feedparser's (empty text); an
# unclosed CDATA section is recovered differently. Media RSS is put right afterwards
# (`add_media_rss`).
_OTHER_SHAPES: Final = (b"<body",)
# The gates that start at "<" (or "&") searched in one pass each: an alternation
# behind a shared literal keeps sre's prefix scan, so the body is walked once, not
# once per shape. _TAG_GATE matches exactly where _NAKED_MARKUP, _BINARY_TYPE,
# _AUTHOR_URI or one of _OTHER_SHAPES/"<!ENTITY" would (checked by
# tests/test_parse_speed_regressions.py), written to fail fast on an ordinary tag:
# a "<" is let in only by `_TAG_LEAD` (most tags of a large document are not),
# the optional "prefix:" is tried once for both parts that allow it, and runs that
# can never be followed by what comes next ([\w.-] before ":", [^>] before ">") are
# possessive.
#
# _TAG_LEAD holds at every "<" where a _TAG_GATE part or a `_SCANNED_SHAPES` entry
# matches: each starts with a "prefix:" (the same possessive run) or with one of
# these two bytes (description, content, summary, title/subtitle, body, !ENTITY,
# uri/url, homepage, media:). Trying it first halves the walk over a large
# document: sre stops at every "<", and the alternation after it costs more than the
# stop. The "prefix:" comes first in it (measured faster than last).
_TAG_LEAD: Final = rb"(?=[\w.-]++:|de|co|su|ti|bo|!E|ur|ho|me)"
_ENTRY_SHAPE: Final = rb"(?:[\w.-]++:)?entry[\s>/]"  # _ATOM_ENTRY_START, at "en" or a prefix
_TAG_GATE: Final = re.compile(
    rb"<" + _TAG_LEAD + rb"(?:"
    rb"(?:description|content:encoded|summary|title)\b[^>]*+>[^<]*+<[A-Za-z]"
    rb"|body|!ENTITY"
    rb"|(?!media:)(?:[\w.-]++:)?(?:"
    rb"""(?:content|summary|title|subtitle)\b[^>]*?\btype\s*=\s*["']"""
    rb"""(?!(?:text|html|xhtml)["']|text/|application/xhtml)"""
    rb"|(?:url|homepage)\s*>"
    rb"))"
)
# Shapes at "<" that change how a fast-path document is read but do not send it to
# feedparser, found in the same walk as _TAG_GATE (see `_scan_tags`). Each is a
# lookahead, so a match takes only the "<" and hides nothing that starts after it,
# and comes after the _TAG_GATE parts, so a named group is set only where no gate
# part matched. Runs before ":" are possessive as in _TAG_GATE (":" is not in them).
_SCANNED_SHAPES: Final = {
    "media": rb"media:(?:group|title|description|thumbnail)[\s>/]",  # _MEDIA_RSS
    "uri": rb"(?:[\w.-]++:)?uri\s*>",  # _ATOM_URI
    "html_title": (  # _ATOM_HTML_TITLE
        rb"""(?:[\w.-]++:)?title\b[^>]*\btype\s*=\s*["'](?:text/)?html["']"""
    ),
}
# _BARE_AMPERSAND or _C1_REFERENCE behind their shared "&"; the runs before ";" are
# possessive (";" is not in them), which spares the backtracking at each "&".
_AMPERSAND_GATE: Final = re.compile(
    rb"&(?:(?![A-Za-z][\w.-]*+;|#[0-9]++;|#[xX][0-9A-Fa-f]++;)"
    b"|" + _C1_REFERENCE.pattern[1:] + b")"
)
# Plain strings whose last byte is common in XML (">", "l") are found faster by
# sre's literal scan than by `bytes.__contains__`/`count`, which key on that byte.
_XHTML: Final = re.compile(rb"xhtml")
# A base attribute as feedparser may read one, in lowercased bytes: "base" as a whole
# name (`_base_attributes` checks that no name byte comes before it: a pattern starting
# with that byte loses sre's literal scan, ten times slower), then "=" after a few
# bytes that are no name, quote or tag (feedparser's loose parser reads Unicode space
# and a "$" there, and the extractor lets them through).
_BASE_ATTRIBUTE: Final = re.compile(rb"base[^=<>\"'\w]{0,8}=")
# The `xml:base` that `uniform_content_base` and `entry_bases` read, from the space
# before it: any other spelling is feedparser's to read.
_EXACT_XML_BASE: Final = re.compile(rb"[ \t\r\n]xml:base[ \t\r\n]*=")
# A tag from its "<" to its ">" (or as far as it goes), quoted values read whole: in a
# well-formed document, "<" occurs in no value, and ">" only in a quoted one.
_TAG_TO_END: Final = re.compile(rb"""<(?:[^<>"']++|"[^"]*+"|'[^']*+')*+""")
_CDATA_END: Final = re.compile(rb"\]\]>")
_FULLITEM: Final = re.compile(rb"fullitem")
_XML_BASE: Final = re.compile(rb"""xml:base\s*=\s*["']([^"']*)["']""")
_XML_BASE_NAME: Final = re.compile(rb"xml:base")  # never overlaps itself
_XML_BASE_ON_CONTENT: Final = re.compile(
    rb"""<(?:[\w.-]+:)?(?:content|summary)\s[^>]*?\bxml:base\s*=\s*["']([^"']*)["']"""
)
_WORD_BYTES: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_PREFIX_BYTES: Final = _WORD_BYTES | frozenset(b".-")  # [\w.-]


def _codec(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):
        return ""


def fast_path_shapes(
    body: bytes,
    content_type: str,
    *,
    base_ok: bool | None = None,
    entries: bool = False,
    well_formed: bool = False,
    markup: Markup | None = None,
) -> TagShapes | None:
    """Which `_SCANNED_SHAPES` the document has when fastfeedparser is known to read it
    correctly, else None.

    It decodes by BOM or XML declaration only (else UTF-8, garbling everything
    else) and cannot see the HTTP charset, so we need a declaration it can use
    that the header does not contradict. Without either, XML means UTF-8, and
    bytes that are valid UTF-8 are read correctly; anything else (undeclared
    windows-1252, say) goes to feedparser, which guesses. The shapes it loses
    data on go there too, whatever the encoding; tests/test_feed_fast_path.py
    compares both parsers over the whole corpus. `base_ok` (no `xml:base`, or a
    uniform content base) is passed by a caller that has worked it out already;
    `entries` asks for `TagShapes.entry_starts` (for `add_atom_author_uris`).
    `well_formed` says fastfeedparser's native extractor has read the document, which
    it does only where the bytes it reads are well-formed UTF-8 (every byte valid,
    every CDATA section closed, no "]]>" in text: `tests/test_feed_native.py`), so
    those checks are skipped. It reads from the XML declaration or root element on
    (fastfeedparser drops junk before it, as both its routes do), so junk there no
    longer sends the document to feedparser. `markup` (`cdata.markup`, for a
    well-formed document) says where its CDATA sections are: the checks for markup
    and references skip the text in them.
    """
    match = _CHARSET_PARAM.search(content_type)
    header = _codec(match.group(1)) if match else ""
    if body.startswith(_BOMS):
        declared = "bom"
    else:
        decl = _XML_DECL_ENCODING.match(body[:1024])
        declared = _codec(decl.group(1).decode("ascii")) if decl else ""
        if decl and not declared:
            return None  # a name Python does not know; lxml may (latin-9): its guess
    mislabelled = False  # whether UTF-8 bytes under this declaration go to feedparser
    if declared == "bom":
        ok = not header or header.startswith("utf")
        check_utf8 = False
    elif declared:
        # A declared UTF-8 that is not: feedparser's guess, as for undeclared bytes.
        ok = header in ("", declared)
        check_utf8 = declared == "utf-8"
        # UTF-8 declared as something else (Latin-1 or windows-1252 in old CMSs):
        # feedparser reads each text that the declaration garbles as the UTF-8 it is
        # where it can; fastfeedparser believes the declaration ("CafÃ©", or worse).
        mislabelled = declared != "utf-8"
    else:
        ok = header in ("", "utf-8", "ascii")
        check_utf8 = True
    # Every check below only rejects, so their order changes no decision: the
    # dearest come last (a full decode of a non-ASCII body, then the walk over tags).
    if not ok:
        return None
    # Markup and references only: a CDATA section's text is read alike by both.
    tagged = body if markup is None else markup.joined
    if _xhtml_in_tags(tagged) if well_formed else _XHTML.search(body):
        return None
    if _other_base(tagged):
        return None
    if base_ok is None:
        base_ok = b"xml:base" not in tagged or bool(uniform_content_base(body, markup))
    if not base_ok:
        return None
    if _FULLITEM.search(tagged):
        return None
    if (
        not well_formed
        and b"<![CDATA[" in body
        and _count(body, b"<![CDATA[", 1) != _count(body, b"]]>", 0)
    ):
        return None
    # Guards are single bytes (memchr); a guard that scans the whole body for a
    # longer string costs about as much as the search it would save.
    if (
        next(_word_matches(_ATOM03_MODE, tagged), None) is not None
        or (b"&" in tagged and _AMPERSAND_GATE.search(tagged))
        or _c2_shapes(body, double=declared != "bom")
        or _double_encoded_references(tagged)
    ):
        return None
    if check_utf8 and not well_formed and not _is_utf8(body):
        return None
    if mislabelled and not body.isascii() and _is_utf8(body):
        return None
    return _scan_tags(body, entries=entries, markup=markup)


# The patterns `_SCANNED_SHAPES` stand for, each matched where the scan found one.
_SHAPE_PATTERNS: Final = {"media": _MEDIA_RSS, "uri": _ATOM_URI, "html_title": _ATOM_HTML_TITLE}


class TagShapes(frozenset[str]):
    """The `_SCANNED_SHAPES` a document has, and where its `<entry>`s start.

    `entry_starts` (what `_entry_starts` gives) is known when the caller asked for
    it and "uri" is among the shapes of a large document: the walk over the tags
    records them from the first `<uri>` on, so `add_atom_author_uris` need not search
    the whole document again. Else None.
    """

    entry_starts: list[int] | None = None


# The body size from which the walk records entries: a stop in the walk costs about
# as much as sre's scan of 1-2 KB, so it pays where entries are large (a search for
# "entry" over a 157 KB document costs ~100 us; 15 stops ~10 us) and not in a small
# document of short entries.
_WALK_ENTRIES_FROM: Final = 32768


@functools.cache
def _tag_scan(shapes: frozenset[str], entries: bool) -> re.Pattern[bytes]:
    """_TAG_GATE with a named lookahead for each of `shapes` (the ones not found yet),
    and one for `_ATOM_ENTRY_START` when `entries` are recorded."""
    looks = b"".join(
        b"|(?=(?P<" + name.encode() + b">" + shape + b"))"
        for name, shape in _SCANNED_SHAPES.items()
        if name in shapes
    )
    if entries:
        looks += b"|(?=(?P<entry>" + _ENTRY_SHAPE + b"))"
    if not looks:
        return _TAG_GATE
    lead = _TAG_LEAD[:-1] + b"|en)" if entries else _TAG_LEAD
    return re.compile(b"<" + lead + _TAG_GATE.pattern[len(b"<" + _TAG_LEAD) : -1] + looks + b")")


def _scan_tags(
    body: bytes, *, entries: bool = False, markup: Markup | None = None
) -> TagShapes | None:
    """Which `_SCANNED_SHAPES` occur, or None where _TAG_GATE matches, in one walk.

    Searching each separately walks every tag of a large document four times. A
    match with no named group is a _TAG_GATE part (they come first, so one would win
    where a shape also matched); a shape found drops out of the pattern, and the
    others are tried at the same "<" (`<media:title type="html">` is two shapes).
    With `entries`, in a large document, the walk also stops at each `<entry>` from
    the first `<uri>` on (those before it are searched for in the part before it).
    With `markup`, only that is walked (every tag lies in it).
    """
    found: set[str] = set()
    remaining = frozenset(_SCANNED_SHAPES)
    record = entries and len(body) >= _WALK_ENTRIES_FROM
    starts: list[int] | None = None
    authors: _AuthorLike | None = None  # made at the first <url>
    pattern = _tag_scan(remaining, False)
    for pos, end in ((0, len(body)),) if markup is None else markup.spans:
        while (match := pattern.search(body, pos, end)) is not None:
            group = match.lastgroup
            start = match.start()
            pos = start + 1
            if group == "entry" and starts is not None:
                # The last alternative: no gate part and no shape matched at this "<".
                starts.append(start)
                continue
            if group is None:
                authors = authors or _AuthorLike(body, markup)
                if not _image_url(body, start, authors):
                    return None
                continue
            found.update(name for name in remaining if _SHAPE_PATTERNS[name].match(body, start))
            remaining = remaining - found
            if starts is None and record and "uri" in found:
                starts = _entry_starts(body, start, markup)
            if starts is not None and _ATOM_ENTRY_START.match(body, start):
                starts.append(start)
            pattern = _tag_scan(remaining, starts is not None)
    shapes = TagShapes(found)
    if starts is not None:
        shapes.entry_starts = starts
    return shapes


def _image_url(body: bytes, at: int, authors: _AuthorLike) -> bool:
    """Whether the `_AUTHOR_URI` match at `at` is a plain <url> that feedparser reads as
    an image's, never an author's (see `_IMAGE_HEAD`)."""
    if not body.startswith(b"<url", at):
        return False
    image = body.rfind(b"<image", 0, at)
    head = _IMAGE_HEAD.match(body, image) if image >= 0 else None
    return (
        head is not None
        and head.end() == at
        # The channel's, before any item: feedparser can take the title of one inside
        # an item for the item's (feedparser/wellformed/rss/item_category_image.xml).
        and _ENTRY_OR_ITEM_START.search(body, 0, image) is None
        and not authors.open_at(image)
    )


class _AuthorLike:
    """Whether an author-like element (`_AUTHOR_LIKE`) is open at a position; asked at
    positions that never decrease, so the body is scanned once however often it is asked.
    A self-closed one counts as open: the caller then sends the document to feedparser."""

    def __init__(self, body: bytes, markup: Markup | None = None) -> None:
        self.body = body
        self.markup = markup
        self.scanned = 0
        self.open = False

    def open_at(self, end: int) -> bool:
        # No match straddles `end`: it is a "<", which cannot end an element name.
        found = (
            _AUTHOR_LIKE.finditer(self.body, self.scanned, end)
            if self.markup is None
            else self.markup.finditer(_AUTHOR_LIKE, self.scanned, end)
        )
        for match in found:
            self.open = not match.group(1)
        self.scanned = max(self.scanned, end)
        return self.open


def _xhtml_in_tags(text: bytes) -> bool:
    """Whether "xhtml" occurs inside a tag of a well-formed document: an inline XHTML
    body (`type="xhtml"`, the XHTML namespace, an `xhtml:` prefix), which
    fastfeedparser reads empty. In text it is a word (a link's slug, escaped HTML),
    read alike by both parsers. A comment or instruction counts as a tag here."""
    return any(_inside_tag(text, match.start()) for match in _XHTML.finditer(text))


def base_attribute(text: bytes) -> bool:
    """Whether `text` (a document, or `Markup.joined`) may set a base for relative links
    the way feedparser reads one: an `xml:base` or plain `base` attribute, in any case
    (feedparser lowercases attribute names and drops unknown prefixes)."""
    return next(_base_attributes(text), None) is not None


def _other_base(text: bytes) -> bool:
    """Whether `text` has a base attribute other than a lowercase `xml:base` (which
    `uniform_content_base` and `entry_bases` read): feedparser resolves relative links
    against it, fastfeedparser does not. Text that only looks like one ("a base = 1")
    counts too, so that the fast path takes no document feedparser would read with
    its link-resolving pass (`parse._feedparser`)."""
    return any(at < 5 or not _EXACT_XML_BASE.match(text, at - 5) for at in _base_attributes(text))


def _base_attributes(text: bytes) -> Iterator[int]:
    """Where a base attribute's name ("base") starts in `text`, in any case: after the
    ":" of a prefix or the white space before an attribute. Lowercasing and sre's
    literal scan for "base" cost a fraction of a case-blind search or one that starts
    with the byte before."""
    lowered = text.lower()
    for match in _BASE_ATTRIBUTE.finditer(lowered):
        at = match.start()
        if not at or lowered[at - 1] not in _PREFIX_BYTES:
            yield at


def _inside_tag(text: bytes, at: int) -> bool:
    """Whether `at` lies inside a tag (or a comment or instruction) of a well-formed
    document, from the "<" before it: no value holds one there."""
    lt = text.rfind(b"<", 0, at)
    tag = _TAG_TO_END.match(text, lt) if lt >= 0 else None
    return tag is not None and tag.end() > at


def _word_matches(pattern: re.Pattern[bytes], body: bytes) -> Iterator[re.Match[bytes]]:
    """The matches `pattern.finditer` would give were it written with a leading `\b`.

    `pattern` starts with a word character, so `\b` there means "no word byte
    before". A rejected match is retried one byte on, as the regex engine would.
    """
    pos = 0
    while (match := pattern.search(body, pos)) is not None:
        start = match.start()
        if start and body[start - 1] in _WORD_BYTES:
            pos = start + 1
            continue
        yield match
        pos = max(match.end(), start + 1)


def add_atom_author_uris(
    body: bytes,
    data: dict[str, Any],
    entry_starts: list[int] | None = None,
    markup: Markup | None = None,
) -> bool:
    """Put back the `<author><uri>` of the feed and of each entry, as feedparser keeps it.

    fastfeedparser lists entries in document order, so the n-th `<entry>` start is
    the n-th entry. False (read it with feedparser) when the two do not line up.
    `entry_starts` is `TagShapes.entry_starts` where the caller has it (else the
    document is searched for them); `markup` leaves out the text of CDATA sections.
    """
    entries = data.get("entries")
    starts = _entry_starts(body, markup=markup) if entry_starts is None else entry_starts
    if not isinstance(entries, list) or len(starts) != len(entries):
        return False
    bounds = [0, *starts, len(body)]
    nodes: list[Any] = [data.get("feed"), *entries]
    for node, begin, end in zip(nodes, bounds, bounds[1:], strict=False):
        author = _first_author(body, begin, end, markup)
        uri = _ATOM_AUTHOR_URI.search(author.group(1)) if author else None
        if uri is None or not isinstance(node, dict):
            continue
        detail = node.get("author_detail")
        detail = dict(detail) if isinstance(detail, dict) else {}
        detail["href"] = _stdlib_html.unescape(uri.group(1).decode("utf-8", "replace")).strip()
        node["author_detail"] = detail
    return True


def _entry_starts(body: bytes, end: int | None = None, markup: Markup | None = None) -> list[int]:
    """Where `_ATOM_ENTRY_START` matches (its matches hold one "<", so never overlap),
    before `end` (a "<": no match that starts before it reaches past it), in `markup`
    when given."""
    starts = []
    names = (
        [m.start() for m in _ENTRY_NAME.finditer(body, 0, len(body) if end is None else end)]
        if markup is None
        else markup.starts(_ENTRY_NAME, end)
    )
    for name in names:
        start = _element_open(body, name)
        if start >= 0:
            starts.append(start)
    return starts


def _first_author(
    body: bytes, begin: int, end: int, markup: Markup | None = None
) -> re.Match[bytes] | None:
    """`_ATOM_AUTHOR.search(body, begin, end)`, tried only at the "<" of an "author".

    Every match starts there, and those "<"s come in the order of their names
    ("author" cannot overlap itself, so `find` sees each; it skips ahead on the
    last byte, where sre stops at every "a"). With `markup`, one in a CDATA
    section's text is no element.
    """
    name = body.find(b"author", begin, end)
    while name >= 0:
        start = _element_open(body, name)
        if start >= begin and (markup is None or markup.holds(start)):
            match = _ATOM_AUTHOR.match(body, start, end)
            if match is not None:
                return match
        name = body.find(b"author", name + 1, end)
    return None


def _element_open(body: bytes, name: int) -> int:
    """The "<" that opens the element whose local name starts at `name`: right before
    it, or before a "prefix:" of name bytes (as `<(?:[\\w.-]+:)?` reads); else -1."""
    if not name:
        return -1
    if body[name - 1] == 0x3C:  # "<"
        return name - 1
    if body[name - 1] != 0x3A:  # ":"
        return -1
    pos = name - 1
    while pos and body[pos - 1] in _PREFIX_BYTES:
        pos -= 1
    return pos - 1 if pos < name - 1 and pos and body[pos - 1] == 0x3C else -1


def media_rss_fields(
    body: bytes, *, is_atom: bool, markup: Markup | None = None
) -> list[dict[str, Any]] | None:
    """The Media RSS fields feedparser gives each `<entry>`/`<item>`, in document order:
    every media:content and media:thumbnail (their attributes), and a media:description
    as the summary.

    None (read it with feedparser) for any shape where feedparser's reading is not
    certain: another prefix for the namespace, a media:title that could be taken for
    the title, a media:description beside another body, markup or a DTD entity.
    With `markup`, entries and media elements in CDATA sections' text are none.
    """
    declared = [m.group(1) for m in _MRSS_DECLARATION.finditer(body)]
    if set(declared) - {b"media"} or len(_MRSS_NAMESPACE.findall(body)) != len(declared):
        return None
    if any(not _MRSS_NAMESPACE.search(v) for v in _MEDIA_PREFIX_DECLARATION.findall(body)):
        return None
    if b"xml:base" in body:
        return None
    starts = (
        [m.start() for m in _ENTRY_OR_ITEM_START.finditer(body)]
        if markup is None
        else markup.starts(_ENTRY_OR_ITEM_START)
    )
    if not starts or b"<media:title" in body[: starts[0]]:
        return None  # a feed title feedparser may take from it
    bounds = [*starts, len(body)]
    fields: list[dict[str, Any]] = []
    for begin, end in itertools.pairwise(bounds):
        update = _segment_media_rss(body, begin, end, is_atom=is_atom, markup=markup)
        if update is None:
            return None
        fields.append(update)
    return fields


def add_media_rss(data: dict[str, Any], fields: list[dict[str, Any]]) -> bool:
    """Put `media_rss_fields` into fastfeedparser's entries; the n-th `<entry>`/`<item>`
    start is the n-th entry (as in `add_atom_author_uris`). False when they do not
    line up (read it with feedparser)."""
    entries = data.get("entries")
    if not isinstance(entries, list) or len(entries) != len(fields):
        return False
    if not all(isinstance(entry, dict) for entry in entries):
        return False
    for entry, update in zip(entries, fields, strict=True):
        if "summary" in update:
            entry.pop("content", None)
            entry["description"] = update["summary"]
        entry.update(update)
    return True


def _segment_media_rss(
    body: bytes, begin: int, end: int, *, is_atom: bool, markup: Markup | None = None
) -> dict[str, Any] | None:
    """The Media RSS fields of the entry in body[begin:end], or None (use feedparser)."""
    contents: list[dict[str, str]] = []
    thumbnails: list[dict[str, str]] = []
    description: tuple[str, str] | None = None
    title_end = -1
    found = (
        _MEDIA_ELEMENT.finditer(body, begin, end)
        if markup is None
        else markup.finditer(_MEDIA_ELEMENT, begin, end)
    )
    for match in found:
        kind, raw_attrs = match.group(1), match.group(2)
        attrs = _xml_attributes(raw_attrs)
        if attrs is None:
            return None
        if kind == b"title":
            # feedparser keeps the entry's own non-empty <title>, wherever it is;
            # fastfeedparser does too unless a media:title outside a group comes first.
            if title_end < 0:
                title = _TITLE_WITH_TEXT.search(body, begin, end)
                close = _TITLE_END.search(body, title.end(), end) if title else None
                if close is None or (_ENTRY_SOURCE.search(body, begin, end) is not None):
                    return None
                title_end = close.end()
            pos = match.start()
            if pos < title_end and not _inside_media_group(body, begin, pos):
                return None
        elif kind == b"description":
            if description is not None or _OTHER_BODY.search(body, begin, end):
                return None
            kind_attr = attrs.get("type", "text/html").lower()
            kind_attr = {"text": "text/plain", "plain": "text/plain", "html": "text/html"}.get(
                kind_attr, kind_attr
            )
            if kind_attr not in ("text/html", "text/plain") or (
                kind_attr == "text/plain" and not is_atom
            ):
                return None  # other types, or RSS text feedparser sniffs for markup
            if raw_attrs.rstrip().endswith(b"/"):
                text = ""
            else:
                close = _MEDIA_DESCRIPTION_END.search(body, match.end(), end)
                if close is None:
                    return None
                decoded = _xml_text(body[match.end() : close.start()])
                if decoded is None:
                    return None
                text = decoded
            description = (text, kind_attr)
        elif kind == b"content":
            contents.append(attrs)
        else:
            if "url" not in attrs:
                return None  # feedparser would take the element's text as the URL
            thumbnails.append(attrs)
    update: dict[str, Any] = {"media_content": contents, "media_thumbnail": thumbnails}
    if description is not None:
        update["summary"] = description[0]
        update["summary_detail"] = {"type": description[1]}
    return update


def _inside_media_group(body: bytes, begin: int, pos: int) -> bool:
    """Whether `pos` lies inside an open <media:group> (which holds no nested group)."""
    opened = closed = -1
    for match in _MEDIA_GROUP_OPEN.finditer(body, begin, pos):
        opened = match.start()
    for match in _MEDIA_GROUP_CLOSE.finditer(body, begin, pos):
        closed = match.start()
    return opened > closed


def _xml_attributes(raw: bytes) -> dict[str, str] | None:
    """Attributes as an XML parser and feedparser give them: names lowercased, white
    space normalised, references decoded, `type` lowercased; None if unsure."""
    attrs: dict[str, str] = {}
    for name_bytes, double, single in _ATTRIBUTE.findall(raw):
        value = double or single
        if b"<" in value:
            return None
        if value.isascii() and not _ATTRIBUTE_SPECIAL.search(value):
            # The commonest value (a URL, a number, a type): nothing to decode or fold.
            text = value.decode("ascii")
        else:
            if _XML_REFERENCE.search(value):
                return None
            value = value.replace(b"\r\n", b" ").translate(_ATTRIBUTE_SPACE)
            text = _stdlib_html.unescape(value.decode("utf-8", "replace"))
        name = name_bytes.decode("ascii", "replace").lower()
        attrs[name] = text.lower() if name in ("type", "rel") else text
    return attrs


_ATTRIBUTE_SPACE: Final = bytes.maketrans(b"\t\n\r", b"   ")
# What makes an ASCII value need more than decoding: a reference, or white space folded.
_ATTRIBUTE_SPECIAL: Final = re.compile(rb"[&\t\n\r]")


def _xml_text(raw: bytes) -> str | None:
    """Character data (text and CDATA sections) as an XML parser reads it, stripped as
    feedparser strips it; None when it holds markup or a reference XML cannot decode."""
    parts: list[str] = []
    pos = 0
    for match in _CDATA_SECTION.finditer(raw):
        plain = _xml_character_data(raw[pos : match.start()])
        if plain is None:
            return None
        parts.append(plain)
        parts.append(_xml_newlines(match.group(1)).decode("utf-8", "replace"))
        pos = match.end()
    tail = _xml_character_data(raw[pos:])
    if tail is None:
        return None
    parts.append(tail)
    return "".join(parts).strip()


def _xml_character_data(raw: bytes) -> str | None:
    if b"<" in raw or b"]]>" in raw or _XML_REFERENCE.search(raw):
        return None
    return _stdlib_html.unescape(_xml_newlines(raw).decode("utf-8", "replace"))


def _xml_newlines(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def uniform_content_base(body: bytes, markup: Markup | None = None) -> str:
    """The `xml:base` of the entries' content when only content elements carry one and
    it is the same absolute http(s) URL (as WordPress writes it); else "" (feedparser
    reads the document, resolving every base where it applies). With `markup`, text
    in CDATA sections is left out."""
    # Both counts start from the same places, found in one walk over the document.
    places = _xml_base_places(body, markup)
    values = _xml_base_values(body, places)
    if len(set(values)) != 1 or _count_content_bases(body, places) != len(values):
        return ""
    base = _stdlib_html.unescape(values[0].decode("utf-8", "replace")).strip()
    return base if base.startswith(("http://", "https://")) and " " not in base else ""


class EntryBases(NamedTuple):
    """A document's `xml:base`s in the one shape besides a uniform content base that
    the fast path reads (WordPress's Atom feed): `root`, on the root element, for every
    relative URL; `content[i]`, on the i-th entry's <content>, for that entry's body
    ("" where it has none)."""

    root: str
    content: list[str]


# The start tag of an Atom document's root element (after the prolog) and of an Atom
# <content>; "<" cannot occur in an attribute value, and ">" ends the tag after them.
_ROOT_START: Final = re.compile(
    rb"(?:\s++|<\?[^>]*+>|<!--(?:[^-]++|-(?!->))*+-->|<!DOCTYPE[^>]*+>)*+"
    rb"""<(?:[\w.-]++:)?(feed)(?:\s++[\w.:-]++\s*+=\s*+(?:"[^"<]*+"|'[^'<]*+'))*+\s*+>"""
)
_CONTENT_START: Final = re.compile(
    rb"""<(?:[\w.-]++:)?content(?:\s++[\w.:-]++\s*+=\s*+(?:"[^"<]*+"|'[^'<]*+'))*+\s*+>"""
)


def entry_bases(body: bytes, markup: Markup | None = None) -> EntryBases | None:
    """Where the `xml:base`s of an Atom document apply, in the two shapes the fast path
    reads: one on the root element and at most one on each entry's <content>, or none
    on the root and the same one on every entry's <content>; each an absolute http(s)
    URL. Else None (feedparser reads the document, resolving every base).

    feedparser restores an outer base after an element only when there is one, so
    without one on the root an entry's content base carries over to what follows
    (the next entry, the feed's own link after the entries): that base must be on
    every entry, and `parse._bases_fit` checks that nothing after it is relative.
    With `markup`, text in CDATA sections is left out.
    """
    places = _xml_base_places(body, markup)
    root = _ROOT_START.match(body, len(_UTF8_BOM) if body.startswith(_UTF8_BOM) else 0)
    if root is None:
        return None  # not Atom, or a root tag this does not read
    # Where the root's start tag begins: an "xml:base" before it is in the prolog.
    root_tag = body.rfind(b"<", 0, root.start(1))
    starts = _entry_starts(body, markup=markup)
    bounds = [*starts, len(body)]
    root_base = ""
    content = [""] * len(starts)
    entry = -1
    for at in places:
        if at and body[at - 1] in _WORD_BYTES:
            continue  # "_xml:base", not an xml:base attribute
        value = _absolute_base(body, at)
        if value is None or at < root_tag:
            return None
        if at < root.end():
            if root_base:
                return None
            root_base = value
            continue
        while entry + 1 < len(starts) and starts[entry + 1] < at:
            entry += 1
        tag = body.rfind(b"<", 0, at)
        element = _CONTENT_START.match(body, tag)
        if entry < 0 or element is None or element.end() <= at or at >= bounds[entry + 1]:
            return None
        if content[entry]:
            return None
        content[entry] = value
    if root_base or (len(set(content)) == 1 and content[0]):
        return EntryBases(root_base, content)
    return None


def _xml_base_places(body: bytes, markup: Markup | None) -> list[int]:
    """Where "xml:base" occurs (in `markup`, when given)."""
    if markup is None:
        return [match.start() for match in _XML_BASE_NAME.finditer(body)]
    return markup.starts(_XML_BASE_NAME)


def _absolute_base(body: bytes, at: int) -> str | None:
    """The value of the xml:base attribute at `at` when it is an absolute http(s) URL."""
    match = _XML_BASE.match(body, at)
    if match is None:
        return None
    base = _stdlib_html.unescape(match.group(1).decode("utf-8", "replace")).strip()
    return base if base.startswith(("http://", "https://")) and " " not in base else None


def _xml_base_values(body: bytes, places: list[int]) -> list[bytes]:
    """The values `_word_matches(_XML_BASE, body)` gives, `places` being every "xml:base".

    Each match starts at one of them, so trying them in order (skipping those inside
    the last match) finds what the search from the last match would.
    """
    values: list[bytes] = []
    pos = 0
    for start in places:
        if start < pos or (start and body[start - 1] in _WORD_BYTES):
            continue
        match = _XML_BASE.match(body, start)
        if match is not None:
            values.append(match.group(1))
            pos = max(match.end(), start + 1)
    return values


def _count_content_bases(body: bytes, places: list[int]) -> int:
    """len(_XML_BASE_ON_CONTENT.findall(body)), `places` being every "xml:base" in it.

    A match starts at a "<" with no ">" between it and the "xml:base" it holds, so
    only the "<"s in each such window are tried, in order, each once, from where
    the last match ended; the search itself would try every tag of the document.
    """
    count = 0
    pos = 0  # where findall would search next
    tried = 0  # every "<" before this has been tried (or lies before `pos`)
    for at in places:
        lt = body.find(b"<", max(pos, tried, body.rfind(b">", 0, at) + 1), at + 1)
        while lt >= 0:
            match = _XML_BASE_ON_CONTENT.match(body, lt)
            if match is not None:
                count += 1
                pos = match.end()
                break
            lt = body.find(b"<", lt + 1, at + 1)
        tried = max(tried, at + 1)
    return count


def _count(body: bytes, needle: bytes, key: int) -> int:
    """`body.count(needle)` for a needle that cannot overlap itself, found from the
    memchr hits of its byte at `key` (one rare in XML: "!" of "<![CDATA[", "]").

    A scan by `count` or sre walks the body byte by byte (about 60 us at 157 KB);
    memchr finds the few hits of a rare byte at a tenth of that. Past a budget of
    hits that grows with the body, `count` does the rest.
    """
    byte = needle[key : key + 1]
    count = 0
    pos = body.find(byte)
    for _ in range(_PROBES_BASE + (len(body) >> _PROBES_SHIFT)):
        if pos < 0:
            return count
        if pos >= key and body.startswith(needle, pos - key):
            count += 1
        pos = body.find(byte, pos + 1)
    # Every needle whose `key` byte lies before `pos` has been counted.
    return count if pos < 0 else count + body.count(needle, max(pos - key, 0))


# The hits `_count` tries one by one: a few, and one per KiB of body (a hit costs
# about as much in Python as sre's scan of 250-500 bytes).
_PROBES_BASE: Final = 8
_PROBES_SHIFT: Final = 10

# How many 0xC2 bytes `_c2_shapes` tries one by one before it lets sre scan the
# rest (a body of Latin-1 punctuation, « » or no-break spaces, has many).
_C1_PROBES: Final = 16
# UTF-8 read as Latin-1 and written out again as UTF-8 ("Crème" as "CrÃ¨me"): a
# Latin-1 letter that leads a UTF-8 sequence (U+00C2-U+00F4), then one that continues
# it (U+0080-U+00BF). feedparser repairs each text made of such Latin-1 characters
# back into what it was; fastfeedparser shows it as it is.
_DOUBLE_UTF8: Final = re.compile(rb"\xc3[\x82-\xb4]\xc2[\x80-\xbf]")


def _c2_shapes(body: bytes, *, double: bool) -> bool:
    """Whether `_C1_UTF8` or, with `double`, `_DOUBLE_UTF8` matches: both hold a 0xC2
    byte, so one walk over those (memchr) finds either.

    sre scans for a one-byte prefix byte by byte, about ten times slower than memchr
    on a large document; most documents hold a few 0xC2 bytes or none.
    """
    end = len(body) - 1
    pos = body.find(b"\xc2")
    for _ in range(_C1_PROBES):
        if pos < 0:
            return False
        if pos < end:
            after = body[pos + 1]
            if 0x80 <= after <= 0x9F:
                return True
            if (
                double
                and pos >= 2
                and 0xA0 <= after <= 0xBF
                and body[pos - 2] == 0xC3
                and 0x82 <= body[pos - 1] <= 0xB4
            ):
                return True
        pos = body.find(b"\xc2", pos + 1)
    if pos < 0:
        return False
    return _C1_UTF8.search(body, pos) is not None or (
        double and _DOUBLE_UTF8.search(body, max(pos - 2, 0)) is not None
    )


# The same written with character references, which XML decodes before feedparser
# repairs the text (outside CDATA sections: there they stay text): a reference to a
# leading letter, then one to a continuing one or its UTF-8 bytes; or those bytes of
# a leading letter, then a reference to a continuing one.
_CONTINUING_REFERENCE: Final = rb"&#(?:12[89]|1[3-8][0-9]|19[01]|[xX]0*[89aAbB][0-9a-fA-F]);"
_DOUBLE_REFERENCE: Final = re.compile(
    rb"&#(?:19[4-9]|2[0-3][0-9]|24[0-4]|[xX]0*(?:[cC][2-9a-fA-F]|[dDeE][0-9a-fA-F]|[fF][0-4]));"
    rb"(?:" + _CONTINUING_REFERENCE + rb"|\xc2[\x80-\xbf])"
)
_DOUBLE_BYTES_REFERENCE: Final = re.compile(rb"\xc3[\x82-\xb4]" + _CONTINUING_REFERENCE)


def _double_encoded_references(tagged: bytes) -> bool:
    """`_DOUBLE_UTF8` written with character references (`_DOUBLE_REFERENCE`), in the
    markup: "Caf&#195;&#169;" is "CafÃ©" to fastfeedparser, "Café" to feedparser."""
    return b"&#" in tagged and (
        _DOUBLE_REFERENCE.search(tagged) is not None
        or _DOUBLE_BYTES_REFERENCE.search(tagged) is not None
    )


def _is_utf8(body: bytes) -> bool:
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
