"""XRPC over httpx: one call, one health record, one classified outcome.

AT Protocol services speak XRPC: `GET /xrpc/<nsid>?…` for queries and
`POST /xrpc/<nsid>` with a JSON body for procedures. Errors come back as
`{"error": "Name", "message": "…"}`; rate limits as 429 with `ratelimit-reset`
(epoch seconds). Everything here turns those into `UpstreamError`s whose outcome
the health record can count, and whose message is safe to show in chat.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec

from bot.errors import Outcome, UpstreamError
from bot.protocols import HealthRecorder

T = TypeVar("T")

MAX_BODY_BYTES = 5_000_000
MAX_WAIT_S = 24 * 3600.0
AUTH_ERRORS = frozenset(
    {"ExpiredToken", "InvalidToken", "AuthMissing", "AuthRequired", "AuthenticationRequired"}
)
Params = Mapping[str, str | int | list[str]]


class XrpcFailure(msgspec.Struct):
    error: str = ""
    message: str = ""


class XrpcError(UpstreamError):
    """An `UpstreamError` that also keeps the XRPC error name (`ExpiredToken`, …)."""


def host_of(base_url: str) -> str:
    parts = urlsplit(base_url)
    return parts.netloc or base_url


def retry_after(headers: httpx.Headers, now: float) -> float | None:
    """Seconds to wait, from `ratelimit-reset` (epoch seconds) or `Retry-After`."""
    reset = headers.get("ratelimit-reset")
    if reset and reset.strip().isdigit():
        return max(0.0, min(float(reset) - now, MAX_WAIT_S))
    after = headers.get("retry-after")
    if after and after.strip().isdigit():
        return min(float(after), MAX_WAIT_S)
    return None


def classify(status: int, error: str) -> Outcome:
    if error == "RateLimitExceeded":
        return Outcome.RATE_LIMITED
    if error in AUTH_ERRORS:
        return Outcome.AUTH
    return Outcome.for_status(status, auth=(401,))


class Xrpc:
    """Calls one XRPC service (a PDS, an AppView); reports each request to `health`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        *,
        network: str,
        health: HealthRecorder,
    ) -> None:
        self._client = client
        self.base_url = base_url.rstrip("/")
        self.host = host_of(self.base_url)
        self._network = network
        self._health = health

    async def query(
        self, nsid: str, params: Params, into: type[T], *, token: str | None = None
    ) -> T:
        return await self._call("GET", nsid, into, params=params, token=token)

    async def procedure(
        self, nsid: str, body: Mapping[str, Any] | None, into: type[T], *, token: str | None = None
    ) -> T:
        return await self._call("POST", nsid, into, body=body, token=token)

    async def upload(
        self, nsid: str, data: bytes, content_type: str, into: type[T], *, token: str
    ) -> T:
        """A procedure whose input is raw bytes (`com.atproto.repo.uploadBlob`)."""
        return await self._call(
            "POST", nsid, into, raw_body=data, content_type=content_type, token=token
        )

    async def _call(
        self,
        method: str,
        nsid: str,
        into: type[T],
        *,
        params: Params | None = None,
        body: Mapping[str, Any] | None = None,
        raw_body: bytes | None = None,
        content_type: str = "",
        token: str | None,
    ) -> T:
        url = f"{self.base_url}/xrpc/{nsid}"
        headers = {"authorization": f"Bearer {token}"} if token else {}
        content = raw_body
        if raw_body is not None:
            headers["content-type"] = content_type
        elif body is not None:
            content = msgspec.json.encode(body)
            headers["content-type"] = "application/json"
        started = time.monotonic()
        try:
            request = self._client.build_request(
                method, url, params=params, content=content, headers=headers
            )
            response = await self._client.send(request, stream=True)
            try:
                raw = await self._read(response, started)
            finally:
                await response.aclose()
        except UpstreamError:
            raise
        except httpx.TimeoutException:
            text = f"{self.host} did not answer in time"
            raise self._fail(Outcome.TIMEOUT, text, started) from None
        except httpx.ConnectError as err:
            outcome, text = _connect_failure(err, self.host)
            raise self._fail(outcome, text, started) from None
        except httpx.HTTPError as err:
            text = f"{self.host} broke off the connection ({type(err).__name__})"
            raise self._fail(Outcome.REFUSED, text, started) from None
        status = response.status_code
        if status >= 400:
            raise self._status_error(nsid, response, raw, started)
        try:
            value = msgspec.json.decode(raw, type=into) if raw else msgspec.convert({}, into)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            text = f"{self.host} sent an answer to {nsid} that could not be read ({err})"
            raise self._fail(Outcome.PARSE, text[:300], started, status=status) from None
        self._health.record(
            self._network,
            self.host,
            Outcome.OK,
            latency_s=time.monotonic() - started,
            status=status,
        )
        return value

    async def _read(self, response: httpx.Response, started: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                text = f"{self.host} sent more than {MAX_BODY_BYTES} bytes"
                raise self._fail(Outcome.TOO_LARGE, text, started, status=response.status_code)
            chunks.append(chunk)
        return b"".join(chunks)

    def _status_error(
        self, nsid: str, response: httpx.Response, raw: bytes, started: float
    ) -> XrpcError:
        status = response.status_code
        try:
            failure = msgspec.json.decode(raw, type=XrpcFailure)
        except (msgspec.DecodeError, msgspec.ValidationError):
            failure = XrpcFailure()
        outcome = classify(status, failure.error)
        wait = (
            retry_after(response.headers, time.time()) if outcome is Outcome.RATE_LIMITED else None
        )
        name = failure.error or f"HTTP {status}"
        # The server's free text is kept short and only for errors members cause.
        detail = failure.message[:200] if failure.message and status < 500 else ""
        text = f"{self.host} refused {nsid}: {name}" + (f" ({detail})" if detail else "")
        return self._fail(
            outcome, text, started, status=status, retry_after_s=wait, error=failure.error
        )

    def _fail(
        self,
        outcome: Outcome,
        text: str,
        started: float,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        error: str = "",
    ) -> XrpcError:
        self._health.record(
            self._network,
            self.host,
            outcome,
            latency_s=time.monotonic() - started,
            status=status,
            detail=text[:200],
        )
        return XrpcError(outcome, text, status=status, retry_after_s=retry_after_s, error=error)


def _connect_failure(err: httpx.ConnectError, host: str) -> tuple[Outcome, str]:
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return Outcome.TLS, f"the TLS handshake with {host} failed"
        text = str(cause).lower()
        if "name or service not known" in text or "getaddrinfo" in text or "nodename" in text:
            return Outcome.DNS, f"{host} could not be found (DNS lookup failed)"
        cause = cause.__cause__ or cause.__context__
    return Outcome.REFUSED, f"{host} refused the connection"
