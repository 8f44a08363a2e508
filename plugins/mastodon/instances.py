"""Which base URL serves which instance domain, and whether Starling may trust it.

A domain typed in chat (`@user@example.social`) is untrusted: its API is reached at
`https://<domain>` through the SSRF guard. Domains the operator configured (the
default `instance` and the `instances` map) are trusted as written, which is how
tests and proxies point a domain at another base URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}(?::|$)){_LABEL}(?:\.{_LABEL})*(?::(\d{{1,5}}))?$")


def normalise_domain(text: str) -> str:
    """`Example.Social` → `example.social`; IDNA for non-ASCII; raises ValueError if not a host."""
    raw = text.strip().rstrip(".").lower()
    host, sep, port = raw.partition(":")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise ValueError(f"{text!r} is not a valid server name") from None
    domain = host + (f":{port}" if sep else "")
    match = _DOMAIN.match(domain)
    if not match or (match.group(1) and not 0 < int(match.group(1)) < 65536):
        raise ValueError(f"{text!r} is not a valid server name")
    return domain


def normalise_base_url(text: str) -> str:
    """An http(s) base URL without a trailing slash; raises ValueError otherwise."""
    value = text.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{text!r} must be a plain base URL (no query, user or password)")
    return value


def domain_of(base_url: str) -> str:
    """The host[:port] of a base URL, as a domain key."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


@dataclass(frozen=True, slots=True)
class Instance:
    """One Mastodon-API server as Starling reaches it."""

    domain: str
    base_url: str
    trusted: bool
    has_token: bool


class InstanceDirectory:
    """Maps a domain to its base URL: configured ones first, else `https://<domain>`."""

    def __init__(self, default_base: str, mapping: dict[str, str], *, has_token: bool) -> None:
        self.default_domain = domain_of(default_base)
        self._mapping = dict(mapping)
        self._mapping.setdefault(self.default_domain, default_base)
        self._has_token = has_token

    def get(self, domain: str) -> Instance:
        domain = normalise_domain(domain)
        mapped = self._mapping.get(domain)
        token = self._has_token and domain == self.default_domain
        if mapped is not None:
            return Instance(domain, mapped, trusted=True, has_token=token)
        return Instance(domain, f"https://{domain}", trusted=False, has_token=token)

    @property
    def default(self) -> Instance:
        return self.get(self.default_domain)
