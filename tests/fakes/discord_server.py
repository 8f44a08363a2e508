"""A local Discord for tests: REST API v10 and the gateway, on a random loopback port.

It speaks Discord's documented wire format so that the real discord.py client runs
against it unchanged: JSON bodies checked against Discord's own OpenAPI schemas
(`tests/fixtures/discord/openapi-subset.json`, MIT), Discord's error bodies and
codes, per-route rate-limit buckets with `X-RateLimit-*` headers, 429s with
`retry_after` (and the `Via` header discord.py looks for), `enforce_nonce`, and a
gateway websocket with HELLO/IDENTIFY/READY/GUILD_CREATE, heartbeats and the
`zlib-stream` transport compression discord.py asks for.

Tests shape the world (guilds, channels, threads, forums), deliver interactions
as Discord would (`invoke`, `autocomplete`) and read what a member would see
(`messages_in`, interaction transcripts). Knobs make Discord misbehave:
`rate_limit_next` (a 429 storm), `delete_channel` (10003), `deny` (50013/50001),
`fail_next` (5xx).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

SPEC_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "discord" / "openapi-subset.json"
DISCORD_EPOCH_MS = 1_420_070_400_000
API_PREFIX = "/api/v10"
TOKEN = "fake-bot-token.for-tests-only"

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
MEMBER = (
    VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | READ_MESSAGE_HISTORY | USE_APPLICATION_COMMANDS
)
MODERATOR = MEMBER | MANAGE_CHANNELS

TEXT, ANNOUNCEMENT, PUBLIC_THREAD, FORUM = 0, 5, 11, 15
EPHEMERAL, LOADING = 1 << 6, 1 << 7
BUCKET = web.RequestKey("bucket", tuple)
FAIL_AFTER = web.RequestKey("fail_after", int)
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME, OP_HELLO, OP_HEARTBEAT_ACK = 0, 1, 2, 6, 10, 11


# --- Discord's OpenAPI schemas --------------------------------------------------------


class Spec:
    """Discord's published schemas for the operations the fake implements."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        self.operations: dict[str, dict[str, Any]] = {
            op["operationId"]: op
            for ops in self.doc["paths"].values()
            for method, op in ops.items()
            if method != "parameters"
        }

    def request_schema(self, operation: str) -> dict[str, Any]:
        body = self.operations[operation]["requestBody"]["content"]["application/json"]
        return dict(body["schema"])

    def response_schema(self, operation: str, status: int) -> dict[str, Any] | None:
        responses = self.operations[operation]["responses"]
        response = responses.get(str(status)) or responses.get(f"{status // 100}XX")
        if response is None:
            return None
        if "$ref" in response:
            response = self.doc["components"]["responses"][response["$ref"].split("/")[-1]]
        content = response.get("content", {}).get("application/json")
        return None if content is None else dict(content["schema"])

    def errors(self, instance: Any, schema: dict[str, Any], where: str = "") -> list[str]:
        """The ways `instance` breaks `schema` (a JSON Schema subset: what the spec uses).

        As the spec's README says, integers may come as int-parseable strings and
        `anyOf`/`oneOf` mean "one of these shapes".
        """
        if "$ref" in schema:
            _, _, kind, name = schema["$ref"].split("/")
            return self.errors(instance, self.doc["components"][kind][name], where)
        if schema.get("format") == "snowflake" and type(instance) is int:
            instance = str(instance)  # Discord takes snowflakes as integers too (discord.py)
        problems: list[str] = []
        for part in schema.get("allOf", []):
            problems += self.errors(instance, part, where)
        for key in ("anyOf", "oneOf"):
            if key in schema and all(self.errors(instance, opt, where) for opt in schema[key]):
                problems.append(f"{where or 'body'}: matches none of the {key} shapes")
        types = schema.get("type")
        if types is not None:
            allowed = types if isinstance(types, list) else [types]
            if not any(_is_type(instance, t) for t in allowed):
                return [*problems, f"{where or 'body'}: expected {types}, got {instance!r:.60}"]
        if "enum" in schema and instance not in schema["enum"]:
            problems.append(f"{where}: {instance!r} not in {schema['enum']}")
        if isinstance(instance, str):
            if "maxLength" in schema and len(instance) > schema["maxLength"]:
                problems.append(f"{where}: longer than {schema['maxLength']}")
            if "minLength" in schema and len(instance) < schema["minLength"]:
                problems.append(f"{where}: shorter than {schema['minLength']}")
            if "pattern" in schema and not re.search(schema["pattern"], instance):
                problems.append(f"{where}: does not match {schema['pattern']}")
        if isinstance(instance, int | float) and not isinstance(instance, bool):
            if "maximum" in schema and instance > schema["maximum"]:
                problems.append(f"{where}: above {schema['maximum']}")
            if "minimum" in schema and instance < schema["minimum"]:
                problems.append(f"{where}: below {schema['minimum']}")
        if isinstance(instance, list):
            if "maxItems" in schema and len(instance) > schema["maxItems"]:
                problems.append(f"{where}: more than {schema['maxItems']} items")
            if "minItems" in schema and len(instance) < schema["minItems"]:
                problems.append(f"{where}: fewer than {schema['minItems']} items")
            for index, item in enumerate(instance):
                problems += self.errors(item, schema.get("items", {}), f"{where}[{index}]")
        if isinstance(instance, dict):
            for name in schema.get("required", []):
                if name not in instance:
                    problems.append(f"{where}.{name}: required")
            for name, sub in schema.get("properties", {}).items():
                if name in instance:
                    problems += self.errors(instance[name], sub, f"{where}.{name}")
        return problems


def _is_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        if isinstance(value, str):
            return bool(re.fullmatch(r"-?\d+", value))
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True


def embed_size(embed: dict[str, Any]) -> int:
    """Discord's 6,000-character rule across one embed (not expressible in the schema)."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    for item in embed.get("fields") or []:
        total += len(item.get("name") or "") + len(item.get("value") or "")
    return total


# --- the world ------------------------------------------------------------------------


class Snowflakes:
    """Discord ids: milliseconds since 2015 shifted left 22 bits, plus a counter."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> str:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(now, self._last + 1)
        return str(self._last)


def _iso(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).isoformat()


