"""Which base URL serves which instance domain, and whether Starling may trust it.

A domain typed in chat (`@user@example.social`) is untrusted: its API is reached at
`https://<domain>` through the SSRF guard. Domains the operator configured (the
default `instance` and the `instances` map) are trusted as written, which is how
tests and proxies point a domain at another base URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    """One Mastodon-API server as Starling reaches it (and the token it has for it)."""

    domain: str
    base_url: str
    trusted: bool
    token: str | None = field(default=None, repr=False)
    is_default: bool = False

    @property
    def has_token(self) -> bool:
        return self.token is not None


class InstanceDirectory:
    """Maps a domain to its base URL (configured ones first, else `https://<domain>`)
    and to its access token, if the operator gave one for that server."""

    def __init__(
        self,
        default_base: str,
        mapping: dict[str, str],
        *,
        tokens: Mapping[str, str] | None = None,
    ) -> None:
        self.default_domain = domain_of(default_base)
        self._mapping = dict(mapping)
        self._mapping.setdefault(self.default_domain, default_base)
        self._tokens = dict(tokens or {})

    @property
    def any_token(self) -> bool:
        """Whether Starling has a token for at least one server."""
        return bool(self._tokens)

    def get(self, domain: str) -> Instance:
        domain = normalise_domain(domain)
        mapped = self._mapping.get(domain)
        token = self._tokens.get(domain)
        base, trusted = (mapped, True) if mapped is not None else (f"https://{domain}", False)
        return Instance(
            domain,
            base,
            trusted=trusted,
            token=token or None,
            is_default=domain == self.default_domain,
        )

    @property
    def default(self) -> Instance:
        return self.get(self.default_domain)
