"""Untrusted HTML to readable plain text.

Upstream HTML (feed content, post bodies) is hostile by default, so it is sanitised
with `nh3` first and only then walked with the stdlib parser, which only has to
understand a small, well-formed subset. Chat platforms get plain text; the links
are returned separately so the renderer can show or unfurl them.
"""

from __future__ import annotations

import hashlib
import html as _stdlib_html
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any, Final, cast
from urllib.parse import urljoin, urlsplit

import nh3

__all__ = ["absolute_http_url", "clip_text", "html_to_text", "plain_text"]

# Bound the work one document can cost; feeds routinely embed whole articles,
# but nothing we show in chat needs more than this.
_MAX_INPUT_CHARS: Final = 1_000_000

# Tags kept through sanitising: only those that change the text layout or carry a
# link. Inline formatting (<b>, <span>...) is unwrapped by nh3, which is much faster
# than walking it here.
_ALLOWED_TAGS: Final = frozenset(
    {
        "a", "blockquote", "br", "caption", "dd", "div", "dl", "dt", "figcaption",
        "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "img", "li", "ol", "p", "pre",
        "table", "td", "th", "tr", "ul",
    }
)  # fmt: skip
# Tags whose content is never readable text: dropped whole, not just unwrapped.
_DROP_CONTENT_TAGS: Final = frozenset(
    {
        "applet", "audio", "button", "embed", "form", "frame", "frameset", "head",
        "iframe", "math", "noembed", "noframes", "noscript", "object", "script",
        "select", "style", "svg", "template", "textarea", "title", "video", "xmp",
    }
)  # fmt: skip
_ALLOWED_ATTRIBUTES: Final = {"a": {"href"}, "img": {"alt"}}
_URL_SCHEMES: Final = frozenset({"http", "https", "mailto"})
# Sanitised HTML is fed to the walker in pieces so a long article can stop early.
_FEED_CHUNK: Final = 4096
# Feeds are polled over and over and mostly repeat the same items: remember recent
# conversions, keyed by a digest so the cache never holds the (possibly huge) input.
_CACHE_SIZE: Final = 2048
_CACHE_MAX_INPUT: Final = 262_144
# Inputs up to this long are their own key (exact, and cheaper than a digest); the
# cached result is about as long anyway, so keeping them costs at most twice the memory.
_CACHE_LITERAL_KEY: Final = 256
_cache: OrderedDict[tuple[object, ...], tuple[str, tuple[str, ...]]] = OrderedDict()
_cache_lock = threading.Lock()


def _make_sanitiser() -> Callable[[str], str]:
    """One configured nh3 cleaner, built once: configuring it per call costs more than cleaning."""
    options: dict[str, Any] = {
        "tags": set(_ALLOWED_TAGS),
        "clean_content_tags": set(_DROP_CONTENT_TAGS),
        "attributes": {tag: set(names) for tag, names in _ALLOWED_ATTRIBUTES.items()},
        "url_schemes": set(_URL_SCHEMES),
        "link_rel": None,
        "strip_comments": True,
    }
    cleaner_class = getattr(nh3, "Cleaner", None)  # nh3 >= 0.2.18
    if cleaner_class is not None:
        cleaner = cleaner_class(**options)
        return cast("Callable[[str], str]", cleaner.clean)
    return lambda html: nh3.clean(html, **options)


_sanitise = _make_sanitiser()

# Elements that end a paragraph, and those that only end a line.
_PARAGRAPH_TAGS: Final = frozenset(
    {
        "blockquote", "dl", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "ol", "p",
        "pre", "table", "ul",
    }
)  # fmt: skip
_LINE_TAGS: Final = frozenset({"caption", "dd", "div", "dt", "figcaption", "hr", "li", "tr"})
_CELL_TAGS: Final = frozenset({"td", "th"})

