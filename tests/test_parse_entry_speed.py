"""The feed parser's faster per-entry helpers mean exactly what their old forms meant.

`plugins.feeds.parse` and `bot.html` were rewritten for speed per entry: fewer
wrapper calls, early returns for entries without media or author, one date parse
when `published` and `updated` agree, one regex for the commonest absolute URL,
`strip` instead of a regex for bare one-line text, literal cache keys for short
HTML, and fastfeedparser called without tags. Each old form is kept here, and the
new one must agree with it over every fixture document (read by both parsers) and
over random inputs.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import html as stdlib_html
import re
import time
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastfeedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import html as bot_html
from bot.known import KnownPosts, pack, placeholder
from bot.model import Author, Media, Post
from plugins.feeds import parse as P
from plugins.feeds.parse import FeedParseError, ParsedFeed

FIXTURES = Path(__file__).parent / "fixtures"
URL = "http://example.com/dir/feed.xml"


# -- the old forms -------------------------------------------------------------------
# Copied from the code before the rewrite; bot.html's old forms come first, as the
# old parse helpers below use them.


# The scheme and netloc of an absolute http(s) URL, as the old form's shortcut read it.
_OLD_HTTP_NETLOC = re.compile(r"(https?):(//([^/?#]*))", re.IGNORECASE)


def old_absolute_http_url(href: str, base_url: str = "") -> str:
    from urllib.parse import urljoin, urlsplit

    try:
        href = href.strip()
        if not href or bot_html._BAD_URL_CHARS.search(href):
            return ""
        if href.isascii() and (simple := _OLD_HTTP_NETLOC.match(href)):
            netloc = simple.group(3)
            if "[" not in netloc and "]" not in netloc:
                host = netloc.rpartition("@")[2].partition(":")[0]
                if not host or " " in netloc:
                    return ""
                scheme = simple.group(1)
                return scheme.lower() + href[len(scheme) :].replace(" ", "%20")
        if base_url and not bot_html._ABSOLUTE_HTTP.match(href):
            href = urljoin(base_url, href)
        parts = urlsplit(href)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname or " " in parts.netloc:
            return ""
        return scheme + href[len(parts.scheme) :].replace(" ", "%20")
    except (ValueError, TypeError):
        return ""


def old_clean_str_keyed(value: object) -> tuple[str, bytes | None]:
    s = value if isinstance(value, str) else "" if value is None else str(value)
    if len(s) > bot_html._MAX_INPUT_CHARS:
        s = s[: bot_html._MAX_INPUT_CHARS]
    s = s.replace("\x00", "")
    if s.isascii():
        return s, None
    try:
        return s, s.encode("utf-16-le")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "replace").decode("utf-8", "replace")
        return s, bot_html._key_bytes(s)


def old_html_to_text(html: str, base_url: str = "", *, max_chars: int = 0) -> tuple[str, list[str]]:
    """The old `html_to_text`, converting every time (the cache only memoises this)."""
    max_chars = max_chars if isinstance(max_chars, int) and max_chars > 0 else 0
    try:
        html, _ = old_clean_str_keyed(html)
        base_url = old_clean_str_keyed(base_url)[0].strip()
        if not bot_html._TAG_LIKE.search(html):
            text = bot_html._tidy(bot_html._HSPACES.sub(" ", stdlib_html.unescape(html)))
            return (bot_html.clip_text(text, max_chars) if max_chars else text), []
        return bot_html._convert(html, base_url, max_chars)
    except Exception:
        try:
            text = bot_html._SCRIPTISH.sub(" ", str(html))
            text = bot_html._tidy(
                bot_html._HSPACES.sub(" ", stdlib_html.unescape(bot_html._ANY_TAG.sub(" ", text)))
            )
            return (bot_html.clip_text(text, max_chars) if max_chars else text), []
        except Exception:
            return "", []


def old_plain_text(s: str) -> str:
    if (
        isinstance(s, str)
        and len(s) <= bot_html._MAX_INPUT_CHARS
        and not bot_html._NOT_SIMPLE_TEXT.search(s)
    ):
        return bot_html._SPACES.sub(" ", s).strip()
    text, _ = old_html_to_text(s)
    return bot_html._SPACES.sub(" ", text).strip()


clip_text = bot_html.clip_text
_str = P._str
_list = P._list


def old_mapping(value: object) -> Mapping[str, Any]:
    if type(value) is dict:
        return value
    if isinstance(value, dict):
        return dict(value)
    return {}


def old_raw_id_and_link(entry: Mapping[str, Any], *, fast: bool) -> tuple[str, str]:
    raw_id = _str(entry.get("id")).strip()
    raw_link = _str(entry.get("link")).strip()
    links = [old_mapping(link) for link in _list(entry.get("links"))]
    if fast:
        if links and raw_link:
            alternates = [
                _str(link.get("href")).strip()
                for link in links
                if _str(link.get("rel") or "alternate") == "alternate"
            ]
            if raw_link not in alternates:
                if raw_id == raw_link:
                    raw_id = ""
                raw_link = next((a for a in alternates if a), "")
    elif entry.get("guidislink") and raw_link == raw_id:
        raw_link = ""
    return raw_id, raw_link


def old_native_id(raw_id: str, raw_link: str, base: str, title: str, text: str) -> str:
    if raw_id and raw_id != raw_link:
        native_id = raw_id
    elif raw_link:
        native_id = old_absolute_http_url(raw_link, base) or raw_link
    else:
        digest = hashlib.sha256(f"{title}\n{text}".encode("utf-8", "replace")).hexdigest()
        return f"hash:{digest[:40]}"
    if len(native_id) > P.MAX_ID_CHARS:
        return "sha256:" + hashlib.sha256(native_id.encode("utf-8", "replace")).hexdigest()
    return native_id


def old_entry_title(entry: Mapping[str, Any], *, fast: bool, html_titles: bool) -> str:
    raw = _str(entry.get("title"))
    if not raw:
        return ""
    detail = old_mapping(entry.get("title_detail"))
    literal = not html_titles if fast else _str(detail.get("type")).lower() == "text/plain"
    if literal:
        return clip_text(P._literal_line(raw), P.MAX_TITLE_CHARS)
    return clip_text(old_plain_text(raw), P.MAX_TITLE_CHARS)


def old_entry_body(entry: Mapping[str, Any]) -> tuple[str, bool]:
    best: tuple[str, bool] = ("", False)
    for item in _list(entry.get("content")):
        content = old_mapping(item)
        value = _str(content.get("value"))
        kind = _str(content.get("type")).lower()
        if value.strip() and P._is_textual(kind):
            plain = kind in ("text", "text/plain")
            if not plain:
                return value, False
            best = best if best[0] else (value, True)
    if best[0]:
        return best
    for key in ("summary", "description"):
        value = _str(entry.get(key))
        if value.strip():
            detail = old_mapping(entry.get("summary_detail"))
            return value, _str(detail.get("type")).lower() == "text/plain"
    return "", False


def old_date_from_str(value: str) -> datetime | None:
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
    moment = moment.replace(microsecond=0)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def old_entry_date(entry: Mapping[str, Any], key: str) -> datetime | None:
    parsed = entry.get(f"{key}_parsed")
    if isinstance(parsed, time.struct_time):
        try:
            return datetime(*parsed[:6], tzinfo=UTC)
        except (ValueError, OverflowError):
            return None
    return old_date_from_str(_str(entry.get(key)))


_EMAIL = re.compile(r"^[^@\s<>()]+@[^@\s<>()]+$")


def old_person_name(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        return ""
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
    return clip_text(old_plain_text(value), 200)


def old_person(node: Mapping[str, Any]) -> Author | None:
    detail = old_mapping(node.get("author_detail"))
    listed = _list(node.get("authors"))
    name = (
        (old_person_name(_str(old_mapping(listed[0]).get("name"))) if listed else "")
        or old_person_name(_str(node.get("author")))
        or old_person_name(_str(detail.get("name")))
    )
    if not name:
        return None
    authors = [old_mapping(a) for a in listed]
    href = _str(detail.get("href")) or next(
        (_str(a.get("href") or a.get("uri")) for a in authors if a.get("href") or a.get("uri")),
        "",
    )
    return Author(name=name, url=old_absolute_http_url(href))


def old_entry_media(entry: Mapping[str, Any], base: str) -> tuple[Media, ...]:
    found: list[Media] = []

    def add(href: object, alt: object = "") -> None:
        media_url = old_absolute_http_url(_str(href), base)
        if media_url and all(m.url != media_url for m in found) and len(found) < P.MAX_MEDIA:
            found.append(Media(url=media_url, alt=clip_text(old_plain_text(_str(alt)), 300)))

    enclosures = entry.get("enclosures")
    if enclosures is None:
        enclosures = [
            link
            for link in _list(entry.get("links"))
            if old_mapping(link).get("rel") == "enclosure"
        ]
    for raw in _list(enclosures):
        enc = old_mapping(raw)
        href = enc.get("url") or enc.get("href")
        if P._is_image(_str(enc.get("type")), "", _str(href)):
            add(href)
    thumbnails: list[object] = []
    for raw in _list(entry.get("media_content")):
        item = old_mapping(raw)
        if P._is_image(_str(item.get("type")), _str(item.get("medium")), _str(item.get("url"))):
            add(item.get("url"), item.get("title") or item.get("description"))
        if item.get("thumbnail_url"):
            thumbnails.append(item.get("thumbnail_url"))
    thumbnails.extend(old_mapping(t).get("url") for t in _list(entry.get("media_thumbnail")))
    for thumb in thumbnails:
        add(thumb)
    return tuple(found)


def old_entry_post(
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
    raw_id, raw_link = old_raw_id_and_link(entry, fast=fast)
    created = old_entry_date(entry, "published")
    updated = old_entry_date(entry, "updated")
    edited = updated if created and updated and updated > created else None
    native_id = (
        P.scoped_id(old_native_id(raw_id, raw_link, url, "", ""), id_host)
        if raw_id or raw_link
        else ""
    )
    if native_id and known is not None and (f"{network}:{native_id}", edited) in known:
        return placeholder(network, native_id, created or updated, edited)
    link = old_absolute_http_url(raw_link, url) or old_absolute_http_url(raw_id)
    title = old_entry_title(entry, fast=fast, html_titles=html_titles)
    body_html, is_plain = old_entry_body(entry)
    if is_plain:
        text, links = old_html_to_text(
            stdlib_html.escape(body_html, quote=False), max_chars=P.MAX_TEXT_CHARS
        )
    else:
        text, links = old_html_to_text(body_html, content_base or url, max_chars=P.MAX_TEXT_CHARS)
    if not native_id:
        native_id = P.scoped_id(old_native_id(raw_id, raw_link, url, title, text), id_host)
    return Post(
        network=network,
        native_id=native_id,
        author=old_person(entry) or author,
        text=text,
        permalink=link,
        title=title,
        links=tuple(links[: P.MAX_LINKS]),
        media=old_entry_media(entry, url),
        created_at=created or updated,
        edited_at=edited,
    )


def old_build(
    data: dict[str, Any],
    *,
    url: str,
    fast: bool,
    html_titles: bool,
    id_host: str = "",
    known: KnownPosts | None = None,
    content_base: str = "",
) -> ParsedFeed:
    feed = old_mapping(dict.get(data, "feed"))
    title = clip_text(old_plain_text(_str(feed.get("title"))), P.MAX_TITLE_CHARS)
    link = old_absolute_http_url(_str(feed.get("link")), url)
    if not link:
        for raw in _list(feed.get("links")):
            item = old_mapping(raw)
            if _str(item.get("rel") or "alternate") == "alternate":
                link = old_absolute_http_url(_str(item.get("href")), url)
                if link:
                    break
    default_author = old_person(feed) or Author(name=title or P._host(url) or "feed")
    posts: list[Post] = []
    seen: set[str] = set()
    for raw in _list(dict.get(data, "entries")):
        try:
            post = old_entry_post(
                old_mapping(raw),
                url=url,
                network="feeds",
                author=default_author,
                fast=fast,
                html_titles=html_titles,
                id_host=id_host,
                known=known,
                content_base=content_base,
            )
        except Exception:
            continue
        if post.native_id not in seen:
            seen.add(post.native_id)
            posts.append(post)
    return ParsedFeed(title=title, link=link or old_absolute_http_url(url), posts=posts)


# -- the corpus, read by both parsers ---------------------------------------------------


def documents() -> list[Path]:
    corpus = sorted(p for p in (FIXTURES / "feedparser").rglob("*") if p.is_file())
    return [p for p in corpus if p.name != "LICENSE"] + sorted((FIXTURES / "feeds").glob("*"))


_PARSED: list[tuple[str, dict[str, Any], bool]] | None = None


def parsed_corpus() -> list[tuple[str, dict[str, Any], bool]]:
    """(name, parser result, fast) for every fixture either parser reads (built once)."""
    global _PARSED
    if _PARSED is None:
        out: list[tuple[str, dict[str, Any], bool]] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for path in documents():
                body = path.read_bytes()
                name = str(path.relative_to(FIXTURES))
                fast = P._fastfeedparser(body)
                if fast is not None:
                    out.append((name, fast, True))
                with contextlib.suppress(FeedParseError):
                    out.append((name, P._feedparser(body, ""), False))
        _PARSED = out
    return _PARSED


def corpus_entries() -> list[tuple[Mapping[str, Any], bool]]:
    """Every entry and feed node of the corpus, as each parser produced it."""
    nodes: list[tuple[Mapping[str, Any], bool]] = []
    for _, data, fast in parsed_corpus():
        nodes.append((old_mapping(dict.get(data, "feed")), fast))
        nodes.extend((old_mapping(e), fast) for e in _list(dict.get(data, "entries")))
    return nodes


def test_corpus_is_read() -> None:
    runs = parsed_corpus()
    assert sum(fast for _, _, fast in runs) > 1000
    assert sum(not fast for _, _, fast in runs) > 1000


def test_fastfeedparser_without_tags_differs_only_by_tags() -> None:
    def untagged(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: untagged(v) for k, v in value.items() if k != "tags"}
        if isinstance(value, list):
            return [untagged(v) for v in value]
        return value

    compared = 0
    for path in documents():
        body = path.read_bytes()
        try:
            full = fastfeedparser.parse(body)
        except Exception as exc:  # it must fail the same way without tags
            with pytest.raises(type(exc)):
                fastfeedparser.parse(body, include_tags=False)
            continue
        assert untagged(fastfeedparser.parse(body, include_tags=False)) == untagged(full), path
        compared += 1
    assert compared > 1000


def test_mapping_reads_fastfeedparser_dicts_in_place() -> None:
    from fastfeedparser.main import FastFeedParserDict
    from feedparser.util import FeedParserDict

    ffp = FastFeedParserDict(a=1, links=[])
    assert P._mapping(ffp) is ffp  # nothing to copy: it reads as a plain dict does
    fpd = FeedParserDict(summary="s")
    view = P._mapping(fpd)
    assert type(view) is dict
    assert view == old_mapping(fpd)
    assert view.get("description") is None  # no deprecated aliases
    for value in (None, [], "x", 3, {"a": 1}):
        assert P._mapping(value) == old_mapping(value)


def check_helpers(node: Mapping[str, Any], fast: bool) -> None:
    assert P._raw_id_and_link(node, fast=fast) == old_raw_id_and_link(node, fast=fast)
    for html_titles in (False, True):
        assert P._entry_title(node, fast=fast, html_titles=html_titles) == old_entry_title(
            node, fast=fast, html_titles=html_titles
        )
    assert P._entry_body(node) == old_entry_body(node)
    assert P._entry_dates(node) == (
        old_entry_date(node, "published"),
        old_entry_date(node, "updated"),
    )
    assert P._person(node) == old_person(node)
    for base in ("", URL):
        assert P._entry_media(node, base) == old_entry_media(node, base)


def test_entry_helpers_match_old_forms_over_the_corpus() -> None:
    nodes = corpus_entries()
    assert len(nodes) > 4000
    for node, fast in nodes:
        check_helpers(node, fast)


def test_strings_match_old_forms_over_the_corpus() -> None:
    """Every string field of every entry through the rewritten bot.html helpers."""
    seen: set[str] = set()

    def strings(value: Any) -> Any:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list | tuple):
            for item in value:
                yield from strings(item)

    for _, data, _ in parsed_corpus():
        for text in strings(dict(data)):
            if text in seen:
                continue
            seen.add(text)
            check_text(text)
    assert len(seen) > 1000


def check_text(text: str) -> None:
    for base in ("", URL):
        assert bot_html.absolute_http_url(text, base) == old_absolute_http_url(text, base)
    assert bot_html.plain_text(text) == old_plain_text(text)
    assert bot_html._clean_str_keyed(text) == old_clean_str_keyed(text)
    assert P._person_name(text) == old_person_name(text)
    assert P._date_from_str(text) == old_date_from_str(text)
    for max_chars in (0, 50):
        for base in ("", URL):
            assert bot_html.html_to_text(text, base, max_chars=max_chars) == old_html_to_text(
                text, base, max_chars=max_chars
            )
            # A second time: now from the conversion cache where it keeps the result.
            assert bot_html.html_to_text(text, base, max_chars=max_chars) == old_html_to_text(
                text, base, max_chars=max_chars
            )


def test_build_matches_old_form_over_the_corpus() -> None:
    for name, data, fast in parsed_corpus():
        for html_titles in (False, True) if fast else (False,):
            new = P._build(data, url=URL, network="feeds", fast=fast, html_titles=html_titles)
            old = old_build(data, url=URL, fast=fast, html_titles=html_titles)
            assert new == old, name


def test_build_matches_old_form_with_known_posts_and_id_host() -> None:
    for name, data, fast in parsed_corpus()[::7]:
        first = P._build(data, url=URL, network="feeds", fast=fast, html_titles=True)
        known = KnownPosts(pack(first.posts[::2]))
        kwargs: dict[str, Any] = {"id_host": "example.com", "known": known}
        new = P._build(data, url=URL, network="feeds", fast=fast, html_titles=True, **kwargs)
        old = old_build(data, url=URL, fast=fast, html_titles=True, **kwargs)
        assert new == old, name


# -- random inputs -------------------------------------------------------------------

URLISH = st.one_of(
    st.text(),
    st.text(alphabet="hHtTpPsS:/?#@[]. %x1-é\t\n\x00\x7f", max_size=40),
    st.builds(
        lambda scheme, host, rest: f"{scheme}://{host}{rest}",
        st.sampled_from(["http", "https", "HTTP", "Https", "httpS", "ftp", "htp", "http:"]),
        st.text(alphabet="abc.-:@[]1 é\x00", max_size=12),
        st.text(alphabet="/?#abc %:@[]é\x7f\n", max_size=20),
    ),
)
TEXTISH = st.one_of(
    st.text(),
    st.text(alphabet="ab <>&;#()@.\t\n\r\x00\xa0\u2028\x0b\x0c\x1cé\ud800", max_size=40),
    st.builds(
        lambda a, b: f"{a} <{b}@example.com>",
        st.text(max_size=10),
        st.text(alphabet="ab.", max_size=5),
    ),
    st.builds(
        lambda a, b: f"{a}@example.com ({b})",
        st.text(alphabet="ab.", max_size=5),
        st.text(max_size=10),
    ),
    st.sampled_from(
        [
            "2025-06-12T08:00:00+00:00",
            "2025-06-12T08:00:00.123456+02:00",
            "2025-06-12T08:00:00",
            "2025-06-12 08:00:00.5",
            "Thu, 12 Jun 2025 08:00:00 GMT",
            "Thu, 12 Jun 2025 08:00:00 +0530",
            " 2025-06-12 ",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
        ]
    ),
    st.builds(
        lambda tag, body: f"<{tag}>{body}</{tag}>",
        st.sampled_from(["p", "b", "a href='/x'", "script", "br/"]),
        st.text(max_size=20),
    ),
)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXTISH, URLISH)
KEYS = st.sampled_from(
    [
        "id", "link", "links", "href", "rel", "type", "title", "title_detail", "content",
        "value", "summary", "description", "summary_detail", "published", "updated",
        "published_parsed", "updated_parsed", "author", "authors", "author_detail", "name",
        "uri", "url", "enclosures", "media_content", "media_thumbnail", "medium",
        "thumbnail_url", "guidislink",
    ]
)  # fmt: skip
NODES = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(KEYS, inner, max_size=6),
    ),
    max_leaves=20,
)
STRUCT_TIMES = st.builds(
    lambda t: time.struct_time(t),
    st.tuples(*(st.integers(-5, 10_000) for _ in range(6)), st.just(0), st.just(1), st.just(0)),
)
ENTRIES = st.dictionaries(
    KEYS, st.one_of(NODES, STRUCT_TIMES, st.sampled_from(["rel", "enclosure", "alternate"]))
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ENTRIES, st.booleans())
def test_entry_helpers_match_old_forms_on_random_entries(entry: dict[str, Any], fast: bool) -> None:
    check_helpers(entry, fast)
    for html_titles in (False, True):
        kwargs: dict[str, Any] = {"url": URL, "fast": fast, "html_titles": html_titles}
        new = P._build({"entries": [entry]}, network="feeds", **kwargs)
        assert new == old_build({"entries": [entry]}, **kwargs)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(TEXTISH, URLISH))
def test_text_helpers_match_old_forms_on_random_text(text: str) -> None:
    check_text(text)


@settings(max_examples=500, deadline=None)
@given(URLISH, URLISH)
def test_absolute_http_url_matches_old_form_with_a_base(href: str, base: str) -> None:
    assert bot_html.absolute_http_url(href, base) == old_absolute_http_url(href, base)


@pytest.mark.parametrize(
    "href",
    [
        "http://a", "HTTP://a/b", "httpS://a", "Https://a:8080/x?y#z", "http://a:/", "http://a::1/",
        "http://user@a/", "http://@a/", "http://:80/", "http:///x", "http://[::1]/", "http://a b/",
        "http://a/ b", " http://a/\n", "http://a/\x7f", "http://a/é", "http:/a", "http:a",
        "https://a.b-c_d.example/%20?q=[1]@x", "http://a#", "http://a?", "http://a/\u00a0",
        "http://\u212aa/",
    ],
)  # fmt: skip
def test_absolute_http_url_edges(href: str) -> None:
    for base in ("", URL):
        assert bot_html.absolute_http_url(href, base) == old_absolute_http_url(href, base)


class _Str(str):
    """A str subclass: the old `_clean_str` made a plain str of it, so must the new."""


@pytest.mark.parametrize(
    "value",
    [
        "", "a\x00b", "é\x00", "\x00", "ä" * 300 + "\x00", "x" * 300, _Str("<b>a</b>"),
        _Str("a\x00"), None, 3, "\ud800", "é\ud800\x00",
    ],
)  # fmt: skip
def test_clean_str_keyed_edges(value: object) -> None:
    new = bot_html._clean_str_keyed(value)
    assert new == old_clean_str_keyed(value)
    assert type(new[0]) is str


@pytest.mark.parametrize("length", [0, 1, 255, 256, 257, 5000])
def test_conversion_cache_keys_by_content(length: int) -> None:
    """Short inputs key the cache by themselves, longer ones by a digest: never mixed."""
    for base in ("", URL):
        for filler in ("a", "é", "😀"):
            html = ("<p>" + filler * length)[: max(length, 4)]
            first = bot_html.html_to_text(html, base, max_chars=100)
            assert first == old_html_to_text(html, base, max_chars=100)
            assert bot_html.html_to_text(html, base, max_chars=100) == first
            other = html[:-1] + "b"
            assert bot_html.html_to_text(other, base, max_chars=100) == old_html_to_text(
                other, base, max_chars=100
            )


@pytest.mark.parametrize(
    "name",
    [
        "a" * 199, "a" * 200, "a" * 201, "ab " * 67, "ab " * 68, "x " * 101, "Jane Doe",
        "Jane (Doe)", "jane@ex.com (Jane)", "(Jane) jane@ex.com", "Jane <jane@ex.com>",
        "Jane >", "Jane &amp; co", "Jane\u00a0Doe", "  Jane\t\nDoe  ", "Jane)", "(", ")",
        "é" * 201, "Ja\x00ne", "Ja\ud800ne",
    ],
)  # fmt: skip
def test_person_name_edges(name: str) -> None:
    assert P._person_name(name) == old_person_name(name)


def test_simple_url_classes_are_printable_ascii_less_delimiters() -> None:
    """`_SIMPLE_HTTP_URL`'s hand-written classes, over every code point."""
    printable = {chr(c) for c in range(0x21, 0x7F)}
    match = bot_html._SIMPLE_HTTP_URL.fullmatch
    for code in range(0x110000):
        c = chr(code)
        assert bool(match("http://" + c)) == (c in printable and c not in "#/:?@[]"), code
        assert bool(match("http://a:" + c)) == (c in printable and c not in "@[]"), code
        assert bool(match("http://a/" + c)) == (c in printable), code
