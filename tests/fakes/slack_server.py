"""A local Slack on a random loopback port, for the real slack-bolt and slack-sdk to talk to.

It speaks Slack's wire format: the Web API methods Starling calls (answers shaped
after the examples in Slack's OpenAPI description, `tests/fixtures/slack/`),
Socket Mode (`apps.connections.open`, then a websocket that says `hello`, sends
`slash_commands` envelopes and expects `{"envelope_id": …}` acks within 3 s),
`response_url` posts, signed HTTP requests to an app, HTTP 429 with
`Retry-After`, and `{"ok": false, "error": …}` answers. Every error it gives is
checked against the errors Slack documents for that method.

It also reads posted messages the way Slack does, and records every live mention
(`<!channel>`, `<@U…>`, …) in `pings`, so tests can prove nothing pinged anyone.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import re
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slack"
SPEC: dict[str, Any] = json.loads((FIXTURES / "web_api_examples.json").read_text())["methods"]
# Errors Slack documents on today's method pages that the 2021 description predates.
NEWER_ERRORS: dict[str, set[str]] = {
    "chat.postMessage": {
        "ratelimited",
        "invalid_blocks",
        "token_revoked",
        "missing_scope",
        "invalid_metadata_format",
        "not_allowed_token_type",
    },
    "chat.update": {"ratelimited", "invalid_blocks", "is_archived", "not_allowed_token_type"},
    "chat.delete": {"ratelimited", "not_allowed_token_type"},
    "chat.postEphemeral": {"ratelimited", "not_allowed_token_type"},
    "conversations.history": {"ratelimited", "not_in_channel", "token_revoked"},
    "auth.test": {"ratelimited", "not_allowed_token_type"},
    "apps.connections.open": {
        "ratelimited",
        "invalid_auth",
        "not_authed",
        "not_allowed_token_type",
        "token_revoked",
    },
}

BOT_TOKEN = "xoxb-0000-fake-bot-token"
APP_TOKEN = "xapp-1-A0STARLING-fake-app-token"
SIGNING_SECRET = "fake-signing-secret-0123456789abcdef"
TEAM_ID = "T0STARLING"
BOT_USER_ID = "U0STARBOT"
BOT_ID = "B0STARBOT"
APP_ID = "A0STARLING"
MEMBER = "U0MEMBER01"

_LIVE_MENTION = re.compile(
    r"<(?:!(?:channel|here|everyone)|@[UW][A-Z0-9]+|#C[A-Z0-9]+|!subteam\^[A-Z0-9]+)(?:\|[^<>]*)?>"
)
_BARE_BROADCAST = re.compile(r"(?<![\w])@(?:channel|here|everyone)\b")
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_]{1,255}$")


def documented(method: str, error: str) -> bool:
    known = set(SPEC.get(method, {}).get("errors", [])) | NEWER_ERRORS.get(method, set())
    return error in known


@dataclass(slots=True)
class FakeChannel:
    id: str
    name: str
    private: bool = False
    archived: bool = False
    bot_member: bool = True
    messages: list[dict[str, Any]] = field(default_factory=list)

    def bot_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("bot_id") == BOT_ID]


@dataclass(slots=True)
class CommandResult:
    envelope_id: str
    ack: dict[str, Any]
    ack_after_s: float
    response_id: str


def sign(secret: str, timestamp: str, body: str) -> str:
    """Slack's v0 request signature: HMAC-SHA256 over `v0:<timestamp>:<body>`."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class FakeSlack:
    """Slack's Web API, Socket Mode and response URLs, in memory on 127.0.0.1."""

    def __init__(
        self,
        *,
        bot_token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
        signing_secret: str = SIGNING_SECRET,
        team_id: str = TEAM_ID,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.channels: dict[str, FakeChannel] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.responses: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.pings: list[str] = []
        self.bad_image_urls: set[str] = set()
        self.revoked = False
        self.socket_connections = 0
        self.response_url_status = 200
        self._rate_limits: dict[str, deque[float]] = {}
        self._failures: dict[str, deque[tuple[str, int]]] = {}
        self._lost_answers: Counter[str] = Counter()
        self._delays: dict[str, float] = {}
        self._tickets: set[str] = set()
        self._ws: web.WebSocketResponse | None = None
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._last_ts = 0.0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link/", self._socket)
        app.router.add_post("/commands/{id}", self._response_url)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def plugin_config(self, **overrides: Any) -> dict[str, Any]:
        """A `[slack]` table pointing Starling at this fake."""
        config: dict[str, Any] = {
            "bot_token": self.bot_token,
            "app_token": self.app_token,
            "signing_secret": self.signing_secret,
            "api_url": self.api_url,
            "min_interval_s": 0,
        }
        config.update(overrides)
        return config

    # --- test controls ------------------------------------------------------------

    def add_channel(
        self, name: str, *, private: bool = False, member: bool = True, id: str = ""
    ) -> FakeChannel:
        channel_id = id or f"{'G' if private else 'C'}0{name.upper().replace('-', '')[:8]}"
        channel = FakeChannel(channel_id, name, private=private, bot_member=member)
        self.channels[channel_id] = channel
        return channel

    def delete_channel(self, channel_id: str) -> None:
        del self.channels[channel_id]

    def rate_limit(self, method: str, times: int = 1, *, retry_after: float = 1) -> None:
        """The next `times` calls of `method` get HTTP 429 with this Retry-After."""
        self._rate_limits.setdefault(method, deque()).extend([retry_after] * times)

    def fail(self, method: str, error: str, *, times: int = 1, status: int = 200) -> None:
        """The next `times` calls of `method` fail with `error` (or a bare HTTP `status`)."""
        self._failures.setdefault(method, deque()).extend([(error, status)] * times)

    def lose_answer(self, method: str, times: int = 1) -> None:
        """Do the next `times` calls, then answer 502: the caller cannot know it worked."""
        self._lost_answers[method] += times

    def delay(self, method: str, seconds: float) -> None:
        """Answer `method` only after `seconds` (0 to stop delaying)."""
        self._delays[method] = seconds

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    def call_counts(self) -> Counter[str]:
        return Counter(name for name, _ in self.calls)

    async def wait_until(self, check: Callable[[], bool], *, within_s: float = 10.0) -> None:
        """Wait until `check()` holds after some request; fail the test if it never does."""
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(check)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- Slack's side of a slash command --------------------------------------------

    def command_payload(
        self,
        text: str,
        *,
        channel: FakeChannel,
        user: str = MEMBER,
        command: str = "/starling",
        team_id: str = "",
    ) -> dict[str, str]:
        """What Slack sends for a slash command (Socket Mode `payload`, or the HTTP form)."""
        response_id = uuid.uuid4().hex
        return {
            "token": "legacy-verification-token",
            "team_id": team_id or self.team_id,
            "team_domain": "starling-test",
            "channel_id": channel.id,
            "channel_name": channel.name,
            "user_id": user,
            "user_name": "member",
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": f"{self.base_url}/commands/{response_id}",
            "trigger_id": f"{next(self._ids)}.{int(time.time())}.fake",
        }

    async def wait_socket(self, *, within_s: float = 10.0) -> None:
        await self.wait_until(
            lambda: self._ws is not None and not self._ws.closed, within_s=within_s
        )

    async def slash_command(
        self,
        text: str,
        *,
        channel: FakeChannel,
        user: str = MEMBER,
        command: str = "/starling",
        team_id: str = "",
        ack_within_s: float = 3.0,
    ) -> CommandResult:
        """Send a `slash_commands` envelope over Socket Mode; fail unless acked within 3 s."""
        await self.wait_socket()
        assert self._ws is not None
        payload = self.command_payload(
            text, channel=channel, user=user, command=command, team_id=team_id
        )
        envelope_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = future
        envelope = {
            "envelope_id": envelope_id,
            "type": "slash_commands",
            "payload": payload,
            "accepts_response_payload": True,
        }
        started = time.monotonic()
        await self._ws.send_str(json.dumps(envelope))
        try:
            ack = await asyncio.wait_for(future, ack_within_s)
        except TimeoutError:
            raise AssertionError(f"no ack for {command} {text!r} within {ack_within_s} s") from None
        finally:
            self._acks.pop(envelope_id, None)
        response_id = payload["response_url"].rsplit("/", 1)[1]
        return CommandResult(envelope_id, ack, time.monotonic() - started, response_id)

    async def http_command(
        self,
        endpoint: str,
        text: str,
        *,
        channel: FakeChannel,
        secret: str | None = None,
        timestamp: int | None = None,
        command: str = "/starling",
    ) -> tuple[int, str, str]:
        """POST a slash command to an app's Request URL, signed as Slack signs it.

        Returns (HTTP status, body, response id).
        """
        payload = self.command_payload(text, channel=channel, command=command)
        body = urlencode(payload)
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sign(secret or self.signing_secret, stamp, body),
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(endpoint, data=body.encode(), headers=headers) as resp,
        ):
            answer = await resp.text()
            return resp.status, answer, payload["response_url"].rsplit("/", 1)[1]

    def responses_for(self, response_id: str) -> list[dict[str, Any]]:
        return [r for r in self.responses if r["response_id"] == response_id]

    async def wait_response(self, response_id: str, *, within_s: float = 10.0) -> dict[str, Any]:
        await self.wait_until(lambda: bool(self.responses_for(response_id)), within_s=within_s)
        return self.responses_for(response_id)[0]

    async def disconnect_socket(self, reason: str = "refresh_requested") -> None:
        """Ask the app to reconnect, as Slack does every few hours."""
        assert self._ws is not None
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-applink"}}
        await self._ws.send_str(json.dumps(message))

    # --- websocket ------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        self.socket_connections += 1
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {
                "host": "fake-applink",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": APP_ID},
        }
        await ws.send_str(json.dumps(hello))
        await self._notify()
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                data = json.loads(message.data)
            except ValueError:
                continue
            future = self._acks.get(str(data.get("envelope_id")))
            if future is not None and not future.done():
                future.set_result(data)
        if self._ws is ws:
            self._ws = None
        await self._notify()
        return ws

    async def _response_url(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if self.response_url_status != 200:
            return web.Response(status=self.response_url_status, text="expired_url")
        self._scan(body.get("text", ""), verbatim=False, where="response_url")
        self.responses.append({"response_id": request.match_info["id"], **body})
        await self._notify()
        return web.Response(text="ok")

    # --- Web API --------------------------------------------------------------------

    def _next_ts(self) -> str:
        now = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        token = token or str(args.pop("token", ""))
        self.calls.append((method, args))
        try:
            if self._delays.get(method):
                await asyncio.sleep(self._delays[method])
            answer = await self._dispatch(method, token, args)
            if self._lost_answers[method] > 0:
                self._lost_answers[method] -= 1
                return web.Response(
                    status=502, text="<html>Bad Gateway</html>", content_type="text/html"
                )
            return answer
        finally:
            await self._notify()

    def _error(self, method: str, error: str, **extra: Any) -> web.Response:
        assert documented(method, error), f"Slack does not document {error!r} for {method}"
        return web.json_response({"ok": False, "error": error, **extra})

    async def _dispatch(self, method: str, token: str, args: dict[str, Any]) -> web.StreamResponse:
        limits = self._rate_limits.get(method)
        if limits:
            wait = limits.popleft()
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": f"{wait:g}"},
            )
        failures = self._failures.get(method)
        if failures:
            error, status = failures.popleft()
            if status != 200:
                return web.Response(
                    status=status, text=f"<html>{error}</html>", content_type="text/html"
                )
            return self._error(method, error)
        handler = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "conversations.history": self._history,
        }.get(method)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        wants_app_token = method == "apps.connections.open"
        if not token:
            return self._error(method, "not_authed")
        if (
            token in (self.app_token, self.bot_token)
            and (token == self.app_token) != wants_app_token
        ):
            return self._error(method, "not_allowed_token_type")
        if token not in (self.app_token, self.bot_token):
            return self._error(method, "invalid_auth")
        if self.revoked and token == self.bot_token:
            return self._error(method, "token_revoked")
        return handler(method, args)

    def _auth_test(self, method: str, args: dict[str, Any]) -> web.Response:
        body = dict(SPEC["auth.test"]["success_example"])
        body.update(
            url="https://starling-test.slack.com/",
            team="Starling Test",
            user="starling",
            team_id=self.team_id,
            user_id=BOT_USER_ID,
            bot_id=BOT_ID,
            is_enterprise_install=False,
        )
        return web.json_response(body)

    def _connections_open(self, method: str, args: dict[str, Any]) -> web.Response:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        url = f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={APP_ID}"
        return web.json_response({"ok": True, "url": url})

    def _channel_for_write(self, method: str, args: dict[str, Any]) -> FakeChannel | web.Response:
        channel = self.channels.get(str(args.get("channel", "")))
        if channel is None or (channel.private and not channel.bot_member):
            return self._error(method, "channel_not_found")
        if channel.archived:
            return self._error(method, "is_archived")
        if not channel.bot_member and method == "chat.postMessage":
            return self._error(method, "not_in_channel")
        return channel

    def _post_message(self, method: str, args: dict[str, Any]) -> web.Response:
        channel = self._channel_for_write(method, args)
        if isinstance(channel, web.Response):
            return channel
        blocks = _json_arg(args.get("blocks"))
        text = str(args.get("text") or "")
        if not text and not blocks:
            return self._error(method, "no_text")
        problems = self._block_problems(blocks)
        if problems:
            return self._error(method, "invalid_blocks", errors=problems)
        metadata = _json_arg(args.get("metadata"))
        if metadata is not None and (
            not isinstance(metadata, dict)
            or not _EVENT_TYPE.match(str(metadata.get("event_type", "")))
            or not isinstance(metadata.get("event_payload"), dict)
        ):
            return self._error(method, "invalid_metadata_format")
        verbose = str(args.get("parse", "none")) == "full" or _truthy(args.get("link_names"))
        self._scan(text, verbatim=not verbose, where="text")
        self._scan_blocks(blocks or [])
        ts = self._next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": text,
            "ts": ts,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "user": BOT_USER_ID,
            "team": self.team_id,
        }
        if blocks:
            message["blocks"] = blocks
        if metadata is not None:
            message["metadata"] = metadata
        message["_args"] = {
            k: args[k] for k in ("unfurl_links", "unfurl_media", "parse") if k in args
        }
        channel.messages.append(message)
        shown = {k: v for k, v in message.items() if not k.startswith("_") and k != "metadata"}
        return web.json_response({"ok": True, "channel": channel.id, "ts": ts, "message": shown})

    def _find_message(
        self, method: str, args: dict[str, Any]
    ) -> tuple[FakeChannel, dict[str, Any]] | web.Response:
        channel = self._channel_for_write(method, args)
        if isinstance(channel, web.Response):
            return channel
        ts = str(args.get("ts", ""))
        for message in channel.messages:
            if message["ts"] == ts:
                if message.get("bot_id") != BOT_ID:
                    error = (
                        "cant_update_message" if method == "chat.update" else "cant_delete_message"
                    )
                    return self._error(method, error)
                return channel, message
        return self._error(method, "message_not_found")

    def _update(self, method: str, args: dict[str, Any]) -> web.Response:
        found = self._find_message(method, args)
        if isinstance(found, web.Response):
            return found
        channel, message = found
        blocks = _json_arg(args.get("blocks"))
        problems = self._block_problems(blocks)
        if problems:
            return self._error(method, "invalid_blocks", errors=problems)
        text = str(args.get("text") or "")
        self._scan(text, verbatim=True, where="text")
        self._scan_blocks(blocks or [])
        message["text"] = text
        if blocks is not None:
            if blocks:
                message["blocks"] = blocks
            else:
                message.pop("blocks", None)
        message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        return web.json_response(
            {
                "ok": True,
                "channel": channel.id,
                "ts": message["ts"],
                "text": text,
                "message": {"text": text},
            }
        )

    def _delete(self, method: str, args: dict[str, Any]) -> web.Response:
        found = self._find_message(method, args)
        if isinstance(found, web.Response):
            return found
        channel, message = found
        channel.messages.remove(message)
        return web.json_response({"ok": True, "channel": channel.id, "ts": message["ts"]})

    def _post_ephemeral(self, method: str, args: dict[str, Any]) -> web.Response:
        channel = self.channels.get(str(args.get("channel", "")))
        if channel is None:
            return self._error(method, "channel_not_found")
        text = str(args.get("text") or "")
        self._scan(text, verbatim=True, where="ephemeral")
        ts = self._next_ts()
        self.ephemerals.append(
            {"channel": channel.id, "user": args.get("user"), "text": text, "ts": ts}
        )
        return web.json_response({"ok": True, "message_ts": ts})

    def _history(self, method: str, args: dict[str, Any]) -> web.Response:
        channel = self.channels.get(str(args.get("channel", "")))
        if channel is None or (channel.private and not channel.bot_member):
            return self._error(method, "channel_not_found")
        if not channel.bot_member:
            return self._error(method, "not_in_channel")
        limit = max(1, min(int(args.get("limit") or 100), 999))
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or "inf")
        cursor = str(args.get("cursor") or "")
        if cursor:
            latest = min(latest, float(base64.b64decode(cursor).decode().removeprefix("next_ts:")))
        window = [
            m for m in reversed(channel.messages) if oldest < float(m["ts"]) < latest
        ]  # newest first, as Slack returns them
        page, rest = window[:limit], window[limit:]
        with_metadata = _truthy(args.get("include_all_metadata"))
        shown = [
            {
                k: v
                for k, v in m.items()
                if not k.startswith("_") and (with_metadata or k != "metadata")
            }
            for m in page
        ]
        body: dict[str, Any] = {
            "ok": True,
            "messages": shown,
            "has_more": bool(rest),
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
        }
        if rest:
            next_cursor = base64.b64encode(f"next_ts:{page[-1]['ts']}".encode()).decode()
            body["response_metadata"] = {"next_cursor": next_cursor}
        return web.json_response(body)

    # --- what Slack would make of a message --------------------------------------------

    def _scan(self, text: str, *, verbatim: bool, where: str) -> None:
        self.pings += [f"{where}: {m}" for m in _LIVE_MENTION.findall(text)]
        if not verbatim:
            self.pings += [f"{where}: {m}" for m in _BARE_BROADCAST.findall(text)]

    def _scan_blocks(self, node: Any, where: str = "blocks") -> None:
        if isinstance(node, list):
            for index, child in enumerate(node):
                self._scan_blocks(child, f"{where}/{index}")
        elif isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                self._scan(
                    str(node.get("text", "")), verbatim=bool(node.get("verbatim")), where=where
                )
            for key, child in node.items():
                self._scan_blocks(child, f"{where}/{key}")

    def _block_problems(self, blocks: Any) -> list[str]:
        """The Block Kit rules Slack enforces that a relayed post could break."""
        if blocks is None:
            return []
        if not isinstance(blocks, list) or len(blocks) > 50:
            return ["must be an array of at most 50 blocks [json-pointer:/blocks]"]
        problems: list[str] = []
        action_ids: set[str] = set()
        for i, block in enumerate(blocks):
            at = f"[json-pointer:/blocks/{i}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "section":
                problems += _text_problems(block.get("text"), 3000, f"{at}/text")
            elif kind == "context":
                elements = block.get("elements") or []
                if not 1 <= len(elements) <= 10:
                    problems.append(f"must have 1 to 10 elements {at}/elements]")
                for j, element in enumerate(elements):
                    if element.get("type") == "image":
                        problems += self._image_problems(element, f"{at}/elements/{j}")
                    else:
                        problems += _text_problems(element, 3000, f"{at}/elements/{j}")
            elif kind == "image":
                problems += self._image_problems(block, at)
            elif kind == "actions":
                for j, element in enumerate(block.get("elements") or []):
                    where = f"{at}/elements/{j}"
                    if element.get("type") != "button":
                        problems.append(f"unsupported element {where}]")
                        continue
                    problems += _text_problems(element.get("text"), 75, f"{where}/text", plain=True)
                    url = str(element.get("url", ""))
                    if len(url) > 3000 or not url.startswith(("http://", "https://")):
                        problems.append(f"invalid url {where}/url]")
                    action_id = str(element.get("action_id", ""))
                    if action_id in action_ids or len(action_id) > 255:
                        problems.append(f"action_id must be unique {where}/action_id]")
                    action_ids.add(action_id)
            elif kind not in ("divider", "header"):
                problems.append(f"unsupported type {kind!r} {at}/type]")
        return problems

    def _image_problems(self, element: dict[str, Any], at: str) -> list[str]:
        url = str(element.get("image_url", ""))
        alt = str(element.get("alt_text", ""))
        problems = []
        if not url.startswith(("http://", "https://")) or len(url) > 3000:
            problems.append(f"invalid image_url {at}/image_url]")
        elif url in self.bad_image_urls:
            problems.append(f"downloading image failed {at}/image_url]")
        if not alt.strip() or len(alt) > 2000:
            problems.append(f"alt_text must be 1 to 2000 characters {at}/alt_text]")
        return problems


def _text_problems(obj: Any, limit: int, at: str, *, plain: bool = False) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in ("mrkdwn", "plain_text"):
        return [f"must be a text object {at}]"]
    if plain and obj["type"] != "plain_text":
        return [f"must be plain_text {at}/type]"]
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        return [f"must not be empty {at}/text]"]
    if len(text) > limit:
        return [f"must be less than {limit + 1} characters {at}/text]"]
    if obj["type"] == "mrkdwn" and "emoji" in obj:
        return [f"emoji is not allowed in mrkdwn {at}/emoji]"]
    if obj["type"] == "plain_text" and "verbatim" in obj:
        return [f"verbatim is not allowed in plain_text {at}/verbatim]"]
    return []


def _json_arg(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


async def running_fake_slack(**options: Any) -> AsyncIterator[FakeSlack]:
    """For fixtures: a started FakeSlack, stopped afterwards."""
    server = FakeSlack(**options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