_BAD_URL_CHARS: Final = re.compile(r"[\x00-\x1f\x7f]")
_ABSOLUTE_HTTP: Final = re.compile(r"https?://", re.IGNORECASE)
# The commonest case of all, checked by one regex: printable ASCII without spaces, an
# http(s) scheme in any case, a host (no userinfo, no brackets) and an optional port.
# The classes are printable ASCII (! to ~) less "#/:?@[]" (host) and "#/?@[]" (port).
_SIMPLE_HTTP_URL: Final = re.compile(
    r"[hH][tT][tT][pP][sS]?://[!\"$-.0-9;->A-Z\\^-~]+(?::[!\"$-.0-9:->A-Z\\^-~]*)?"
    r"(?:[/?#][!-~]*)?"
)
# Characters that make `plain_text` take the full route: markup or entities, line
# breaks (lines are trimmed one by one), NULs and lone surrogates (`_clean_str`).
_NOT_SIMPLE_TEXT: Final = re.compile(r"[<&\x00\r\n\ud800-\udfff]")
# As above, and anything `_SPACES` would rewrite: without a match, text only needs `strip`.
_NOT_BARE_TEXT: Final = re.compile(r"[<&\x00\r\n\ud800-\udfff\t\f\v\u00a0]|  ")
_TAG_LIKE: Final = re.compile(r"<[A-Za-z!/?]")
_SPACES: Final = re.compile(r"[ \t\f\v\r\n\u00a0]+")
_HSPACES: Final = re.compile(r"[ \t\f\v\u00a0]+")
_MANY_NEWLINES: Final = re.compile(r"\n{3,}")
_ANY_TAG: Final = re.compile(r"<[^>]*>?")
_SCRIPTISH: Final = re.compile(
    r"<(script|style|iframe|noscript|template|svg|math|title|head)\b.*?</\1\s*>",
    re.IGNORECASE | re.DOTALL,
)


def absolute_http_url(href: str, base_url: str = "") -> str:
    """`href` resolved against `base_url`, or "" unless the result is an http(s) URL.

    Shared with the feed parser so links, permalinks and media obey one rule.
    """
    try:
        href = href.strip()
        if _SIMPLE_HTTP_URL.fullmatch(href):
            # What the route below returns for it, without `urlsplit`'s Python-level
            # cost: the scheme lowercased, nothing else ("http:" and "https" both
            # lowercase to the same five characters). Anything else (userinfo, spaces,
            # brackets, non-ASCII) takes that route.
            return href if href.startswith(("http://", "https://")) else href[:5].lower() + href[5:]
        if not href or _BAD_URL_CHARS.search(href):
            return ""
        if base_url and not _ABSOLUTE_HTTP.match(href):
            href = urljoin(base_url, href)
        parts = urlsplit(href)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname or " " in parts.netloc:
            return ""
        # Sloppy feeds put raw spaces in paths ("/my photo.jpg"); chat clients cut there.
        return scheme + href[len(parts.scheme) :].replace(" ", "%20")
    except (ValueError, TypeError):
        return ""


