"""What a member typed (`@user@server`, a profile URL, `#tag`, words) and target keys.

Keys are canonical and carry everything a fetch needs, so polling after a restart
needs no lookup: `<domain>/accounts/<id>`, `<domain>/tags/<tag>` and
`<domain>/search/<percent-encoded query>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from bot.errors import UserError
from bot.netguard import check_url_syntax
from plugins.mastodon.instances import normalise_domain

_USER = re.compile(r"^[\w.\-]{1,64}$")
_TAG = re.compile(r"^[\w\u00b7\u200c]{1,100}$")
_HANDLE_HINT = "give an account as @user@server (or https://server/@user)"


@dataclass(frozen=True, slots=True)
class AccountQuery:
    """Look up `acct` on `domain` (acct is `user`, or `user@elsewhere` for a remote account)."""

    domain: str
    acct: str

    @property
    def handle(self) -> str:
        return f"@{self.acct}" if "@" in self.acct else f"@{self.acct}@{self.domain}"


@dataclass(frozen=True, slots=True)
class TagQuery:
    domain: str
    tag: str


@dataclass(frozen=True, slots=True)
class SearchQuery:
    domain: str
    text: str


Query = AccountQuery | TagQuery | SearchQuery


def _domain(text: str) -> str:
    try:
        return normalise_domain(text)
    except ValueError as err:
        raise UserError(f"{err}; {_HANDLE_HINT}") from None


def _user(text: str) -> str:
    if not _USER.match(text):
        raise UserError(f"{text!r} is not a valid user name; {_HANDLE_HINT}")
    return text


def _tag(text: str, default_domain: str) -> TagQuery:
    tag, _, domain = text.lstrip("#").partition("@")
    if not _TAG.match(tag):
        raise UserError(f"#{tag} is not a valid hashtag (letters, digits and _ only)")
    return TagQuery(_domain(domain) if domain else default_domain, tag.lower())


def _from_url(text: str) -> Query:
    url = check_url_syntax(text)
    parts = urlsplit(url)
    domain = _domain(parts.netloc)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if segments and segments[0].startswith("@") and len(segments[0]) > 1:
        user, _, remote = segments[0][1:].partition("@")
        acct = f"{_user(user)}@{_domain(remote)}" if remote else _user(user)
        return AccountQuery(domain, acct)
    if len(segments) >= 2 and segments[0] in ("users", "u", "profile"):
        return AccountQuery(domain, _user(segments[1]))
    if len(segments) == 2 and segments[0] == "tags":
        return _tag(segments[1], domain)
    raise UserError(f"{url} is not a Mastodon profile or hashtag page; {_HANDLE_HINT}, or #tag")


def parse_follow(text: str, default_domain: str) -> Query:
    """Parse `/follow mastodon …` input: an account, a profile URL or a hashtag."""
    text = text.strip().strip("<>")
    if not text:
        raise UserError(_HANDLE_HINT)
    if "://" in text:
        return _from_url(text)
    if text.startswith("#"):
        return _tag(text, default_domain)
    if " " in text:
        raise UserError(f"{text!r} is not an account; {_HANDLE_HINT}, or use /search for words")
    handle = text.removeprefix("acct:").lstrip("@")
    user, _, domain = handle.partition("@")
    return AccountQuery(_domain(domain) if domain else default_domain, _user(user))


def parse_search(text: str, default_domain: str) -> Query:
    """Parse `/search mastodon …` input: a hashtag, or words searched on the default instance."""
    text = text.strip()
    if text.startswith("#") and " " not in text:
        return _tag(text, default_domain)
    if text.startswith("@") or "://" in text:
        raise UserError("to relay an account, use /follow mastodon @user@server")
    if len(text) > 200:
        raise UserError("that search is longer than 200 characters; use fewer words")
    return SearchQuery(default_domain, text)


def target_key(query: Query, account_id: str = "") -> str:
    if isinstance(query, AccountQuery):
        return f"{query.domain}/accounts/{account_id}"
    if isinstance(query, TagQuery):
        return f"{query.domain}/tags/{query.tag}"
    return f"{query.domain}/search/{quote(query.text, safe='')}"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    domain: str
    kind: str  # "accounts", "tags" or "search"
    value: str  # account id, tag, or the search words


def parse_key(key: str) -> ParsedKey:
    domain, _, rest = key.partition("/")
    kind, _, value = rest.partition("/")
    if kind not in ("accounts", "tags", "search") or not value:
        raise ValueError(f"not a mastodon target key: {key!r}")
    return ParsedKey(domain, kind, unquote(value) if kind == "search" else value)
