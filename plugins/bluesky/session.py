"""One logged-in session, reused for every authenticated call.

`com.atproto.server.createSession` is limited to 30 logins per 5 minutes (and
300 a day) per account, so Starling logs in once, keeps the access token, renews
it with `refreshSession` shortly before it expires (or when the PDS answers
`ExpiredToken`), and logs in again only when the refresh token itself is
refused. The session is kept in the plugin's state in Starling's database
(`persist_session`, on by default) so restarts do not log in again either.
Releases before 0008 kept it in `<data_dir>/bluesky-session.json`; that file is
imported once and then removed (it holds tokens).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import msgspec

from bot.errors import Outcome, UpstreamError, UserError
from bot.pluginstate import PluginState
from plugins.bluesky.lexicon import Session
from plugins.bluesky.xrpc import Xrpc, XrpcError

log = logging.getLogger(__name__)

T = TypeVar("T")
REFRESH_MARGIN_S = 60.0
LOGIN_COOLDOWN_S = 300.0
STATE_KEY = "session"


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (read, not verified: only to know when to refresh)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


class Sessions:
    """Holds the session for `handle` on `service`; `call` runs a request with a fresh token."""

    def __init__(
        self,
        service: Xrpc,
        handle: str,
        password: str,
        *,
        state: PluginState | None,
        legacy_path: Path | None = None,
    ) -> None:
        """`state` None keeps the session in memory only (`persist_session = false`)."""
        self._service = service
        self._handle = handle.strip().removeprefix("@")
        self._password = password
        self._state = state
        self._legacy = legacy_path
        self._session: Session | None = None
        self._lock = asyncio.Lock()
        self._login_refused_at: float | None = None
        self._login_wait_until = 0.0  # monotonic; set by a 429 on createSession
        self.logins = 0
        self.refreshes = 0

    @property
    def configured(self) -> bool:
        return bool(self._handle and self._password)

    async def did(self) -> str:
        return (await self._current()).did

    async def handle(self) -> str:
        return (await self._current()).handle or self._handle

    async def call(self, request: Callable[[str], Awaitable[T]]) -> T:
        """Run `request(access_token)`; on an expired token refresh once and run it again."""
        session = await self._current()
        try:
            return await request(session.access_jwt)
        except XrpcError as err:
            if err.error not in ("ExpiredToken", "InvalidToken"):
                raise
        session = await self._renew(session)
        return await request(session.access_jwt)

    async def _current(self) -> Session:
        if not self.configured:
            raise UserError(
                "Bluesky posting and search need an account: set [bluesky] handle and "
                "app_password (STARLING_BLUESKY__HANDLE, STARLING_BLUESKY__APP_PASSWORD)"
            )
        async with self._lock:
            if self._session is None:
                self._session = await self._load()
            if self._session is None:
                self._session = await self._login()
            expiry = jwt_expiry(self._session.access_jwt)
            if expiry is not None and expiry - time.time() < REFRESH_MARGIN_S:
                self._session = await self._refresh_or_login(self._session)
            return self._session

    async def _renew(self, stale: Session) -> Session:
        async with self._lock:
            if self._session is not None and self._session.access_jwt != stale.access_jwt:
                return self._session  # another call renewed it meanwhile
            self._session = await self._refresh_or_login(stale)
            return self._session

    async def _refresh_or_login(self, session: Session) -> Session:
        try:
            fresh = await self._service.procedure(
                "com.atproto.server.refreshSession", None, Session, token=session.refresh_jwt
            )
        except XrpcError as err:
            if err.outcome is not Outcome.AUTH:
                raise
            log.info("Bluesky refresh token refused (%s); logging in again", err.error)
            return await self._login()
        self.refreshes += 1
        await self._save(fresh)
        return fresh

    async def _login(self) -> Session:
        now = time.monotonic()
        if self._login_refused_at is not None and now - self._login_refused_at < LOGIN_COOLDOWN_S:
            raise UpstreamError(
                Outcome.AUTH, "Bluesky refused the configured handle and app password"
            )
        if now < self._login_wait_until:
            wait = self._login_wait_until - now
            raise UpstreamError(
                Outcome.RATE_LIMITED,
                f"Bluesky limits logins; Starling tries again in {wait:.0f} s",
                retry_after_s=wait,
            )
        try:
            session = await self._service.procedure(
                "com.atproto.server.createSession",
                {"identifier": self._handle, "password": self._password},
                Session,
            )
        except XrpcError as err:
            if err.outcome is Outcome.AUTH or err.error == "AuthFactorTokenRequired":
                self._login_refused_at = now
                raise UpstreamError(
                    Outcome.AUTH,
                    "Bluesky refused the configured handle and app password; check "
                    "[bluesky] handle and app_password",
                    status=err.status,
                ) from None
            if err.outcome is Outcome.RATE_LIMITED:
                # 30 logins per 5 minutes: asking again before the reset only burns more.
                self._login_wait_until = now + (err.retry_after_s or LOGIN_COOLDOWN_S)
            raise
        self.logins += 1
        self._login_refused_at = None
        await self._save(session)
        return session

    async def _load(self) -> Session | None:
        if self._state is None:
            return None
        text = await self._state.get(STATE_KEY)
        if text is None:
            text = await self._import_legacy()
        if not text:
            return None
        try:
            saved = json.loads(text)
            if saved.get("service") != self._service.base_url or saved.get("login") != self._handle:
                return None
            return msgspec.convert(saved["session"], Session)
        except (ValueError, KeyError, AttributeError, msgspec.ValidationError):
            return None

    async def _import_legacy(self) -> str:
        """The old session file's text, moved into the state. The file is removed: it holds
        tokens, and the database now keeps them."""
        if self._state is None or self._legacy is None or not self._legacy.is_file():
            return ""
        try:
            text = self._legacy.read_text(encoding="utf-8")
        except OSError as err:
            log.warning("could not read the old Bluesky session file: %s", err)
            return ""
        await self._state.put(STATE_KEY, text)
        try:
            self._legacy.unlink()
        except OSError as err:
            log.warning("imported the old Bluesky session file but could not remove it: %s", err)
        return text

    async def _save(self, session: Session) -> None:
        if self._state is None:
            return
        data = {
            "service": self._service.base_url,
            "login": self._handle,
            "session": msgspec.to_builtins(session),
        }
        try:
            await self._state.put(STATE_KEY, json.dumps(data))
        except Exception as err:  # a session not kept only costs a login after a restart
            log.warning("could not keep the Bluesky session in the database: %s", err)
