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
import math
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
    # Not in the 2021 description at all: its errors from the OpenAPI spec, and today's.
    "conversations.replies": {
        "channel_not_found",
        "thread_not_found",
        "missing_scope",
        "not_authed",
        "invalid_auth",
        "ratelimited",
        "not_in_channel",
        "token_revoked",
    },
    "auth.test": {"ratelimited", "not_allowed_token_type"},
    # Not in the 2021 description: the errors its method page documents today.
    "usergroups.users.list": {"no_such_subteam", "missing_scope", "invalid_auth", "not_authed"},
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
        enforce_limits: bool = False,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.channels: dict[str, FakeChannel] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.responses: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.views: list[dict[str, Any]] = []  # modals open, as each member sees them
        self._triggers: dict[str, float] = {}  # trigger_id → when issued (3 s, single use)
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
        self._oauth_state: FakeOAuth | None = None
        # Slack's standing limits, enforced on their own (off unless asked: most tests
        # post with no pacing at all): see `SlackLimits`.
        self.limits = SlackLimits() if enforce_limits else None
        # User groups (S… id → member ids) for `usergroups.users.list`; scopes the app lacks.
        self.usergroups: dict[str, list[str]] = {}
        self.missing_scopes: set[str] = set()

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
        app.router.add_get("/oauth/v2/authorize", self._oauth_authorize)
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

    @property
    def oauth(self) -> FakeOAuth:
        """Workspaces that install the app through OAuth, each with its own bot token."""
        state: FakeOAuth | None = getattr(self, "_oauth_state", None)
        if state is None:
            state = FakeOAuth()
            self._oauth_state = state
        return state

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
            "trigger_id": self._trigger(),
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

    # --- Slack's side of a button click (interactivity) ----------------------------

    def click_payload(
        self, channel: FakeChannel, message: dict[str, Any], label: str, *, user: str = MEMBER
    ) -> dict[str, Any]:
        """The `block_actions` payload Slack sends when `user` clicks the button `label`.

        Fails the test when the message shows no such button: a member cannot click it.
        """
        for block in message.get("blocks") or []:
            if block.get("type") != "actions":
                continue
            for element in block.get("elements") or []:
                if element.get("type") == "button" and element["text"]["text"] == label:
                    break
            else:
                continue
            break
        else:
            raise AssertionError(f"no button {label!r} on the message {message.get('ts')}")
        action = {
            "type": "button",
            "action_id": element["action_id"],
            "block_id": block.get("block_id") or uuid.uuid4().hex[:5],
            "text": element["text"],
            "action_ts": f"{time.time():.6f}",
        }
        for key in ("value", "style", "url"):
            if key in element:
                action[key] = element[key]
        shown = {k: v for k, v in message.items() if not k.startswith("_")}
        return {
            "type": "block_actions",
            "user": {"id": user, "username": "member", "name": "member", "team_id": self.team_id},
            "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": channel.id,
                "is_ephemeral": False,
            },
            "trigger_id": self._trigger(),
            "team": {"id": self.team_id, "domain": "starling-test"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel.id, "name": channel.name},
            "message": shown,
            "state": {"values": {}},
            "response_url": f"{self.base_url}/commands/{uuid.uuid4().hex}",
            "actions": [action],
        }

    async def click(
        self,
        channel: FakeChannel,
        message: dict[str, Any],
        label: str,
        *,
        user: str = MEMBER,
        ack_within_s: float = 3.0,
    ) -> CommandResult:
        """Click a button over Socket Mode (an `interactive` envelope); fail unless acked in 3 s."""
        await self.wait_socket()
        assert self._ws is not None
        payload = self.click_payload(channel, message, label, user=user)
        envelope_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = future
        envelope = {
            "envelope_id": envelope_id,
            "type": "interactive",
            "payload": payload,
            "accepts_response_payload": False,
        }
        started = time.monotonic()
        await self._ws.send_str(json.dumps(envelope))
        try:
            ack = await asyncio.wait_for(future, ack_within_s)
        except TimeoutError:
            raise AssertionError(
                f"no ack for a click on {label!r} within {ack_within_s} s"
            ) from None
        finally:
            self._acks.pop(envelope_id, None)
        response_id = payload["response_url"].rsplit("/", 1)[1]
        return CommandResult(envelope_id, ack, time.monotonic() - started, response_id)

    async def http_click(
        self,
        endpoint: str,
        channel: FakeChannel,
        message: dict[str, Any],
        label: str,
        *,
        user: str = MEMBER,
    ) -> tuple[int, str]:
        """POST a click to an app's Request URL as Slack does: a signed `payload=<json>` form.

        Returns (HTTP status, response id).
        """
        payload = self.click_payload(channel, message, label, user=user)
        body = urlencode({"payload": json.dumps(payload)})
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sign(self.signing_secret, stamp, body),
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(endpoint, data=body.encode(), headers=headers) as resp,
        ):
            await resp.read()
            return resp.status, payload["response_url"].rsplit("/", 1)[1]

    # --- shortcuts and modals -------------------------------------------------------

    def _trigger(self) -> str:
        trigger = f"{next(self._ids)}.{int(time.time())}.fake"
        self._triggers[trigger] = time.monotonic()
        return trigger

    async def _interactive(self, payload: dict[str, Any], what: str) -> dict[str, Any]:
        """Send an `interactive` envelope over Socket Mode; the ack, within 3 s."""
        await self.wait_socket()
        assert self._ws is not None
        envelope_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = future
        envelope = {
            "envelope_id": envelope_id,
            "type": "interactive",
            "payload": payload,
            "accepts_response_payload": payload["type"] == "view_submission",
        }
        await self._ws.send_str(json.dumps(envelope))
        try:
            return await asyncio.wait_for(future, 3.0)
        except TimeoutError:
            raise AssertionError(f"no ack for {what} within 3 s") from None
        finally:
            self._acks.pop(envelope_id, None)

    async def message_shortcut(
        self,
        channel: FakeChannel,
        message: dict[str, Any],
        callback_id: str,
        *,
        user: str = MEMBER,
    ) -> str:
        """A member picks a message shortcut on `message`; returns the response id."""
        response_id = uuid.uuid4().hex
        payload = {
            "type": "message_action",
            "token": "legacy-verification-token",
            "action_ts": f"{time.time():.6f}",
            "team": {"id": self.team_id, "domain": "starling-test"},
            "user": {"id": user, "username": "member", "team_id": self.team_id, "name": "member"},
            "channel": {"id": channel.id, "name": channel.name},
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": self._trigger(),
            "response_url": f"{self.base_url}/commands/{response_id}",
            "message_ts": message["ts"],
            "message": {k: v for k, v in message.items() if not k.startswith("_")},
        }
        await self._interactive(payload, f"the shortcut {callback_id}")
        return response_id

    async def submit_view(self, values: dict[str, str], *, user: str = MEMBER) -> dict[str, Any]:
        """Submit the member's open modal with these input values (block id = action id).

        Returns the ack's payload; `response_action: update` replaces the modal, `errors`
        keeps it open, nothing closes it (as Slack does).
        """
        assert self.views, "no modal is open"
        view = self.views[-1]
        state = {
            block["block_id"]: {
                block["element"]["action_id"]: {
                    "type": block["element"]["type"],
                    "value": values.get(block["block_id"]) or None,
                }
            }
            for block in view["blocks"]
            if block["type"] == "input"
        }
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": "starling-test"},
            "user": {"id": user, "username": "member", "team_id": self.team_id, "name": "member"},
            "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "trigger_id": self._trigger(),
            "view": {**view, "state": {"values": state}},
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        ack = await self._interactive(payload, f"submitting {view.get('callback_id')}")
        answer = dict(ack.get("payload") or {})
        action = answer.get("response_action")
        if action == "update":
            self.views[-1] = {**answer["view"], "id": view["id"]}
        elif action != "errors":
            self.views.pop()
        return answer

    def _views_open(self, method: str, args: dict[str, Any]) -> web.Response:
        """`views.open`: a modal for a fresh trigger (3 s, single use), checked like Slack."""
        trigger = str(args.get("trigger_id") or "")
        issued = self._triggers.pop(trigger, None)
        if issued is None:
            return web.json_response({"ok": False, "error": "invalid_trigger_id"})
        if time.monotonic() - issued > 3.0:
            return web.json_response({"ok": False, "error": "expired_trigger_id"})
        view = _json_arg(args.get("view"))
        problems = []
        if not isinstance(view, dict) or view.get("type") != "modal":
            problems.append("view must be a modal")
        else:
            title = (view.get("title") or {}).get("text", "")
            if not 0 < len(title) <= 24:
                problems.append("title must be 1 to 24 characters")
            if len(str(view.get("private_metadata", ""))) > 3000:
                problems.append("private_metadata must be at most 3000 characters")
            if len(view.get("blocks") or []) > 100:
                problems.append("at most 100 blocks")
        if problems:
            return web.json_response(
                {
                    "ok": False,
                    "error": "invalid_arguments",
                    "response_metadata": {"messages": problems},
                }
            )
        opened = {**view, "id": f"V{next(self._ids):08d}", "team_id": self.team_id}
        self.views.append(opened)
        return web.json_response({"ok": True, "view": opened})

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
        if self.limits is not None:
            team = self.oauth.tokens.get(token, self.team_id)
            wait_s = self.limits.check(method, team, str(args.get("channel", "")))
            if wait_s is not None:
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
                )
        failures = self._failures.get(method)
        if failures:
            error, status = failures.popleft()
            if status != 200:
                return web.Response(
                    status=status, text=f"<html>{error}</html>", content_type="text/html"
                )
            return self._error(method, error)
        if method == "oauth.v2.access":  # client id and secret, not a token
            return self._oauth_access(method, token, args)
        handler = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "views.open": self._views_open,
            "usergroups.users.list": self._usergroup_users,
        }.get(method)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        if token in self.oauth.tokens or token in self.oauth.revoked:
            return self._as_workspace(method, token, args, handler)
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

    def _usergroup_users(self, method: str, args: dict[str, Any]) -> web.Response:
        """`usergroups.users.list`: the member ids of one user group (scope usergroups:read)."""
        if "usergroups:read" in self.missing_scopes:
            return self._error(
                method, "missing_scope", needed="usergroups:read", provided="commands,chat:write"
            )
        members = self.usergroups.get(str(args.get("usergroup") or ""))
        if members is None:
            return self._error(method, "no_such_subteam")
        return web.json_response({"ok": True, "users": list(members)})

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
        root = str(args.get("thread_ts") or "")
        if root:
            self._thread_reply(
                channel, message, root, broadcast=_truthy(args.get("reply_broadcast"))
            )
        message["_args"] = {
            k: args[k] for k in ("unfurl_links", "unfurl_media", "parse") if k in args
        }
        channel.messages.append(message)
        shown = {k: v for k, v in message.items() if not k.startswith("_") and k != "metadata"}
        return web.json_response({"ok": True, "channel": channel.id, "ts": ts, "message": shown})

    def _thread_reply(
        self, channel: FakeChannel, message: dict[str, Any], root: str, *, broadcast: bool
    ) -> None:
        """Slack's threads: the reply carries `thread_ts`; its parent the thread's summary
        (`reply_count`, `latest_reply`, …). A reply's own ts as `thread_ts` means its
        parent's thread, as threads are one level deep."""
        parent = next((m for m in channel.messages if m["ts"] == root), None)
        if parent is not None:
            root = str(parent.get("thread_ts") or root)
            parent = next((m for m in channel.messages if m["ts"] == root), parent)
            users = list(parent.get("reply_users") or [])
            if message["user"] not in users:
                users.append(message["user"])
            parent.update(
                thread_ts=root,
                reply_count=int(parent.get("reply_count") or 0) + 1,
                reply_users=users,
                reply_users_count=len(users),
                latest_reply=message["ts"],
            )
            message["parent_user_id"] = parent.get("user")
        message["thread_ts"] = root
        if broadcast:
            message["subtype"] = "thread_broadcast"  # shown in the channel as well

    def thread(self, channel: FakeChannel, root: str) -> list[dict[str, Any]]:
        """The replies in a thread, oldest first, as its thread view shows them."""
        return [m for m in channel.messages if m.get("thread_ts") == root and m["ts"] != root]

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
        root = message.get("thread_ts")
        if root and root != message["ts"]:  # a reply: its thread's summary counts one less
            for parent in channel.messages:
                if parent["ts"] == root and parent.get("reply_count"):
                    parent["reply_count"] -= 1
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
            m
            for m in reversed(channel.messages)
            if oldest < float(m["ts"]) < latest and _in_channel_view(m)
        ]  # newest first, as Slack returns them; thread replies only in their thread
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

    def _replies(self, method: str, args: dict[str, Any]) -> web.Response:
        """A thread: its parent first, then its replies oldest first, paged by cursor."""
        channel = self.channels.get(str(args.get("channel", "")))
        if channel is None or (channel.private and not channel.bot_member):
            return self._error(method, "channel_not_found")
        if not channel.bot_member:
            return self._error(method, "not_in_channel")
        root = str(args.get("ts") or "")
        parent = next((m for m in channel.messages if m["ts"] == root), None)
        if parent is None:
            return self._error(method, "thread_not_found")
        limit = max(1, min(int(args.get("limit") or 100), 1000))
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or "inf")
        cursor = str(args.get("cursor") or "")
        after = float(base64.b64decode(cursor).decode().removeprefix("next_ts:")) if cursor else 0
        thread = [parent] if not cursor and parent.get("thread_ts") in (None, root) else []
        thread += [
            m
            for m in self.thread(channel, root)
            if oldest < float(m["ts"]) < latest and float(m["ts"]) > after
        ]
        page, rest = thread[:limit], thread[limit:]
        with_metadata = _truthy(args.get("include_all_metadata"))
        shown = [
            {
                k: v
                for k, v in m.items()
                if not k.startswith("_") and (with_metadata or k != "metadata")
            }
            for m in page
        ]
        body: dict[str, Any] = {"ok": True, "messages": shown, "has_more": bool(rest)}
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
                    if "url" in element and (
                        len(url) > 3000 or not url.startswith(("http://", "https://"))
                    ):
                        problems.append(f"invalid url {where}/url]")
                    if len(str(element.get("value", ""))) > 2000:
                        problems.append(f"must be less than 2001 characters {where}/value]")
                    if element.get("style", "primary") not in ("primary", "danger"):
                        problems.append(f"invalid style {where}/style]")
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

    # --- multi-workspace OAuth ---------------------------------------------------------

    def add_workspace(self, team_id: str, name: str) -> FakeWorkspace:
        suffix = team_id.removeprefix("T")[:6]
        workspace = FakeWorkspace(team_id, name, f"U0BOT{suffix}", f"B0BOT{suffix}")
        self.oauth.workspaces[team_id] = workspace
        return workspace

    def add_workspace_channel(self, team_id: str, name: str) -> FakeChannel:
        """A channel only the bot token of `team_id` can see."""
        channel = self.add_channel(name, id=f"C{team_id.removeprefix('T')[:4]}{name.upper()[:6]}")
        self.oauth.workspaces[team_id].channels.add(channel.id)
        return channel

    def uninstall(self, team_id: str) -> None:
        """A member removes the app: Slack revokes its tokens in that workspace."""
        for token, team in list(self.oauth.tokens.items()):
            if team == team_id:
                del self.oauth.tokens[token]
                self.oauth.revoked.add(token)

    async def install_in_browser(self, install_url: str, team_id: str) -> tuple[int, str]:
        """What a member's browser does: open the app's install URL, consent on Slack's
        page for `team_id`, follow the redirect back. Cookies are carried by hand, as a
        browser would (the state cookie is `Secure`, which aiohttp keeps off http)."""
        self.oauth.installing = team_id
        async with aiohttp.ClientSession() as browser:
            async with browser.get(install_url, allow_redirects=False) as start:
                if start.status != 302:
                    return start.status, await start.text()
                consent = start.headers["Location"]
                cookies = "; ".join(f"{c.key}={c.value}" for c in start.cookies.values())
            async with browser.get(consent, allow_redirects=False) as slack:
                back = slack.headers["Location"]
            async with browser.get(
                back, headers={"Cookie": cookies}, allow_redirects=False
            ) as done:
                return done.status, await done.text()

    async def send_event(
        self, endpoint: str, team_id: str, event: dict[str, Any], *, secret: str | None = None
    ) -> int:
        """POST a signed Events API `event_callback` to the app's Request URL."""
        body = json.dumps(
            {
                "token": "legacy-verification-token",
                "team_id": team_id,
                "api_app_id": APP_ID,
                "event": {"event_ts": f"{time.time():.6f}", **event},
                "type": "event_callback",
                "event_id": f"Ev{next(self._ids):08d}",
                "event_time": int(time.time()),
            }
        )
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sign(secret or self.signing_secret, stamp, body),
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(endpoint, data=body.encode(), headers=headers) as resp,
        ):
            return resp.status

    async def http_command_in(
        self, endpoint: str, text: str, *, channel: FakeChannel, team_id: str
    ) -> tuple[int, str, str]:
        """A signed HTTP slash command from the workspace `team_id`."""
        payload = self.command_payload(text, channel=channel, team_id=team_id)
        body = urlencode(payload)
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sign(self.signing_secret, stamp, body),
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(endpoint, data=body.encode(), headers=headers) as resp,
        ):
            return resp.status, await resp.text(), payload["response_url"].rsplit("/", 1)[1]

    async def _oauth_authorize(self, request: web.Request) -> web.StreamResponse:
        """Slack's consent page, with the member clicking Allow at once."""
        query = dict(request.query)
        self.oauth.authorize_requests.append(query)
        if query.get("client_id") != self.oauth.client_id:
            return web.Response(status=400, text="invalid_client_id")
        team = query.get("team") or self.oauth.installing
        uri = query.get("redirect_uri") or self.oauth.redirect_url
        if team not in self.oauth.workspaces or not uri:
            return web.Response(status=400, text="no workspace or redirect URL")
        code = uuid.uuid4().hex
        self.oauth.codes[code] = (team, query.get("scope", ""), query.get("redirect_uri", ""))
        back = f"{uri}?{urlencode({'code': code, 'state': query.get('state', '')})}"
        raise web.HTTPFound(back)

    def _oauth_access(self, method: str, auth: str, args: dict[str, Any]) -> web.Response:
        """`oauth.v2.access`: client credentials (HTTP Basic or form) and a one-use code."""
        client_id, client_secret = (
            str(args.get("client_id", "")),
            str(args.get("client_secret", "")),
        )
        if auth.startswith("Basic "):
            client_id, _, client_secret = (
                base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
            )
        if client_id != self.oauth.client_id:
            return web.json_response({"ok": False, "error": "invalid_client_id"})
        if client_secret != self.oauth.client_secret:
            return web.json_response({"ok": False, "error": "bad_client_secret"})
        grant = self.oauth.codes.pop(str(args.get("code", "")), None)
        if grant is None:
            return web.json_response({"ok": False, "error": "invalid_code"})
        team_id, scope, uri = grant
        if uri and str(args.get("redirect_uri", "")) != uri:
            return web.json_response({"ok": False, "error": "bad_redirect_uri"})
        workspace = self.oauth.workspaces[team_id]
        token = f"xoxb-{team_id}-{uuid.uuid4().hex[:12]}"
        self.oauth.tokens[token] = team_id
        return web.json_response(
            {
                "ok": True,
                "access_token": token,
                "token_type": "bot",
                "scope": scope,
                "bot_user_id": workspace.bot_user_id,
                "app_id": APP_ID,
                "team": {"name": workspace.name, "id": team_id},
                "enterprise": None,
                "is_enterprise_install": False,
                "authed_user": {"id": MEMBER},
            }
        )

    def _as_workspace(
        self,
        method: str,
        token: str,
        args: dict[str, Any],
        handler: Callable[[str, dict[str, Any]], web.Response],
    ) -> web.Response:
        """A call with an OAuth-issued token: only its own workspace's channels exist."""
        if token in self.oauth.revoked:
            return self._error(method, "token_revoked")
        workspace = self.oauth.workspaces[self.oauth.tokens[token]]
        channel = str(args.get("channel", ""))
        self.oauth.token_calls.append((method, workspace.team_id, channel))
        if method == "auth.test":
            body = dict(SPEC["auth.test"]["success_example"])
            body.update(
                url=f"https://{workspace.team_id.lower()}.slack.com/",
                team=workspace.name,
                user="starling",
                team_id=workspace.team_id,
                user_id=workspace.bot_user_id,
                bot_id=workspace.bot_id,
                is_enterprise_install=False,
            )
            return web.json_response(body)
        if method == "apps.connections.open":
            return self._error(method, "not_allowed_token_type")
        if channel and channel not in workspace.channels:
            return self._error(method, "channel_not_found")
        return handler(method, args)