@dataclass
class Channel:
    id: str
    guild_id: str
    name: str
    type: int = TEXT
    parent_id: str | None = None
    owner_id: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False
    refuse: tuple[int, int, str] | None = None  # (status, code, message) for posting here

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "guild_id": self.guild_id,
            "name": self.name,
            "position": 0,
            "permission_overwrites": [],
            "parent_id": self.parent_id,
            "nsfw": False,
            "rate_limit_per_user": 0,
            "flags": 0,
            "last_message_id": self.messages[-1]["id"] if self.messages else None,
        }
        if self.type == TEXT:
            data["topic"] = None
        if self.type == FORUM:
            data |= {
                "topic": None,
                "available_tags": [],
                "default_reaction_emoji": None,
                "default_sort_order": None,
                "default_forum_layout": 0,
                "default_thread_rate_limit_per_user": 0,
            }
        if self.type == PUBLIC_THREAD:
            data |= {
                "owner_id": self.owner_id,
                "message_count": len(self.messages),
                "member_count": 1,
                "total_message_sent": len(self.messages),
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": _iso(),
                    "locked": False,
                    "create_timestamp": _iso(),
                },
            }
            del data["permission_overwrites"]
        return data


@dataclass
class Guild:
    id: str
    name: str
    channels: list[str] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)  # role id → name, beyond @everyone


@dataclass
class Webhook:
    id: str
    token: str
    channel_id: str
    guild_id: str
    name: str


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    at: float
    headers: dict[str, str]


@dataclass
class InteractionLog:
    """One interaction as Discord saw it: when it was sent, and every answer."""

    id: str
    token: str
    kind: int
    name: str
    channel_id: str
    sent_at: float
    callbacks: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    original: dict[str, Any] | None = None
    original_deleted: bool = False
    followups: list[dict[str, Any]] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def first_answer_after_s(self) -> float:
        return self.callbacks[0][0] - self.sent_at

    async def answer(self, within_s: float = 3.0) -> dict[str, Any]:
        """The first callback body; fails if Discord's 3 s window would have passed."""
        await asyncio.wait_for(self.answered.wait(), within_s)
        return self.callbacks[0][1]

    def shown(self) -> list[tuple[str, bool]]:
        """What the member ends up seeing: (content, ephemeral) per message."""
        seen = []
        if self.original is not None and not self.original_deleted:
            seen.append(self.original)
        seen += self.followups
        return [
            (m["content"], bool(m["flags"] & EPHEMERAL)) for m in seen if not m["flags"] & LOADING
        ]

    async def wait_shown(self, count: int = 1, within_s: float = 10.0) -> list[tuple[str, bool]]:
        deadline = time.monotonic() + within_s
        while len(self.shown()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.shown()!r} shown")
            await asyncio.sleep(0.02)
        return self.shown()