class _TextWriter(HTMLParser):
    """Turns (sanitised) HTML into lines of text, collecting link targets as it goes."""

    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.out: list[str] = []
        self.links: list[str] = []
        self._drop_depth = 0
        self._pre_depth = 0
        # Stack of (index in self.out where the anchor's text starts, its absolute url).
        self._anchors: list[tuple[int, str]] = []
        self._at_line_start = True
        self._pending_space = False
        self.size = 0  # characters of text emitted so far

    # -- output primitives -------------------------------------------------

    def _emit_text(self, text: str) -> None:
        if self._pre_depth:
            if text:
                self._flush_space()
                self.out.append(text)
                self.size += len(text)
                self._at_line_start = text.endswith("\n")
            return
        if not text:
            return
        leading = text[0] in " \t\f\v\r\n\u00a0"
        trailing = text[-1] in " \t\f\v\r\n\u00a0"
        words = _SPACES.sub(" ", text).strip()
        if leading and not self._at_line_start:
            self._pending_space = True
        if words:
            self._flush_space()
            self.out.append(words)
            self.size += len(words) + 1
            self._at_line_start = False
            self._pending_space = trailing

    def _flush_space(self) -> None:
        if self._pending_space and not self._at_line_start:
            self.out.append(" ")
        self._pending_space = False

    def _break(self, newlines: int) -> None:
        self._pending_space = False
        if not self.out:
            return
        # Count newlines already at the end so breaks never stack past `newlines`.
        tail = 0
        for chunk in reversed(self.out):
            stripped = chunk.rstrip("\n")
            tail += len(chunk) - len(stripped)
            if stripped:
                break
        if tail < newlines:
            self.out.append("\n" * (newlines - tail))
        self._at_line_start = True

    # -- parser callbacks --------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_CONTENT_TAGS:
            self._drop_depth += 1
            return
        if self._drop_depth:
            return
        if tag == "br":
            # Repeated <br> is how many authors write a paragraph break; _tidy caps it.
            self._pending_space = False
            self.out.append("\n")
            self._at_line_start = True
        elif tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)
        elif tag in _CELL_TAGS and not self._at_line_start:
            self._pending_space = False
            self.out.append(" | ")
        if tag == "li":
            self.out.append("• ")
            self._at_line_start = False
        elif tag == "pre":
            self._pre_depth += 1
        elif tag == "img":
            alt = next((v for k, v in attrs if k == "alt" and v), "")
            if alt:
                self._emit_text(f" [{alt.strip()}] ")
        elif tag == "a":
            href = next((v for k, v in attrs if k == "href" and v), "")
            url = absolute_http_url(href, self.base_url)
            if url and url not in self.links:
                self.links.append(url)
            self._anchors.append((len(self.out), url))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in ("br", "img", "hr"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_CONTENT_TAGS:
            self._drop_depth = max(0, self._drop_depth - 1)
            return
        if self._drop_depth:
            return
        if tag == "a" and self._anchors:
            start, url = self._anchors.pop()
            if url:
                shown = "".join(self.out[start:]).strip()
                if not shown:
                    self._emit_text(url)
                elif not _same_link(shown, url):
                    self._emit_text(f" ({url})")
        elif tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)
        if tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)

    def handle_data(self, data: str) -> None:
        if not self._drop_depth:
            self._emit_text(data)

    def text(self) -> str:
        return _tidy("".join(self.out))


def _same_link(shown: str, url: str) -> bool:
    """Whether the anchor text already shows the url, so repeating it adds nothing."""

    def bare(s: str) -> str:
        s = s.strip().lower()
        for prefix in ("https://", "http://"):
            if s.startswith(prefix):
                s = s[len(prefix) :]
        return s.removeprefix("www.").rstrip("/")

    a, b = bare(shown), bare(url)
    if a == b:
        return True
    # Sites shorten long urls in the visible text: "example.com/very/lo…".
    for ellipsis in ("…", "..."):
        if a.endswith(ellipsis):
            prefix = a.removesuffix(ellipsis)
            return len(prefix) >= 10 and b.startswith(prefix)
    return False


