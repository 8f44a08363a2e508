"""The feed parser's faster gates and helpers mean exactly what the slower forms meant.

`plugins.feeds.parse` rewrote several fast-path gates for speed (no leading `\\b`,
shared-prefix alternations, one walk over the tags for several shapes, searches
started from a literal instead of from every "<") and `bot.html` gained fast paths
for plain text and absolute URLs; `plugins.feeds.fastpath` later counted rare bytes
with memchr, let fewer "<"s into the tag walk, reordered `fast_path_shapes` and
recorded entry starts in the walk. Each check here compares the new form with the
original one over edge cases, so a later edit cannot change routing or output
unnoticed.
"""

from __future__ import annotations

import html
import itertools
import random
import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from bot import html as bot_html
from plugins.feeds import cdata, native
from plugins.feeds import fastpath as feeds_fastpath

_ORIGINAL_MODE = re.compile(rb"""\bmode\s*=\s*["'](?:xml|base64)""")
_ORIGINAL_XML_BASE = re.compile(rb"""\bxml:base\s*=\s*["']([^"']*)["']""")
_ORIGINAL_C1 = re.compile(rb"&#(?:1[2-5][0-9]|x[89][0-9A-Fa-f]);|\xc2[\x80-\x9f]")
# Earlier forms: _TAG_GATE before `_TAG_LEAD` let only some "<"s in, _AMPERSAND_GATE
# without possessive runs, the author element's text as a lazy `.*?`.
_ORIGINAL_TAG_GATE = re.compile(
    rb"<(?=[\w.!-])(?:"
    rb"(?:description|content:encoded|summary|title)\b[^>]*+>[^<]*+<[A-Za-z]"
    rb"|body|!ENTITY"
    rb"|(?!media:)(?:[\w.-]++:)?(?:"
    rb"""(?:content|summary|title|subtitle)\b[^>]*?\btype\s*=\s*["']"""
    rb"""(?!(?:text|html|xhtml)["']|text/|application/xhtml)"""
    rb"|(?:url|homepage)\s*>"
    rb"))"
)
_ORIGINAL_AMPERSAND_GATE = re.compile(
    b"&(?:"
    + feeds_fastpath._BARE_AMPERSAND.pattern[1:]
    + b"|"
    + feeds_fastpath._C1_REFERENCE.pattern[1:]
    + b")"
)
# "xhtml" inside a tag (a quoted value may hold ">"), the form `_xhtml_in_tags` replaces.
_ORIGINAL_XHTML_IN_TAG = re.compile(rb"""<(?:[^<>"']|"[^"]*"|'[^']*')*(?:"[^"]*|'[^']*)?xhtml""")
# A base attribute in any case: "base" as a whole name, then "=" after a few bytes that
# are no name, quote or tag; all but a lowercase " xml:base=".
_ORIGINAL_BASE = re.compile(rb"(?<![\w.-])base[^=<>\"'\w]{0,8}=", re.IGNORECASE)


def _original_other_base(body: bytes) -> bool:
    return any(
        not re.fullmatch(rb"[ \t\r\n]xml:", body[max(m.start() - 5, 0) : m.start()])
        or not re.match(rb"base[ \t\r\n]*=", body[m.start() :])
        for m in _ORIGINAL_BASE.finditer(body)
    )


# Text encoded twice, written with character references (a leading letter's reference or
# bytes, then a continuing letter's reference, or a leading reference then bytes).
_LEAD_REF = rb"(?:&#(?:19[4-9]|2[0-3]\d|24[0-4]);|&#x0*(?:c[2-9a-f]|[de][0-9a-f]|f[0-4]);)"
_CONT_REF = rb"(?:&#(?:12[89]|1[3-8]\d|19[01]);|&#x0*[89ab][0-9a-f];)"
_ORIGINAL_DOUBLE_REFERENCE = re.compile(
    rb"(?:"
    + _LEAD_REF
    + rb"|\xc3[\x82-\xb4])"
    + _CONT_REF
    + rb"|"
    + _LEAD_REF
    + rb"\xc2[\x80-\xbf]",
    re.IGNORECASE,
)
_ORIGINAL_ATOM_AUTHOR = re.compile(
    rb"<(?:[\w.-]+:)?author\b[^>]*>(.*?)</(?:[\w.-]+:)?author\s*>", re.DOTALL
)