class Session:
    """One gateway connection."""

    def __init__(self, ws: web.WebSocketResponse, compress: bool) -> None:
        self.ws = ws
        self.id = secrets.token_hex(16)
        self.seq = 0
        self.identified = asyncio.Event()
        self._deflate = zlib.compressobj() if compress else None

    async def send(self, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload, separators=(",", ":"))
        if self._deflate is None:
            await self.ws.send_str(raw)
            return
        # zlib-stream: one zlib context for the connection, each message sync-flushed.
        data = self._deflate.compress(raw.encode()) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        await self.ws.send_bytes(data)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        await self.send({"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DiscordServer:
    """Discord on 127.0.0.1:<random port>. `api_url` and `gateway_url` point discord.py here."""

    def __init__(
        self,
        *,
        bucket_limit: int = 5,
        bucket_window_s: float = 5.0,
        nonce_window_s: float = 300.0,
        global_limit_per_s: int = 50,
    ) -> None:
        self.spec = Spec()
        self.snowflake = Snowflakes()
        self.token = TOKEN
        self.application_id = self.snowflake()
        self.bot_user = {
            "id": self.application_id,
            "username": "Starling",
            "global_name": None,
            "discriminator": "0",
            "avatar": None,
            "bot": True,
            "public_flags": 0,
            "flags": 0,
            "primary_guild": None,
            "mfa_enabled": True,
            "verified": True,
            "email": None,
            "locale": "en-US",
            "premium_type": 0,
        }
        self.guilds: dict[str, Guild] = {}
        self.channels: dict[str, Channel] = {}
        self.webhooks: dict[str, Webhook] = {}
        self.commands: dict[str | None, list[dict[str, Any]]] = {}
        self.requests: list[Request] = []
        self.identifies: list[dict[str, Any]] = []
        self.gateway_queries: list[dict[str, str]] = []
        self.resumes: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.sessions: list[Session] = []
        self.interactions: dict[str, InteractionLog] = {}
        self.invalid_bodies: list[tuple[str, list[str]]] = []
        self.invalid_responses: list[tuple[str, list[str]]] = []
        self._operations: dict[tuple[str, str], str] = {}
        self.bucket_limit = bucket_limit
        self.bucket_window_s = bucket_window_s
        self.nonce_window_s = nonce_window_s
        self._buckets: dict[str, tuple[float, int]] = {}
        self._storms: list[dict[str, Any]] = []
        self._failures: list[tuple[str, int, bool]] = []
        self._nonces: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
        self._global_until = 0.0
        # Discord's standing global limit: requests per second per bot token, every
        # route but interaction callbacks. 0 turns it off.
        self.global_limit_per_s = global_limit_per_s
        self._global_window: deque[float] = deque()
        self.global_429s = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.arrived = asyncio.Condition()

    # --- lifecycle ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for session in list(self.sessions):
            with contextlib.suppress(Exception):
                await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> DiscordServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- shaping the world ----------------------------------------------------------

    def add_guild(self, name: str = "Team") -> Guild:
        guild = Guild(self.snowflake(), name)
        self.guilds[guild.id] = guild
        return guild

    def add_role(self, guild: Guild, name: str) -> str:
        """A role in `guild`, listed in GUILD_CREATE as Discord does; add it before connecting."""
        role_id = self.snowflake()
        guild.roles[role_id] = name
        return role_id

    def add_channel(
        self, guild: Guild, name: str, *, kind: int = TEXT, parent: Channel | None = None
    ) -> Channel:
        channel = Channel(
            self.snowflake(),
            guild.id,
            name,
            kind,
            parent.id if parent else None,
            owner_id=self.bot_user["id"] if kind == PUBLIC_THREAD else None,
        )
        self.channels[channel.id] = channel
        guild.channels.append(channel.id)
        return channel

    def delete_channel(self, channel: Channel) -> None:
        channel.deleted = True

    def deny(self, channel: Channel, code: int = 50013) -> None:
        """Make posting in `channel` fail as when the bot lost a permission or access."""
        message = {50013: "Missing Permissions", 50001: "Missing Access"}.get(code, "Forbidden")
        channel.refuse = (403, code, message)

    def rate_limit_next(
        self,
        count: int,
        *,
        retry_after: float = 0.2,
        global_: bool = False,
        route: str = "message",
    ) -> None:
        """The next `count` requests of `route` ("message": anything that posts) get a 429."""
        for _ in range(count):
            self._storms.append({"retry_after": retry_after, "global": global_, "route": route})

    def fail_next(
        self, count: int, status: int = 500, *, route: str = "message", after_storing: bool = False
    ) -> None:
        """The next `count` posts fail with `status`; `after_storing`: the post is kept
        but the answer is an error, as when Discord's edge fails after the write."""
        self._failures += [(route, status, after_storing)] * count

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every gateway connection as Discord does on a hiccup (4000: reconnect)."""
        for session in list(self.sessions):
            session.identified.clear()
            await session.ws.close(code=code, message=b"Unknown error")

    def messages_in(self, channel: Channel | str) -> list[dict[str, Any]]:
        cid = channel if isinstance(channel, str) else channel.id
        return list(self.channels[cid].messages)

    async def wait_for_messages(
        self, channel: Channel, count: int, *, within_s: float = 10.0
    ) -> list[dict[str, Any]]:
        async with asyncio.timeout(within_s), self.arrived:
            await self.arrived.wait_for(lambda: len(channel.messages) >= count)
        return self.messages_in(channel)

    def calls(self, method: str, pattern: str) -> list[Request]:
        """Requests whose path (after /api/v10) matches `pattern` (a regex)."""
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]

    # --- interactions, as Discord delivers them -------------------------------------

    def _command(self, name: str, guild_id: str) -> dict[str, Any]:
        for scope in (guild_id, None):
            for command in self.commands.get(scope, []):
                if command["name"] == name:
                    return command
        raise LookupError(f"/{name} is not registered with Discord (commands were not synced)")

    def _member(self, permissions: int) -> dict[str, Any]:
        return {
            "user": {
                "id": "80351110224678912",
                "username": "ada",
                "global_name": "Ada",
                "discriminator": "0",
                "avatar": None,
                "public_flags": 0,
                "flags": 0,
                "primary_guild": None,
            },
            "roles": [],
            "joined_at": "2024-01-01T00:00:00+00:00",
            "permissions": str(permissions),
            "nick": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "premium_since": None,
            "communication_disabled_until": None,
        }

    def _member_with(
        self, permissions: int, roles: list[str] | None, user_id: str, username: str
    ) -> dict[str, Any]:
        """The interaction's `member`: role ids as Discord lists them, another user if named."""
        member = self._member(permissions)
        member["roles"] = list(roles or [])
        if user_id:
            member["user"] = {**member["user"], "id": user_id, "username": username or "member"}
        return member

    async def invoke(
        self,
        channel: Channel,
        name: str,
        options: list[dict[str, Any]] | None = None,
        *,
        permissions: int = MODERATOR,
        kind: int = 2,
        resolved: dict[str, Any] | None = None,
        roles: list[str] | None = None,
        user_id: str = "",
        username: str = "",
    ) -> InteractionLog:
        """Send an INTERACTION_CREATE as Discord does when a member runs a command.

        Like Discord, refuses members lacking the command's default_member_permissions.
        """
        command = self._command(name, channel.guild_id)
        needed = int(command.get("default_member_permissions") or 0)
        if needed and not permissions & ADMINISTRATOR and permissions & needed != needed:
            raise PermissionError(f"Discord does not offer /{name} to this member")
        log = self._new_interaction(kind, name, channel)
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": options or [],
            "guild_id": channel.guild_id,
        }
        if resolved:
            data["resolved"] = resolved
        payload = self._interaction_payload(
            log,
            channel,
            data,
            user_id=user_id,
            username=username,
            permissions=permissions,
            roles=roles,
        )
        return await self._send_interaction(log, payload)

    async def click(
        self,
        channel: Channel,
        message: dict[str, Any],
        label: str,
        *,
        user_id: str = "80351110224678912",
        username: str = "ada",
        permissions: int = MEMBER,
        roles: list[str] | None = None,
    ) -> InteractionLog:
        """A member clicks the button `label` on `message` (an INTERACTION_CREATE of type 3).

        Fails the test when the message shows no such button: a member cannot click it.
        """
        buttons = [
            component
            for row in message.get("components") or []
            for component in row.get("components") or []
            if component.get("type") == 2 and component.get("label") == label
        ]
        if not buttons or "custom_id" not in buttons[0]:
            raise AssertionError(f"no button {label!r} on message {message.get('id')}")
        log = self._new_interaction(3, "", channel)
        data = {"custom_id": buttons[0]["custom_id"], "component_type": 2}
        payload = self._interaction_payload(
            log,
            channel,
            data,
            user_id=user_id,
            username=username,
            permissions=permissions,
            roles=roles,
        )
        payload["message"] = self._public(message)
        return await self._send_interaction(log, payload)

    def _new_interaction(self, kind: int, name: str, channel: Channel) -> InteractionLog:
        log = InteractionLog(self.snowflake(), secrets.token_urlsafe(48), kind, name, channel.id, 0)
        self.interactions[log.token] = log
        return log

    def _interaction_payload(
        self,
        log: InteractionLog,
        channel: Channel,
        data: dict[str, Any],
        *,
        user_id: str,
        username: str,
        permissions: int,
        roles: list[str] | None = None,
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE body from `user_id` in `channel`, as Discord sends it."""
        return {
            "id": log.id,
            "application_id": self.application_id,
            "type": log.kind,
            "data": data,
            "guild_id": channel.guild_id,
            "guild": {"id": channel.guild_id, "locale": "en-US", "features": []},
            "channel_id": channel.id,
            "channel": {**channel.payload(), "permissions": str(permissions)},
            "member": self._member_with(permissions, roles, user_id, username),
            "token": log.token,
            "version": 1,
            "app_permissions": str(MEMBER),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": channel.guild_id},
            "context": 0,
            "attachment_size_limit": 10_485_760,
        }

    async def _send_interaction(
        self, log: InteractionLog, payload: dict[str, Any]
    ) -> InteractionLog:
        log.sent_at = time.monotonic()
        await self.dispatch("INTERACTION_CREATE", payload)
        return log

    async def message_command(
        self,
        channel: Channel,
        name: str,
        message: dict[str, Any],
        *,
        user_id: str = "80351110224678912",
        username: str = "ada",
        permissions: int = MEMBER,
    ) -> InteractionLog:
        """A member picks the message context menu `name` on `message` (command type 3)."""
        command = self._command(name, channel.guild_id)
        assert command.get("type") == 3, f"{name!r} is not a message context menu"
        log = self._new_interaction(2, name, channel)
        data = {
            "id": command["id"],
            "name": name,
            "type": 3,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: self._public(message)}},
            "guild_id": channel.guild_id,
        }
        payload = self._interaction_payload(
            log, channel, data, user_id=user_id, username=username, permissions=permissions
        )
        return await self._send_interaction(log, payload)

    async def submit_modal(
        self,
        opened: InteractionLog,
        values: dict[str, str],
        *,
        user_id: str = "80351110224678912",
        username: str = "ada",
        permissions: int = MEMBER,
    ) -> InteractionLog:
        """Fill in the modal `opened` showed (`values` by input label) and submit it."""
        body = await opened.answer()  # the member cannot type before the modal shows
        kind = body["type"]
        assert kind == 9, f"the answer was not a modal: {body}"
        modal = body["data"]

        def submitted(component: dict[str, Any]) -> dict[str, Any]:
            if component["type"] == 1:
                return {"type": 1, "components": [submitted(c) for c in component["components"]]}
            if component["type"] == 18:
                label = component.get("label", "")
                inner = {**component["component"], "label": label}
                return {"type": 18, "component": submitted(inner)}
            value = values.get(component.get("label", ""), "")
            return {"type": component["type"], "custom_id": component["custom_id"], "value": value}

        channel = self.channels[opened.channel_id]
        log = self._new_interaction(5, "", channel)
        data = {
            "custom_id": modal["custom_id"],
            "components": [submitted(c) for c in modal["components"]],
        }
        payload = self._interaction_payload(
            log, channel, data, user_id=user_id, username=username, permissions=permissions
        )
        return await self._send_interaction(log, payload)

    async def autocomplete(
        self, channel: Channel, name: str, options: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Type into an autocompleted option; returns the choices Discord would show."""
        log = await self.invoke(channel, name, options, kind=4)
        body = await log.answer()
        assert body["type"] == 8, body
        return list(body["data"]["choices"])

    def channel_option(self, name: str, channel: Channel, permissions: int) -> tuple[dict, dict]:
        """An option naming a channel, and the `resolved` data Discord sends with it."""
        option = {"name": name, "type": 7, "value": channel.id}
        resolved = {
            "channels": {
                channel.id: {
                    "id": channel.id,
                    "name": channel.name,
                    "type": channel.type,
                    "permissions": str(permissions),
                    "parent_id": channel.parent_id,
                    **(
                        {"thread_metadata": channel.payload()["thread_metadata"]}
                        if channel.type == PUBLIC_THREAD
                        else {}
                    ),
                }
            }
        }
        return option, resolved

    # --- gateway --------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        ready = [s for s in self.sessions if s.identified.is_set() and not s.ws.closed]
        if not ready:
            raise RuntimeError("no client is connected to the gateway")
        for session in ready:
            await session.dispatch(event, data)

    async def wait_connected(self, within_s: float = 10.0) -> Session:
        deadline = time.monotonic() + within_s
        while True:
            for session in self.sessions:
                if session.identified.is_set() and not session.ws.closed:
                    return session
            if time.monotonic() > deadline:
                raise TimeoutError("no client identified on the gateway")
            await asyncio.sleep(0.02)

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("encoding", "json") != "json":
            raise web.HTTPBadRequest(text="this fake gateway speaks encoding=json only")
        compress = request.query.get("compress")
        if compress not in (None, "zlib-stream"):
            raise web.HTTPBadRequest(text=f"unsupported compress={compress}")
        ws = web.WebSocketResponse(autoclose=True)
        await ws.prepare(request)
        session = Session(ws, compress == "zlib-stream")
        self.gateway_queries.append(dict(request.query))
        self.sessions.append(session)
        await session.send(
            {"op": OP_HELLO, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}
        )
        async for msg in ws:
            if msg.type != WSMsgType.TEXT and msg.type != WSMsgType.BINARY:
                break
            frame = json.loads(msg.data)
            op = frame.get("op")
            if op == OP_HEARTBEAT:
                self.heartbeats += 1
                await session.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
            elif op == OP_IDENTIFY:
                self.identifies.append(frame["d"])
                if frame["d"].get("token") != self.token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                await self._ready(session)
            elif op == OP_RESUME:
                self.resumes.append(frame["d"])
                await session.dispatch("RESUMED", {})
                session.identified.set()
        return ws

    async def _ready(self, session: Session) -> None:
        await session.dispatch(
            "READY",
            {
                "v": 10,
                "user": self.bot_user,
                "user_settings": {},
                "guilds": [{"id": gid, "unavailable": True} for gid in self.guilds],
                "session_id": session.id,
                "resume_gateway_url": self.gateway_url,
                "session_type": "normal",
                "shard": [0, 1],
                "application": {"id": self.application_id, "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "geo_ordered_rtc_regions": [],
                "guild_join_requests": [],
            },
        )
        for guild in self.guilds.values():
            await session.dispatch("GUILD_CREATE", self._guild_payload(guild))
        session.identified.set()

    def _guild_payload(self, guild: Guild) -> dict[str, Any]:
        live = [self.channels[c] for c in guild.channels if not self.channels[c].deleted]
        return {
            "id": guild.id,
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": "80351110224678912",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [
                {
                    "id": guild.id,
                    "name": "@everyone",
                    "permissions": str(MEMBER),
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                },
                *(
                    {
                        "id": role_id,
                        "name": role_name,
                        "permissions": "0",
                        "position": 1,
                        "color": 0,
                        "hoist": False,
                        "managed": False,
                        "mentionable": False,
                        "flags": 0,
                    }
                    for role_id, role_name in guild.roles.items()
                ),
            ],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": _iso(),
            "large": False,
            "unavailable": False,
            "member_count": 2,
            "members": [],
            "voice_states": [],
            "presences": [],
            "channels": [c.payload() for c in live if c.type != PUBLIC_THREAD],
            "threads": [c.payload() for c in live if c.type == PUBLIC_THREAD],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    # --- REST -----------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._record, self._global_gate])
        app.router.add_get("/gateway", self._gateway)
        # (method, path, handler, Discord's operationId for the response schema)
        routes: list[tuple[str, str, Handler, str]] = [
            ("GET", "/users/@me", self._me, "get_my_user"),
            ("GET", "/oauth2/applications/@me", self._application, "get_my_oauth2_application"),
            ("GET", "/gateway/bot", self._gateway_bot, "get_bot_gateway"),
            (
                "PUT",
                "/applications/{app}/commands",
                self._put_commands,
                "bulk_set_application_commands",
            ),
            (
                "PUT",
                "/applications/{app}/guilds/{guild}/commands",
                self._put_commands,
                "bulk_set_guild_application_commands",
            ),
            ("GET", "/channels/{channel}", self._get_channel, "get_channel"),
            ("GET", "/channels/{channel}/messages", self._list_messages, "list_messages"),
            ("POST", "/channels/{channel}/messages", self._create_message, "create_message"),
            ("GET", "/channels/{channel}/messages/{message}", self._get_message, "get_message"),
            (
                "DELETE",
                "/channels/{channel}/messages/{message}",
                self._delete_message,
                "delete_message",
            ),
            (
                "PATCH",
                "/channels/{channel}/messages/{message}",
                self._edit_message,
                "update_message",
            ),
            ("POST", "/channels/{channel}/threads", self._create_thread, "create_thread"),
            ("GET", "/channels/{channel}/webhooks", self._list_webhooks, "list_channel_webhooks"),
            ("POST", "/channels/{channel}/webhooks", self._create_webhook, "create_webhook"),
            (
                "GET",
                "/guilds/{guild}/threads/active",
                self._active_threads,
                "get_active_guild_threads",
            ),
            ("POST", "/webhooks/{hook}/{token}", self._execute_webhook, "execute_webhook"),
            (
                "PATCH",
                "/webhooks/{hook}/{token}/messages/{message}",
                self._edit_webhook_message,
                "update_webhook_message",
            ),
            (
                "DELETE",
                "/webhooks/{hook}/{token}/messages/{message}",
                self._delete_webhook_msg,
                "delete_webhook_message",
            ),
            (
                "POST",
                "/interactions/{id}/{token}/callback",
                self._interaction_callback,
                "create_interaction_response",
            ),
        ]
        for method, path, handler, operation in routes:
            app.router.add_route(method, API_PREFIX + path, handler)
            self._operations[(method, API_PREFIX + path)] = operation
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
        path = request.path.removeprefix(API_PREFIX)
        try:
            response = await handler(request)
        except web.HTTPException as err:
            response = err
        self.requests.append(
            Request(
                request.method,
                path,
                dict(request.query),
                body,
                response.status,
                time.monotonic(),
                dict(request.headers),
            )
        )
        self._check_response(request, response)
        return response

    @web.middleware
    async def _global_gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The standing global limit, on its own: the request that would be the 51st in
        the last second gets a global 429 (interaction callbacks and webhooks are exempt,
        as Discord documents: they are not made with the bot token)."""
        limit = self.global_limit_per_s
        if (
            not limit
            or not self._authorised(request)
            or request.path.startswith(API_PREFIX + "/interactions/")
        ):
            return await handler(request)
        now = time.monotonic()
        while self._global_window and now - self._global_window[0] >= 1.0:
            self._global_window.popleft()
        if len(self._global_window) >= limit:
            self.global_429s += 1
            wait = 1.0 - (now - self._global_window[0])
            return self._too_many(wait, global_=True, bucket="global:")
        self._global_window.append(now)
        return await handler(request)

    def _check_response(self, request: web.Request, response: web.StreamResponse) -> None:
        """Hold the fake to Discord's own response schemas; tests assert nothing was off."""
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else ""
        operation = self._operations.get((request.method, canonical))
        if operation is None or not isinstance(response, web.Response) or not response.body:
            return
        if request.match_info.get("message") == "@original":
            operation = operation.replace("webhook_message", "original_webhook_message")
        schema = self.spec.response_schema(operation, response.status)
        if schema is None:
            return
        assert isinstance(response.body, bytes)
        problems = self.spec.errors(json.loads(response.body), schema, operation)
        if problems:
            self.invalid_responses.append((operation, problems))

    @staticmethod
    def _error(status: int, code: int, message: str, **extra: Any) -> web.Response:
        return _json({"message": message, "code": code, **extra}, status=status)

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    async def _body(self, request: web.Request, operation: str) -> tuple[Any, web.Response | None]:
        """The JSON body, or Discord's 50035 Invalid Form Body when it breaks the schema."""
        body = await request.json()
        problems = self.spec.errors(body, self.spec.request_schema(operation))
        embeds = body.get("embeds") if isinstance(body, dict) else None
        for index, embed in enumerate(embeds or []):
            if isinstance(embed, dict) and embed_size(embed) > 6000:
                problems.append(f"embeds[{index}]: Embed size exceeds maximum size of 6000")
        if problems:
            self.invalid_bodies.append((operation, problems))
            return body, self._error(
                400,
                50035,
                "Invalid Form Body",
                errors={"_errors": [{"message": p} for p in problems]},
            )
        return body, None

    def _limited(
        self, request: web.Request, template: str, major: str, route: str
    ) -> web.Response | None:
        """Forced storms first, then the bucket's own limit; None when the request may go.

        A bucket is a route template plus its major parameter (channel or webhook id).
        """
        bucket = f"{template}:{major}"
        now = time.monotonic()
        if now < self._global_until:
            return self._too_many(self._global_until - now, global_=True, bucket=bucket)
        storm = next((s for s in self._storms if s["route"] == route), None)
        if storm is not None:
            self._storms.remove(storm)
            if storm["global"]:
                self._global_until = now + storm["retry_after"]
            return self._too_many(storm["retry_after"], global_=storm["global"], bucket=bucket)
        failure = next((f for f in self._failures if f[0] == route), None)
        if failure is not None:
            self._failures.remove(failure)
            if not failure[2]:
                return self._error(failure[1], 0, "Internal Server Error")
            request[FAIL_AFTER] = failure[1]
        started, used = self._buckets.get(bucket, (now, 0))
        if now - started >= self.bucket_window_s:
            started, used = now, 0
        if used >= self.bucket_limit:
            return self._too_many(
                self.bucket_window_s - (now - started), global_=False, bucket=bucket
            )
        self._buckets[bucket] = (started, used + 1)
        request[BUCKET] = (bucket, self.bucket_limit - used - 1, started)
        return None

    def _too_many(self, retry_after: float, *, global_: bool, bucket: str) -> web.Response:
        retry_after = round(max(retry_after, 0.001), 3)
        headers = {
            "Retry-After": str(max(1, int(retry_after + 0.999))),
            "X-RateLimit-Limit": str(self.bucket_limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": _bucket_hash(bucket),
            "X-RateLimit-Scope": "global" if global_ else "user",
            "Via": "1.1 google",
        }
        if global_:
            headers["X-RateLimit-Global"] = "true"
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": global_,
            "code": 0,
        }
        return _json(body, status=429, headers=headers)

    def _with_bucket(self, request: web.Request, response: web.Response) -> web.Response:
        info = request.get(BUCKET)
        if info is not None:
            bucket, remaining, started = info
            reset_after = max(self.bucket_window_s - (time.monotonic() - started), 0.0)
            response.headers.update(
                {
                    "X-RateLimit-Limit": str(self.bucket_limit),
                    "X-RateLimit-Remaining": str(remaining),
                    "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
                    "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                    "X-RateLimit-Bucket": _bucket_hash(bucket),
                }
            )
        return response

    def _channel_for_bot(self, channel_id: str, *, posting: bool) -> Channel | web.Response:
        channel = self.channels.get(channel_id)
        if channel is None or channel.deleted:
            return self._error(404, 10003, "Unknown Channel")
        if posting and channel.refuse is not None:
            status, code, message = channel.refuse
            return self._error(status, code, message)
        return channel

    async def _notify(self) -> None:
        async with self.arrived:
            self.arrived.notify_all()

    def _message(
        self,
        channel: Channel,
        body: dict[str, Any],
        *,
        author: dict[str, Any] | None = None,
        webhook_id: str | None = None,
        flags: int = 0,
    ) -> dict[str, Any]:
        message = {
            "id": self.snowflake(),
            "channel_id": channel.id,
            "guild_id": channel.guild_id,
            "author": author or self.bot_user,
            "content": body.get("content") or "",
            "timestamp": _iso(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts")),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [_received_embed(e) for e in body.get("embeds") or []],
            "pinned": False,
            "type": 0,
            "flags": flags | int(body.get("flags") or 0),
            "components": body.get("components") or [],
            "allowed_mentions": body.get("allowed_mentions"),  # kept for tests to inspect
        }
        if webhook_id is not None:
            message["webhook_id"] = webhook_id
            message["application_id"] = self.application_id
        reference = body.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id"):
            message["message_reference"] = {  # a reply, shown under its parent's quote
                "type": 0,
                "channel_id": str(reference.get("channel_id") or channel.id),
                "message_id": str(reference["message_id"]),
                "guild_id": channel.guild_id,
            }
        return message

    @staticmethod
    def _public(message: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in message.items() if k != "allowed_mentions"}

    async def _me(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        return _json(self.bot_user)

    async def _application(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        return _json(
            {
                "id": self.application_id,
                "name": "Starling",
                "icon": None,
                "description": "",
                "type": None,
                "bot": self.bot_user,
                "summary": "",
                "bot_public": False,
                "bot_require_code_grant": False,
                "verify_key": secrets.token_hex(32),
                "flags": 0,
                "owner": {
                    "id": "80351110224678912",
                    "username": "ada",
                    "discriminator": "0",
                    "avatar": None,
                    "global_name": "Ada",
                    "public_flags": 0,
                    "flags": 0,
                    "primary_guild": None,
                },
                "team": None,
                "rpc_origins": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "tags": [],
                "integration_types_config": {},
                "approximate_guild_count": len(self.guilds),
                "approximate_user_install_count": 0,
                "approximate_user_authorization_count": 0,
                "explicit_content_filter": 0,
                "eligible_oauth2_scopes": ["bot", "applications.commands"],
                "flags_new": "0",
            }
        )

    async def _gateway_bot(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _put_commands(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        guild = request.match_info.get("guild")
        if guild is not None and guild not in self.guilds:
            return self._error(403, 50001, "Missing Access")
        operation = (
            "bulk_set_guild_application_commands" if guild else "bulk_set_application_commands"
        )
        body, invalid = await self._body(request, operation)
        if invalid is not None:
            return invalid
        stored = [
            {
                "description": "",  # what Discord stores for context menus, which send none
                **command,
                "id": self.snowflake(),
                "application_id": self.application_id,
                "version": self.snowflake(),
                "default_member_permissions": (
                    None
                    if command.get("default_member_permissions") is None
                    else str(command["default_member_permissions"])
                ),
                # What Discord stores when a field was left out: guild installs.
                "integration_types": command.get("integration_types") or [0],
                "contexts": command.get("contexts") or [0, 1, 2],
                **({"guild_id": guild} if guild else {}),
            }
            for command in body
        ]
        self.commands[guild] = stored
        return _json(stored)

    async def _get_channel(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        found = self._channel_for_bot(request.match_info["channel"], posting=False)
        if isinstance(found, web.Response):
            return found
        return _json(found.payload())

    async def _list_messages(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        found = self._channel_for_bot(request.match_info["channel"], posting=False)
        if isinstance(found, web.Response):
            return found
        limit = min(int(request.query.get("limit", "50")), 100)
        newest_first = [self._public(m) for m in reversed(found.messages)]
        if "before" in request.query:
            before = int(request.query["before"])
            newest_first = [m for m in newest_first if int(m["id"]) < before]
        return _json(newest_first[:limit])

    async def _get_message(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        found = self._channel_for_bot(request.match_info["channel"], posting=False)
        if isinstance(found, web.Response):
            return found
        for message in found.messages:
            if message["id"] == request.match_info["message"]:
                return _json(self._public(message))
        return self._error(404, 10008, "Unknown Message")

    async def _delete_message(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        found = self._channel_for_bot(request.match_info["channel"], posting=False)
        if isinstance(found, web.Response):
            return found
        for message in found.messages:
            if message["id"] == request.match_info["message"]:
                if message["author"]["id"] != self.bot_user["id"]:
                    return self._error(403, 50013, "Missing Permissions")
                found.messages.remove(message)
                await self._notify()
                return web.Response(status=204)
        return self._error(404, 10008, "Unknown Message")

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        channel_id = request.match_info["channel"]
        limited = self._limited(request, "POST /channels/{id}/messages", channel_id, "message")
        if limited is not None:
            return limited
        found = self._channel_for_bot(channel_id, posting=True)
        if isinstance(found, web.Response):
            return found
        if found.type == FORUM:
            return self._error(400, 50008, "Cannot send messages in a non-text channel")
        body, invalid = await self._body(request, "create_message")
        if invalid is not None:
            return invalid
        nonce = body.get("nonce")
        key = (found.id, self.bot_user["id"], str(nonce))
        seen = self._nonces.get(key)
        if seen and body.get("enforce_nonce") and time.monotonic() - seen[0] < self.nonce_window_s:
            # Discord: a repeated nonce within a few minutes returns the first message.
            return self._with_bucket(request, _json(self._public(seen[1])))
        message = self._message(found, body)
        found.messages.append(message)
        if nonce is not None:
            self._nonces[key] = (time.monotonic(), message)
        await self._notify()
        if FAIL_AFTER in request:
            return self._error(request[FAIL_AFTER], 0, "Internal Server Error")
        return self._with_bucket(request, _json({**self._public(message), "nonce": nonce}))

    async def _edit_message(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        found = self._channel_for_bot(request.match_info["channel"], posting=True)
        if isinstance(found, web.Response):
            return found
        body, invalid = await self._body(request, "update_message")
        if invalid is not None:
            return invalid
        for message in found.messages:
            if message["id"] == request.match_info["message"]:
                if message["author"]["id"] != self.bot_user["id"]:
                    return self._error(403, 50005, "Cannot edit a message authored by another user")
                _apply_edit(message, body)
                return _json(self._public(message))
        return self._error(404, 10008, "Unknown Message")

    async def _create_thread(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        channel_id = request.match_info["channel"]
        limited = self._limited(request, "POST /channels/{id}/threads", channel_id, "message")
        if limited is not None:
            return limited
        found = self._channel_for_bot(channel_id, posting=True)
        if isinstance(found, web.Response):
            return found
        body, invalid = await self._body(request, "create_thread")
        if invalid is not None:
            return invalid
        if found.type != FORUM or "message" not in body:
            return self._error(400, 50024, "Cannot execute action on this channel type")
        guild = self.guilds[found.guild_id]
        post = self.add_channel(guild, body["name"], kind=PUBLIC_THREAD, parent=found)
        starter = self._message(post, body["message"])
        starter["id"] = post.id  # a forum post's first message shares the thread's id
        post.messages.append(starter)
        await self._notify()
        return self._with_bucket(
            request,
            _json({**post.payload(), "message": self._public(starter)}, status=201),
        )

    async def _list_webhooks(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        found = self._channel_for_bot(request.match_info["channel"], posting=True)
        if isinstance(found, web.Response):
            return found
        hooks = [self._hook_payload(h) for h in self.webhooks.values() if h.channel_id == found.id]
        return _json(hooks)

    async def _create_webhook(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        found = self._channel_for_bot(request.match_info["channel"], posting=True)
        if isinstance(found, web.Response):
            return found
        body, invalid = await self._body(request, "create_webhook")
        if invalid is not None:
            return invalid
        hook = Webhook(
            self.snowflake(), secrets.token_urlsafe(48), found.id, found.guild_id, body["name"]
        )
        self.webhooks[hook.id] = hook
        return _json(self._hook_payload(hook))

    def _hook_payload(self, hook: Webhook) -> dict[str, Any]:
        return {
            "id": hook.id,
            "type": 1,
            "guild_id": hook.guild_id,
            "channel_id": hook.channel_id,
            "user": self.bot_user,
            "name": hook.name,
            "avatar": None,
            "token": hook.token,
            "application_id": self.application_id,
        }

    async def _active_threads(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        guild = self.guilds.get(request.match_info["guild"])
        if guild is None:
            return self._error(404, 10004, "Unknown Guild")
        threads = [
            self.channels[c].payload()
            for c in guild.channels
            if self.channels[c].type == PUBLIC_THREAD and not self.channels[c].deleted
        ]
        return _json({"threads": threads, "members": [], "has_more": False})

    # --- webhooks, and interaction answers (which are webhooks too) ---------------------

    async def _execute_webhook(self, request: web.Request) -> web.StreamResponse:
        hook_id, token = request.match_info["hook"], request.match_info["token"]
        if hook_id == self.application_id:
            return await self._followup(request, token)
        hook = self.webhooks.get(hook_id)
        if hook is None or hook.token != token:
            return self._error(404, 10015, "Unknown Webhook")
        limited = self._limited(request, "POST /webhooks/{id}/{token}", hook_id, "message")
        if limited is not None:
            return limited
        found = self._channel_for_bot(hook.channel_id, posting=True)
        if isinstance(found, web.Response):
            return found
        body, invalid = await self._body(request, "execute_webhook")
        if invalid is not None:
            return invalid
        author = {
            "id": hook.id,
            "username": body.get("username") or hook.name,
            "avatar": None,
            "discriminator": "0000",
            "bot": True,
            "global_name": None,
            "public_flags": 0,
            "flags": 0,
            "primary_guild": None,
        }
        target = found
        if "thread_id" in request.query:
            target = self.channels.get(request.query["thread_id"])  # type: ignore[assignment]
            if target is None or target.parent_id != found.id or target.deleted:
                return self._error(404, 10003, "Unknown Channel")
        new_post = found.type == FORUM and "thread_id" not in request.query
        if new_post:
            if not body.get("thread_name"):
                return self._error(
                    400,
                    220001,
                    "Webhooks posted to forum channels must have a thread_name or thread_id",
                )
            target = self.add_channel(
                self.guilds[found.guild_id], body["thread_name"], kind=PUBLIC_THREAD, parent=found
            )
            target.owner_id = hook.id
        message = self._message(target, body, author=author, webhook_id=hook.id)
        if body.get("avatar_url"):
            message["author"]["avatar_url"] = body["avatar_url"]  # kept for tests to inspect
        if new_post:
            message["id"] = target.id
        target.messages.append(message)
        await self._notify()
        if FAIL_AFTER in request:
            return self._error(request[FAIL_AFTER], 0, "Internal Server Error")
        public = self._public(message)
        public["author"] = {k: v for k, v in public["author"].items() if k != "avatar_url"}
        if request.query.get("wait") in ("true", "1", "True"):
            return self._with_bucket(request, _json(public))
        return self._with_bucket(request, web.Response(status=204))

    async def _edit_webhook_message(self, request: web.Request) -> web.StreamResponse:
        hook_id, token = request.match_info["hook"], request.match_info["token"]
        message_id = request.match_info["message"]
        if hook_id == self.application_id:
            return await self._edit_interaction_message(request, token, message_id)
        hook = self.webhooks.get(hook_id)
        if hook is None or hook.token != token:
            return self._error(404, 10015, "Unknown Webhook")
        body, invalid = await self._body(request, "update_webhook_message")
        if invalid is not None:
            return invalid
        channel_id = request.query.get("thread_id", hook.channel_id)
        channel = self.channels.get(channel_id)
        for message in channel.messages if channel else []:
            if message["id"] == message_id and message.get("webhook_id") == hook.id:
                _apply_edit(message, body)
                return _json(self._public(message))
        return self._error(404, 10008, "Unknown Message")

    async def _delete_webhook_msg(self, request: web.Request) -> web.StreamResponse:
        token, message_id = request.match_info["token"], request.match_info["message"]
        hook = self.webhooks.get(request.match_info["hook"])
        if hook is not None and hook.token == token:  # a channel webhook's own message
            channel = self.channels.get(request.query.get("thread_id", hook.channel_id))
            for message in channel.messages if channel else []:
                if message["id"] == message_id and message.get("webhook_id") == hook.id:
                    channel.messages.remove(message)  # type: ignore[union-attr]
                    await self._notify()
                    return web.Response(status=204)
            return self._error(404, 10008, "Unknown Message")
        log = self.interactions.get(token)
        if request.match_info["hook"] != self.application_id or log is None:
            return self._error(404, 10015, "Unknown Webhook")
        if message_id == "@original" and log.original is not None:
            log.original_deleted = True
            if not log.original["flags"] & EPHEMERAL:
                channel = self.channels[log.channel_id]
                channel.messages = [m for m in channel.messages if m["id"] != log.original["id"]]
            return web.Response(status=204)
        return self._error(404, 10008, "Unknown Message")

    async def _interaction_callback(self, request: web.Request) -> web.StreamResponse:
        log = self.interactions.get(request.match_info["token"])
        if log is None or log.id != request.match_info["id"]:
            return self._error(404, 10062, "Unknown interaction")
        if log.callbacks:
            return self._error(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - log.sent_at > 3.0:
            return self._error(404, 10062, "Unknown interaction")  # Discord's 3 s window
        body, invalid = await self._body(request, "create_interaction_response")
        if invalid is not None:
            return invalid
        log.callbacks.append((time.monotonic(), body))
        log.answered.set()
        kind = body["type"]
        data = body.get("data") or {}
        answer: dict[str, Any] = {
            "interaction": {"id": log.id, "type": log.kind},
        }
        if kind in (4, 5):
            flags = int(data.get("flags") or 0) | (LOADING if kind == 5 else 0)
            channel = self.channels[log.channel_id]
            log.original = self._message(channel, data, flags=flags)
            log.original["interaction_metadata"] = {
                "id": log.id,
                "type": 2,
                "name": log.name,
                "command_type": 1,
                "user": self._member(0)["user"],
                "authorizing_integration_owners": {"0": channel.guild_id},
            }
            if not flags & EPHEMERAL:
                channel.messages.append(log.original)
            answer["interaction"] |= {
                "response_message_id": log.original["id"],
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            }
            if kind == 4:  # the spec has no resource for a deferred answer
                answer["resource"] = {"type": kind, "message": self._public(log.original)}
        if request.query.get("with_response") in ("1", "true", "True"):
            return _json(answer)
        return web.Response(status=204)

    async def _followup(self, request: web.Request, token: str) -> web.StreamResponse:
        log = self.interactions.get(token)
        if log is None:
            return self._error(404, 10015, "Unknown Webhook")
        body, invalid = await self._body(request, "execute_webhook")
        if invalid is not None:
            return invalid
        channel = self.channels[log.channel_id]
        original = log.original
        if original is not None and not log.original_deleted and original["flags"] & LOADING:
            # After a deferred answer the first follow-up replaces the "thinking…" message.
            original["flags"] &= ~LOADING
            _apply_edit(original, body)
            return _json(self._public(original))
        message = self._message(channel, body, flags=int(body.get("flags") or 0))
        log.followups.append(message)
        if not message["flags"] & EPHEMERAL:
            channel.messages.append(message)
        return _json(self._public(message))

    async def _edit_interaction_message(
        self, request: web.Request, token: str, message_id: str
    ) -> web.StreamResponse:
        log = self.interactions.get(token)
        if log is None:
            return self._error(404, 10015, "Unknown Webhook")
        body, invalid = await self._body(request, "update_original_webhook_message")
        if invalid is not None:
            return invalid
        if message_id == "@original" and log.original is not None and not log.original_deleted:
            log.original["flags"] &= ~LOADING
            _apply_edit(log.original, body)
            return _json(self._public(log.original))
        for message in log.followups:
            if message["id"] == message_id:
                _apply_edit(message, body)
                return _json(self._public(message))
        return self._error(404, 10008, "Unknown Message")


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer typed exactly `application/json`, as Discord sends (discord.py checks)."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def _apply_edit(message: dict[str, Any], body: dict[str, Any]) -> None:
    if "content" in body:
        message["content"] = body["content"] or ""
    if "embeds" in body:
        message["embeds"] = [_received_embed(e) for e in body["embeds"] or []]
    if "allowed_mentions" in body:
        message["allowed_mentions"] = body["allowed_mentions"]
    if "components" in body:
        message["components"] = body["components"] or []
    message["edited_timestamp"] = _iso()


def _received_embed(embed: dict[str, Any]) -> dict[str, Any]:
    """An embed as Discord stores it: `type: rich`, nothing else changed."""
    return {"type": "rich", **embed}


def _bucket_hash(bucket: str) -> str:
    return format(zlib.crc32(bucket.split(":")[0].encode()), "08x")