def _tidy(text: str) -> str:
    """Trims every line and keeps at most one blank line between paragraphs."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip("\n").strip()


def _clean_str(value: object) -> str:
    """A str that every later step (nh3 is Rust: no lone surrogates) can take."""
    return _clean_str_keyed(value)[0]


def _clean_str_keyed(value: object) -> tuple[str, bytes | None]:
    """`_clean_str`, and for non-ASCII text the bytes `_key_bytes` would make of it.

    The surrogate check has to encode non-ASCII text anyway, and strict UTF-16
    rejects exactly what strict UTF-8 does (any surrogate code point) at several
    times the speed, so those bytes do both jobs.
    """
    s = value if isinstance(value, str) else "" if value is None else str(value)
    if len(s) > _MAX_INPUT_CHARS:
        s = s[:_MAX_INPUT_CHARS]
    if type(s) is not str:
        s = s.replace("\x00", "")  # also turns a str subclass into a plain str
    elif s.isascii():
        # `in` is a memchr over one-byte text: most text has no NUL, and then no copy.
        if "\x00" in s:
            s = s.replace("\x00", "")
    elif s.count("\x00"):  # wider text: memchr would stop at each ASCII char's 0 byte
        s = s.replace("\x00", "")
    if s.isascii():  # O(1) in CPython; ASCII has no surrogates
        return s, None
    try:
        return s, s.encode("utf-16-le")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "replace").decode("utf-8", "replace")
        return s, _key_bytes(s)


def _key_bytes(text: str) -> bytes:
    """Bytes that identify `text` for the conversion cache (ASCII as is, else UTF-16);
    the key also records `text.isascii()`, so the two encodings never collide."""
    return text.encode("ascii") if text.isascii() else text.encode("utf-16-le")


def clip_text(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, marked with "…"."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _convert(html: str, base_url: str, max_chars: int) -> tuple[str, list[str]]:
    try:
        clean = _sanitise(html)
    except Exception:
        # The writer drops script-like content itself, so the raw markup is still safe
        # to read: it only produces text, never markup.
        clean = html
    writer = _TextWriter(base_url)
    for start in range(0, len(clean), _FEED_CHUNK):
        writer.feed(clean[start : start + _FEED_CHUNK])
        if max_chars and writer.size > max_chars:
            break  # the rest would be clipped anyway
    else:
        writer.close()
    text = writer.text()
    return (clip_text(text, max_chars) if max_chars else text), writer.links


def _cached_convert(
    html: str, base_url: str, max_chars: int, key_bytes: bytes | None = None
) -> tuple[str, list[str]]:
    """`_convert` through the cache; `key_bytes` is `_key_bytes(html)`, if known."""
    key: tuple[object, ...]
    if len(html) <= _CACHE_LITERAL_KEY:
        # A str never equals the bytes digest below, so the two kinds of key never mix.
        key = (html, base_url, max_chars)
    elif len(html) > _CACHE_MAX_INPUT:
        return _convert(html, base_url, max_chars)
    else:
        data = _key_bytes(html) if key_bytes is None else key_bytes
        # SHA-256 runs in hardware on most CPUs: faster than BLAKE2, as collision-proof.
        key = (hashlib.sha256(data).digest(), html.isascii(), base_url, max_chars)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
    if hit is not None:
        return hit[0], list(hit[1])
    text, links = _convert(html, base_url, max_chars)
    with _cache_lock:
        _cache[key] = (text, tuple(links))
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return text, links


def html_to_text(html: str, base_url: str = "", *, max_chars: int = 0) -> tuple[str, list[str]]:
    """Readable plain text and the absolute http(s) links of an untrusted HTML fragment.

    With `max_chars`, the text is clipped to that length (word boundary, "…") and
    conversion stops there, which keeps long articles cheap; links past the cut are
    not reported. Never raises: on anything unexpected it degrades to stripping tags.
    """
    max_chars = max_chars if isinstance(max_chars, int) and max_chars > 0 else 0
    try:
        html, key_bytes = _clean_str_keyed(html)
        if not _TAG_LIKE.search(html):
            # Plain text: only entities to decode, the layout is the author's.
            if "&" in html or "\n" in html or "\r" in html:
                text = _tidy(_HSPACES.sub(" ", _stdlib_html.unescape(html)))
            else:  # one line, nothing to decode: all `_tidy` would do is strip it
                text = _HSPACES.sub(" ", html).strip()
            return (clip_text(text, max_chars) if max_chars else text), []
        # Only markup has links to resolve against the base.
        return _cached_convert(html, _clean_str(base_url).strip(), max_chars, key_bytes)
    except Exception:
        try:
            text = _SCRIPTISH.sub(" ", str(html))
            text = _tidy(_HSPACES.sub(" ", _stdlib_html.unescape(_ANY_TAG.sub(" ", text))))
            return (clip_text(text, max_chars) if max_chars else text), []
        except Exception:
            return "", []


def plain_text(s: str) -> str:
    """One line of text from a string that may hold markup or entities (titles, names)."""
    if isinstance(s, str) and len(s) <= _MAX_INPUT_CHARS:
        if not _NOT_BARE_TEXT.search(s):
            return s.strip()  # the commonest case of the one below: no spaces to squeeze
        if not _NOT_SIMPLE_TEXT.search(s):
            # One line, no markup, no entities: what the full route below returns, as
            # `html_to_text` would only collapse spaces and trim it.
            return _SPACES.sub(" ", s).strip()
    text, _ = html_to_text(s)
    return _SPACES.sub(" ", text).strip()