# Web API rate-limit tiers (calls per minute, per method, per workspace), from Slack's
# method pages; chat.postMessage is "special": about one per second per channel.
TIERS_PER_MIN = {1: 1, 2: 20, 3: 50, 4: 100}
METHOD_TIERS = {
    "apps.connections.open": 1,
    "auth.test": 4,
    "chat.update": 3,
    "chat.delete": 3,
    "chat.postEphemeral": 4,
    "conversations.history": 3,
    "conversations.replies": 3,
    "oauth.v2.access": 4,
}


@dataclass(slots=True)
class SlackLimits:
    """Slack's limits as a fake can hold them: each tiered method's calls per workspace
    in any 60 s, and chat.postMessage per channel as a bucket refilling one message per
    second that holds `post_burst` ("short bursts are allowed"). The workspace-wide cap
    on posting ("several hundred per minute") has no published number: None by default.
    """

    post_per_s: float = 1.0
    post_burst: float = 2.0
    post_per_workspace_per_min: int | None = None
    calls: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # channel → tokens, at
    rate_limited: Counter[str] = field(default_factory=Counter)  # method → 429s given

    def check(self, method: str, team: str, channel: str) -> float | None:
        """Seconds to wait when this call is over a limit (and count it), else None."""
        now = time.monotonic()
        wait = self._per_minute(method, team, now)
        if wait is None and method == "chat.postMessage" and channel:
            tokens, at = self.buckets.get(channel, (self.post_burst, now))
            tokens = min(self.post_burst, tokens + (now - at) * self.post_per_s)
            if tokens < 1.0:
                wait = (1.0 - tokens) / self.post_per_s
            else:
                self.buckets[channel] = (tokens - 1.0, now)
        if wait is not None:
            self.rate_limited[method] += 1
        return wait

    def _per_minute(self, method: str, team: str, now: float) -> float | None:
        if method == "chat.postMessage":
            limit = self.post_per_workspace_per_min
        else:
            limit = TIERS_PER_MIN.get(METHOD_TIERS.get(method, 0))
        if limit is None:
            return None
        window = self.calls.setdefault((team, method), deque())
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= limit:
            return 60.0 - (now - window[0])
        window.append(now)
        return None