def _original_tag_gate_hit(body: bytes) -> bool:
    """Whether _ORIGINAL_TAG_GATE matches anywhere but at the <url> of a channel's
    <image>, which the walk lets through (`fastpath._image_url`), in the plainest form."""
    return any(not _plain_image_url(body, m.start()) for m in _ORIGINAL_TAG_GATE.finditer(body))


def _plain_image_url(body: bytes, at: int) -> bool:
    if not body.startswith(b"<url", at):
        return False
    image = body.rfind(b"<image", 0, at)
    if image < 0 or re.search(rb"<(?:[\w.-]+:)?(?:entry|item)[\s>/]", body[:image]):
        return False
    head = re.match(
        rb"<image(?:\s[^>]*)?>(?:\s+|<(title|link|width|height|description)\s*>[^<]*</\1\s*>)*",
        body[image:],
    )
    if head is None or image + head.end() != at:
        return False
    author_tags = re.findall(
        rb"<(/?)(?:[\w.-]+:)?(?:author|managingeditor|creator)[\s>/]", body[:image], re.IGNORECASE
    )
    return not author_tags or author_tags[-1] == b"/"


@pytest.fixture(params=["shipped", "always"])
def walk_entries_from(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """`_scan_tags` as shipped (entries recorded in large documents only) and
    recording them in every document, so small cases exercise that too."""
    if request.param == "always":
        monkeypatch.setattr(feeds_fastpath, "_WALK_ENTRIES_FROM", 0)


WORD_CASES = [
    b"",
    b"mode='xml'",
    b"xmode='xml'",
    b"_mode='base64'",
    b'<c mode = "xml">',
    b"<c xmode='xml' mode='base64'>",
    b"1mode='xml' -mode='xml'",
    b'axml:base="xml:base="http://a/"',
    b'<content xml:base="http://a/" /><summary xml:base="http://b/">',
    b'xml:base="http://a/"',
    b"<x _xml:base=\"1\"/><y xml:base = '2'/>",
    b"\xd0\xb0xml:base='http://c/'",
]


@pytest.mark.parametrize("doc", WORD_CASES)
def test_word_matches_equal_a_leading_word_boundary(doc: bytes) -> None:
    new_modes = [m.span() for m in feeds_fastpath._word_matches(feeds_fastpath._ATOM03_MODE, doc)]
    assert new_modes == [m.span() for m in _ORIGINAL_MODE.finditer(doc)]
    new_bases = [m.group(1) for m in feeds_fastpath._word_matches(feeds_fastpath._XML_BASE, doc)]
    assert new_bases == _ORIGINAL_XML_BASE.findall(doc)


GATE_CASES = [
    b"<rss><item><title>plain</title></item></rss>",
    b"<description>x <b>bold</b></description>",
    b"<content type='application/octet-stream'>AAAA</content>",
    b'<atom:title type="text">t</atom:title>',
    b"<author><url>http://a/</url></author>",
    b"<x:homepage >http://a/</x:homepage>",
    b"<body>hi</body>",
    b"<media:group></media:group>",
    b"<media:title>t</media:title>",
    b"<!DOCTYPE x [<!ENTITY e 'v'>]>",
    b"a & b",
    b"a &amp; b &#233; &#x41;",
    b"&#146; and &#x92;",
    b"\xc2\x92 and \xc2\xa0",
    b"&name-with.dots;",
    b"</title><title>t</title>",
    b"<.x:content type='image/png'>",
    b"<-a:url>",
    b"<a.b-c:homepage\t>",
    b"<x:y:url>",
    b"<feed:url >",
    b"<title a='1'>text <",
    b"<title>text <1",
    b"<summary>text</summary>",
    b"<content type='text/html'>x</content>",
    b"<content type='xhtml'>x</content>",
    b"<content:encoded>a<b>c</b></content:encoded>",
    b"<titles>x</titles><bodyguard/>",
    b"<!-- <body -->",
]


def _original_tag_and_amp_gates(body: bytes) -> bool:
    return bool(
        feeds_fastpath._NAKED_MARKUP.search(body)
        or (b"type" in body and feeds_fastpath._BINARY_TYPE.search(body))
        or ((b"url" in body or b"homepage" in body) and feeds_fastpath._AUTHOR_URI.search(body))
        or any(s in body for s in feeds_fastpath._OTHER_SHAPES)
        or b"<!ENTITY" in body
        or _ORIGINAL_C1.search(body)
        or (b"&" in body and feeds_fastpath._BARE_AMPERSAND.search(body))
    )


@pytest.mark.parametrize("body", GATE_CASES)
def test_combined_gates_match_where_a_part_would(body: bytes) -> None:
    combined = bool(
        feeds_fastpath._TAG_GATE.search(body)
        or (b"&" in body and feeds_fastpath._AMPERSAND_GATE.search(body))
        or feeds_fastpath._c2_shapes(body, double=False)
    )
    assert combined == _original_tag_and_amp_gates(body)


@pytest.mark.usefixtures("walk_entries_from")
def test_combined_gates_agree_over_the_corpus() -> None:
    fixtures = Path(__file__).parent / "fixtures"
    for path in sorted(fixtures.rglob("*.xml")):
        body = path.read_bytes()
        combined = bool(
            feeds_fastpath._TAG_GATE.search(body)
            or (b"&" in body and feeds_fastpath._AMPERSAND_GATE.search(body))
            or feeds_fastpath._c2_shapes(body, double=False)
        )
        assert combined == _original_tag_and_amp_gates(body), path
        modes = [m.span() for m in feeds_fastpath._word_matches(feeds_fastpath._ATOM03_MODE, body)]
        assert modes == [m.span() for m in _ORIGINAL_MODE.finditer(body)], path
        bases = [m.group(1) for m in feeds_fastpath._word_matches(feeds_fastpath._XML_BASE, body)]
        assert bases == _ORIGINAL_XML_BASE.findall(body), path
        assert _new_scan_forms(body) == _original_scan_forms(body), path
        cdata_ends = len(feeds_fastpath._CDATA_END.findall(body))
        assert cdata_ends == body.count(b"]]>"), path
        assert bool(feeds_fastpath._XHTML.search(body)) == (b"xhtml" in body), path


# What `_scan_tags`, `_entry_starts`, `_xml_base_values`, `_count_content_bases` and
# `_FULLITEM` replace: a search per shape, each over the whole document.
def _windows(body: bytes, starts: list[int]) -> list[tuple[int, int]]:
    """The entries' spans as `_add_atom_author_uris` cuts them, and a few odd ones."""
    bounds = [0, *starts, len(body)]
    odd = [(1, len(body)), (2, max(2, len(body) - 1)), (len(body) // 2, len(body))]
    return [*itertools.pairwise(bounds), *odd]


def _span(match: re.Match[bytes] | None) -> tuple[int, int, bytes] | None:
    return None if match is None else (*match.span(), match.group(1))


def _original_scan_forms(body: bytes) -> tuple[object, ...]:
    shapes = None
    if not _original_tag_gate_hit(body):
        shapes = frozenset(
            name
            for name, pattern in (
                ("media", feeds_fastpath._MEDIA_RSS),
                ("uri", feeds_fastpath._ATOM_URI),
                ("html_title", feeds_fastpath._ATOM_HTML_TITLE),
            )
            if pattern.search(body)
        )
    starts = [m.start() for m in feeds_fastpath._ATOM_ENTRY_START.finditer(body)]
    return (
        shapes,
        starts,
        [
            _span(_ORIGINAL_ATOM_AUTHOR.search(body, begin, end))
            for begin, end in _windows(body, starts)
        ],
        [m.group(1) for m in feeds_fastpath._word_matches(feeds_fastpath._XML_BASE, body)],
        len(feeds_fastpath._XML_BASE_ON_CONTENT.findall(body)),
        b"fullitem" in body,
    )


def _new_scan_forms(body: bytes) -> tuple[object, ...]:
    places = [m.start() for m in feeds_fastpath._XML_BASE_NAME.finditer(body)]
    starts = feeds_fastpath._entry_starts(body)
    shapes = feeds_fastpath._scan_tags(body, entries=True)
    # The walk records the entries once it has seen a <uri> in a large document,
    # and only when asked to.
    if shapes is not None:
        records = "uri" in shapes and len(body) >= feeds_fastpath._WALK_ENTRIES_FROM
        assert shapes.entry_starts == (starts if records else None)
        assert feeds_fastpath._scan_tags(body) == shapes
        assert feeds_fastpath._scan_tags(body).entry_starts is None
    return (
        shapes,
        starts,
        [
            _span(feeds_fastpath._first_author(body, begin, end))
            for begin, end in _windows(body, starts)
        ],
        feeds_fastpath._xml_base_values(body, places),
        feeds_fastpath._count_content_bases(body, places),
        feeds_fastpath._FULLITEM.search(body) is not None,
    )


SCAN_CASES = [
    *GATE_CASES,
    *WORD_CASES,
    b'<media:title type="html">t</media:title>',  # two shapes at one "<"
    b'<title type="html">a <b>b</b></title>',  # a gate part and a shape at one "<"
    b'<title type="html"><body>',  # a shape must not hide what follows it
    b"<x:uri>a</x:uri><uri >b</uri><media:group/>",
    b"<a.b:entry/><:entry ><x:y:entry>entry <entry><-entry\t</entry>",
    b"a:entry x<b:entry>",
    b'<content a="<" xml:base="http://a/">',
    b'<content <x xml:base="http://a/">',
    b"<summary xml:base='a' xml:base='b'><content\txml:base=\"c\">",
    b"<content xml:base=\"a xml:base='b'\">",
    b'<content>xml:base="a"</content><summary _xml:base="b">',
    b"<!-- fullitem --><fullitemx/>",
    b"<entry><x:author>a<uri>u</uri></x:author></entry><entry><author/><author>b</author>",
    b"<entry/><uri>u</uri><a:entry>x</a:entry><uri >v</uri><entry\t><title type='html'>",
    b"<x:uri>a</x:uri><x:entry/><media:title>t</media:title><entry>",
    b"<author><a></author ><author>x</b:author></author>",
    b"<author>a<</author><author>b</x:author\n>",
    b"<entry:uri><uri:entry ><en/><de/><ur/>",
    b"author <a:author x='>'>c</a:author><entry>author<:author>d</:author><author >e</author >",
    # A channel <image>'s <url> is let through; anywhere else a <url> still gates.
    b"<channel><image><url>i</url><title>t</title></image><item>",
    b"<image a='1'>\n<title>t</title> <link>l</link>\t<url >i</url></image>",
    b"<managingEditor>m</managingEditor><image><url>i</url></image>",
    b"<ManagingEditor><image><url>i</url></image>",
    b"<dc:creator/><image><url>i</url></image>",
    b"<itunes:author>a</itunes:author><image><x/><url>i</url></image>",
    b"<item><image><url>i</url></image></item>",
    b"<image><url>i</url><url>j</url></image>",
    b"<image><title><![CDATA[t]]></title><url>i</url></image>",
    b"<images><url>i</url></images><image/><url>j</url>",
    b"<image><url>i</url></image><author><url>u</url></author>",
]


@pytest.mark.usefixtures("walk_entries_from")
@pytest.mark.parametrize("body", SCAN_CASES)
def test_one_walk_forms_match_a_search_per_shape(body: bytes) -> None:
    assert _new_scan_forms(body) == _original_scan_forms(body)


@pytest.mark.usefixtures("walk_entries_from")
def test_one_walk_forms_match_on_random_markup() -> None:
    """Token soup built from the shapes' parts, so overlaps and near misses are common."""
    tokens = [
        *b"< > = \" ' : - . _ a".split(b" "),
        b" ",
        b"</",
        b"<content ",
        b"<x:summary ",
        b"xml:base",
        b"_xml:base",
        b"http://a/",
        b"<entry>",
        b"entry ",
        b"<a.b:entry/",
        b"<:entry ",
        b"<media:title ",
        b"<media:group>",
        b"type='html'",
        b'type="text/html"',
        b"<title ",
        b"<x:title ",
        b"<uri>",
        b"<x:uri >",
        b"<body",
        b"<url>",
        b"fullitem",
        b"<author>",
        b"</author>",
        b"<x:author ",
        b"author",
        b"</x:author>",
        b"</author\t>",
        b"<x:entry>",
        b"<en",
        b"<!ENTITY",
        b"<description>",
        b"<content:encoded>",
        b"<url>",
        b"<homepage >",
        b"<subtitle ",
        b"<x:media:title ",
        b"<bo",
        b"<!E",
        b"<image>",
        b"</image>",
        b"<image ",
        b"<title>t</title>",
        b"<managingEditor>",
        b"</managingEditor>",
        b"<dc:creator ",
        b"<item>",
    ]
    rng = random.Random(20261124)
    for _ in range(20000):
        body = b"".join(rng.choice(tokens) for _ in range(rng.randint(1, 14)))
        assert _new_scan_forms(body) == _original_scan_forms(body), body


def _original_is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _original_fast_path_shapes(
    body: bytes, content_type: str, base_ok: bool | None, well_formed: bool = False
) -> frozenset[str] | None:
    """`fast_path_shapes` before its checks were reordered, counted by memchr and
    folded into the walk: every check in its plainest form, in the old order (without
    the UTF-8 and CDATA checks for a `well_formed` document, and with "xhtml" only
    inside a tag)."""
    fp = feeds_fastpath
    match = fp._CHARSET_PARAM.search(content_type)
    header = fp._codec(match.group(1)) if match else ""
    if body.startswith(fp._BOMS):
        declared = "bom"
    else:
        decl = fp._XML_DECL_ENCODING.match(body[:1024])
        declared = fp._codec(decl.group(1).decode("ascii")) if decl else ""
        if decl and not declared:
            return None  # an encoding name Python does not know
    if declared == "bom":
        ok = not header or header.startswith("utf")
    elif declared:
        ok = header in ("", declared) and (
            declared != "utf-8" or well_formed or _original_is_utf8(body)
        )
        if declared != "utf-8" and not body.isascii():
            ok = ok and not _original_is_utf8(body)
    else:
        ok = header in ("", "utf-8", "ascii") and (well_formed or _original_is_utf8(body))
    if not ok:
        return None
    if _ORIGINAL_XHTML_IN_TAG.search(body) if well_formed else b"xhtml" in body:
        return None
    if _original_other_base(body):
        return None
    if base_ok is None:
        base_ok = b"xml:base" not in body or bool(fp.uniform_content_base(body))
    if not base_ok or b"fullitem" in body:
        return None
    if not well_formed and b"<![CDATA[" in body and body.count(b"<![CDATA[") != body.count(b"]]>"):
        return None
    if (
        _ORIGINAL_MODE.search(body)
        or (b"&" in body and _ORIGINAL_AMPERSAND_GATE.search(body))
        or fp._C1_UTF8.search(body)
        or (declared != "bom" and re.search(rb"\xc3[\x82-\xb4]\xc2[\x80-\xbf]", body))
        or _ORIGINAL_DOUBLE_REFERENCE.search(body)
    ):
        return None
    shapes = _original_scan_forms(body)[0]
    assert shapes is None or isinstance(shapes, frozenset)
    return shapes


CONTENT_TYPES = [
    "",
    "application/atom+xml",
    "text/xml; charset=utf-8",
    "application/rss+xml; charset=windows-1252",
    "text/xml; charset=us-ascii",
]


@pytest.mark.usefixtures("walk_entries_from")
def test_fast_path_shapes_decides_as_before_over_the_corpus() -> None:
    fixtures = Path(__file__).parent / "fixtures"
    for path in sorted(fixtures.rglob("*.xml")):
        body = path.read_bytes()
        for content_type in CONTENT_TYPES:
            for base_ok in (None, True) if content_type in CONTENT_TYPES[:2] else (None,):
                new = feeds_fastpath.fast_path_shapes(body, content_type, base_ok=base_ok)
                old = _original_fast_path_shapes(body, content_type, base_ok)
                assert new == old, (path, content_type, base_ok)
                with_starts = feeds_fastpath.fast_path_shapes(
                    body, content_type, base_ok=base_ok, entries=True
                )
                assert with_starts == old, (path, content_type, base_ok)
                if with_starts is not None and with_starts.entry_starts is not None:
                    assert with_starts.entry_starts == feeds_fastpath._entry_starts(body)
                if native.parse(body) is not None:
                    # What the extractor has read skips the UTF-8 and CDATA checks.
                    trusted = feeds_fastpath.fast_path_shapes(
                        body, content_type, base_ok=base_ok, well_formed=True
                    )
                    plain = _original_fast_path_shapes(body, content_type, base_ok, True)
                    assert trusted == plain, (path, content_type, base_ok)
                    markup = cdata.markup(body)
                    if markup is not None:
                        mapped = feeds_fastpath.fast_path_shapes(
                            body, content_type, base_ok=base_ok, well_formed=True, markup=markup
                        )
                        assert mapped == _without_cdata_text(body, content_type, base_ok), path


def _without_cdata_text(
    body: bytes, content_type: str, base_ok: bool | None
) -> frozenset[str] | None:
    """What `fast_path_shapes` decides for a well-formed document with `cdata.markup`:
    its plainest form over the document with every CDATA section emptied, found in
    the plainest way, and no C1 control anywhere (that is text, in a section too)."""
    if feeds_fastpath._C1_UTF8.search(body):
        return None
    # Left to right, each construct read whole: a comment's or instruction's text
    # opens no section, and a section's text opens no comment.
    emptied = re.sub(
        rb"<!--.*?-->|<\?.*?\?>|<!\[CDATA\[.*?\]\]>",
        lambda m: b"<![CDATA[]]>" if m.group().startswith(b"<![") else m.group(),
        body,
        flags=re.DOTALL,
    )
    return _original_fast_path_shapes(emptied, content_type, base_ok, True)


def test_fast_path_shapes_decides_as_before_on_random_markup() -> None:
    """Token soup of every shape the gate looks at, with and without a declaration."""
    tokens = [
        *COUNT_TOKENS,
        b"<entry>",
        b"<uri>u</uri>",
        b"<x:uri >",
        b"<title type='html'>",
        b"<media:title>",
        b"<body>",
        b"xhtml",
        b"fullitem",
        b"mode='xml'",
        b' mode="base64"',
        b"xmode='xml'",
        b"&",
        b"&amp;",
        b"&#150;",
        b"xml:base='http://a/'",
        b"<content xml:base='http://a/'>",
        b" base='http://a/'",
        b"<c BASE='x'>",
        b"<c x:base='y' xml:Base='z'>",
        b"&#195;",
        b"&#xC3;",
        b"&#169;",
        b"&#xa9;",
        b"\xc3\x83",
        b"\xc2\xa9",
        b"fooxml:base='q'",
        b"\xd0\xb0",
        b"\xd0",
        b"\xff",
        b"text",
        b" ",
    ]
    heads = [
        b"",
        b"<?xml version='1.0' encoding='utf-8'?>",
        b"\xef\xbb\xbf",
        b"<?xml version='1.0' encoding='latin-1'?>",
        b"<?xml version='1.0' encoding='windows-1252'?>",
    ]
    rng = random.Random(20261125)
    for _ in range(20000):
        body = rng.choice(heads) + b"".join(rng.choice(tokens) for _ in range(rng.randint(0, 16)))
        content_type = rng.choice(CONTENT_TYPES)
        new = feeds_fastpath.fast_path_shapes(body, content_type)
        assert new == _original_fast_path_shapes(body, content_type, None), body


# Tokens around and inside CDATA sections: sections holding gate shapes, openers in
# comments and instructions, and every shape outside a section too.
CDATA_TOKENS = [
    b"<![CDATA[&#195;&#169;]]>",
    b"&#195;",
    b"&#169;",
    b"<![CDATA[",
    b"]]>",
    b"<![CDATA[<body>xhtml & mode='xml' <uri>u</uri> <entry>]]>",
    b"<![CDATA[<title type='html'>fullitem &#150; xml:base='http://a/']]>",
    b"<!-- <![CDATA[ -->",
    b"<?pi <![CDATA[ ?>",
    b"<!-- ",
    b" -->",
    b"<x a='xhtml'>",
    b"<x base='http://a/'>",
    b"<x>a base = b</x>",
    b" BASE=",
    b"<x>xhtml</x>",
    b"<entry>",
    b"<uri>u</uri>",
    b"<title type='html'>",
    b"<media:title>",
    b"<body>",
    b"fullitem",
    b"mode='xml'",
    b"&",
    b"&#150;",
    b"<content xml:base='http://a/'>",
    b"\xc2\x85",
    b"text",
]


@pytest.mark.usefixtures("walk_entries_from")
def test_fast_path_shapes_skips_cdata_text_as_an_emptied_document_would() -> None:
    """With `cdata.markup`, the gate decides as its plainest form does over the
    document with every section emptied, and records the entries outside them."""
    rng = random.Random(20261124)
    head = b"<?xml version='1.0' encoding='utf-8'?>"
    checked = 0
    for _ in range(20000):
        body = head + b"".join(rng.choice(CDATA_TOKENS) for _ in range(rng.randint(1, 14)))
        markup = cdata.markup(body)
        if markup is None:
            continue
        checked += 1
        shapes = feeds_fastpath.fast_path_shapes(
            body, "", entries=True, well_formed=True, markup=markup
        )
        assert shapes == _without_cdata_text(body, "", None), body
        if shapes is not None and shapes.entry_starts is not None:
            entries = feeds_fastpath._ATOM_ENTRY_START.finditer(body)
            assert shapes.entry_starts == [m.start() for m in entries if markup.holds(m.start())]
    assert checked > 5000


# Token soup for the memchr counts: hits of the probed byte that are and are not
# the needle, next to each other and at both ends.
COUNT_TOKENS = [
    b"]",
    b"]]",
    b">",
    b"]]>",
    b"<![CDATA[",
    b"<!",
    b"![",
    b"!",
    b"<",
    b"a",
    b"[",
    b"\xc2",
    b"\x80",
    b"\x9f",
    b"\xa0",
    b"\xc2\x85",
    b"&#146;",
    b"\xc3",
    b"\xc3\x83",
    b"\xc3\xa9",
    b"\xc2\xa9",
    b"\xbf",
]


@pytest.mark.parametrize(("base", "shift", "c1_probes"), [(8, 10, 16), (0, 40, 0), (1, 3, 2)])
def test_memchr_counts_equal_a_scan(
    monkeypatch: pytest.MonkeyPatch, base: int, shift: int, c1_probes: int
) -> None:
    """`_count` and `_c2_shapes` with their budgets as shipped, spent at once, and
    spent part way (so the hand-over to `count`/sre is exercised)."""
    monkeypatch.setattr(feeds_fastpath, "_PROBES_BASE", base)
    monkeypatch.setattr(feeds_fastpath, "_PROBES_SHIFT", shift)
    monkeypatch.setattr(feeds_fastpath, "_C1_PROBES", c1_probes)
    rng = random.Random(base * 1000 + shift)
    bodies = [
        b"".join(rng.choice(COUNT_TOKENS) for _ in range(rng.randint(0, 40))) for _ in range(6000)
    ]
    fixtures = Path(__file__).parent / "fixtures"
    bodies += [path.read_bytes() for path in sorted(fixtures.rglob("*.xml"))]
    for body in bodies:
        ends = len(feeds_fastpath._CDATA_END.findall(body))
        assert feeds_fastpath._count(body, b"]]>", 0) == ends == body.count(b"]]>"), body
        opens = body.count(b"<![CDATA[")
        assert feeds_fastpath._count(body, b"<![CDATA[", 1) == opens, body
        c1 = feeds_fastpath._C1_UTF8.search(body) is not None
        assert feeds_fastpath._c2_shapes(body, double=False) == c1, body
        double = feeds_fastpath._DOUBLE_UTF8.search(body) is not None
        assert feeds_fastpath._c2_shapes(body, double=True) == (c1 or double), body


AMPERSAND_CASES = [
    b"&",
    b"&;",
    b"&amp",
    b"&amp;",
    b"&a.b-c_d;",
    b"&1a;",
    b"&#;",
    b"&#12",
    b"&#123;",
    b"&#x;",
    b"&#X1F;",
    b"&#xG;",
    b"&#146;",
    b"&#x9f;",
    b"&#x9F;",
    b"&#1234567;&&",
    b"&amp &lt;",
]


def test_tag_gate_lead_keeps_every_match() -> None:
    """_TAG_GATE and _AMPERSAND_GATE match where and as their earlier forms did."""
    fixtures = Path(__file__).parent / "fixtures"
    rng = random.Random(7)
    soup = [
        b"".join(rng.choice(AMPERSAND_CASES) for _ in range(rng.randint(1, 6))) for _ in range(3000)
    ]
    bodies = [
        *SCAN_CASES,
        *AMPERSAND_CASES,
        *soup,
        *(path.read_bytes() for path in sorted(fixtures.rglob("*.xml"))),
    ]
    for body in bodies:
        new = [m.span() for m in feeds_fastpath._TAG_GATE.finditer(body)]
        assert new == [m.span() for m in _ORIGINAL_TAG_GATE.finditer(body)], body[:200]
        new = [m.span() for m in feeds_fastpath._AMPERSAND_GATE.finditer(body)]
        assert new == [m.span() for m in _ORIGINAL_AMPERSAND_GATE.finditer(body)], body[:200]


def _original_absolute_http_url(href: str, base_url: str = "") -> str:
    try:
        href = href.strip()
        if not href or re.search(r"[\x00-\x1f\x7f]", href):
            return ""
        if base_url and not re.match(r"https?://", href, re.IGNORECASE):
            href = urljoin(base_url, href)
        parts = urlsplit(href)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname or " " in parts.netloc:
            return ""
        return scheme + href[len(parts.scheme) :].replace(" ", "%20")
    except (ValueError, TypeError):
        return ""


URL_CASES = [
    "https://example.org/a b?c#d",
    "HTTP://Example.ORG",
    "http://",
    "http:///path",
    "https://user@/x",
    "https://user:pw@host:8080/p",
    "https://:80/",
    "https://ho st/",
    "https://[::1]:8080/x",
    "https://[::1/x",
    "http://a?b",
    "http://a#b",
    "  https://example.org/  ",
    "https://exämple.org/",
    "/relative",
    "mailto:a@b",
    "javascript:alert(1)",
]


@pytest.mark.parametrize("href", URL_CASES)
@pytest.mark.parametrize("base", ["", "https://base.example/dir/"])
def test_absolute_http_url_fast_path_agrees(href: str, base: str) -> None:
    assert bot_html.absolute_http_url(href, base) == _original_absolute_http_url(href, base)


TEXT_CASES = [
    "",
    "  Plain   title  ",
    "tabs\tand\fform\vfeeds",
    "nbsp\u00a0\u00a0here",
    "wide\u3000space\u3000",
    "\u2003lead and trail\u2003",
    "Кириллица  и  пробелы",
    "line\nbreak",
    "carriage\rreturn",
    "a &amp; b",
    "x < y",
    "nul\x00byte",
    "sep\x1cfield\x1d",
    "\x85next line",
    "para\u2029sep",
]


@pytest.mark.parametrize("text", TEXT_CASES)
def test_plain_text_fast_path_agrees_with_the_full_route(text: str) -> None:
    full, _ = bot_html.html_to_text(text)
    assert bot_html.plain_text(text) == bot_html._SPACES.sub(" ", full).strip()


def _original_xml_attributes(raw: bytes) -> dict[str, str] | None:
    """`fastpath._xml_attributes` before ASCII values skipped decoding."""
    attrs: dict[str, str] = {}
    for match in feeds_fastpath._ATTRIBUTE.finditer(raw):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        if b"<" in value or feeds_fastpath._XML_REFERENCE.search(value):
            return None
        value = value.replace(b"\r\n", b" ").translate(feeds_fastpath._ATTRIBUTE_SPACE)
        name = match.group(1).decode("ascii", "replace").lower()
        text = html.unescape(value.decode("utf-8", "replace"))
        attrs[name] = text.lower() if name in ("type", "rel") else text
    return attrs


ATTRIBUTE_VALUES = [
    b"",
    b"https://i2.ytimg.com/vi/x/hqdefault.jpg?a=1&amp;b=2",
    b"IMAGE/JPEG",
    b"a\r\nb\tc\nd",
    b"&lt;&#233;&#xE9;",
    b"&nbsp;",
    b"&bogus;",
    b"a & b",
    b"<",
    b"Caf\xc3\xa9",
    b"\xff",
    b"480",
]


def test_xml_attributes_read_as_before() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        parts = []
        for _ in range(rng.randint(0, 4)):
            name = rng.choice([b"url", b"TYPE", b"rel", b"media:title", b"width"])
            value = rng.choice(ATTRIBUTE_VALUES)
            quote = rng.choice([b'"', b"'"])
            parts.append(b" " + name + rng.choice([b"=", b" = "]) + quote + value + quote)
        raw = b"".join(parts)
        assert feeds_fastpath._xml_attributes(raw) == _original_xml_attributes(raw), raw