@dataclass(slots=True)
class FakeWorkspace:
    """A workspace that can install the app (multi-workspace OAuth)."""

    team_id: str
    name: str
    bot_user_id: str
    bot_id: str
    channels: set[str] = field(default_factory=set)


@dataclass(slots=True)
class FakeOAuth:
    """OAuth state of the fake: the app's credentials, codes handed out, tokens issued."""

    client_id: str = "1111.2222"
    client_secret: str = "fake-client-secret"
    redirect_url: str = ""  # what the app registered under OAuth & Permissions
    installing: str = ""  # the workspace the browser's member picks on the consent page
    workspaces: dict[str, FakeWorkspace] = field(default_factory=dict)
    codes: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # code → team, scope, uri
    tokens: dict[str, str] = field(default_factory=dict)  # bot token → team
    revoked: set[str] = field(default_factory=set)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_calls: list[tuple[str, str, str]] = field(default_factory=list)  # method, team, channel

    def token_of(self, team_id: str) -> str:
        return next((t for t, team in self.tokens.items() if team == team_id), "")


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


def _in_channel_view(message: dict[str, Any]) -> bool:
    """What `conversations.history` lists: no thread replies, except broadcast ones."""
    root = message.get("thread_ts")
    return root in (None, message["ts"]) or message.get("subtype") == "thread_broadcast"


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
