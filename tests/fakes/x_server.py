"""A local X API v2 on a random loopback port, for Starling's real httpx client to talk to.

Built from two sources in `tests/fixtures/x/`:

- the real recorded exchanges (tweepy's cassettes): they seed the world (the
  @Twitter and @TweepyDev accounts, their posts, the posts a "Tweepy" search found)
  and give every answer its recorded headers (`api-version`, `x-access-level`, the
  `x-rate-limit-*` limits of each endpoint, …) and gzip encoding;
- X's published OpenAPI description (the subset Starling uses): every request's
  path and query parameters and every JSON body are checked against it, a
  violation is answered with X's 400 `invalid-request` problem, and every answer
  the fake builds is checked against the response schema (`schema_errors`).

Tests change the world (`add_user`, `tweet`, `suspend`) and inject faults: any
status with any headers (`fail`), a stall longer than the client's timeout
(`stall`), a post whose answer is lost after it was made (`lose_next_create`),
exhausted rate limits (`exhaust`). Authentication is checked like X does: the app's
bearer token, an OAuth 2.0 user token, or OAuth 1.0a whose HMAC-SHA1 signature is
verified here from RFC 5849 (nonce reuse and stale timestamps refused).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import hmac
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "x"
SPEC: dict[str, Any] = json.loads((FIXTURES / "openapi-subset.json").read_text(encoding="utf-8"))
# The media upload operations, cut from the same description (see openapi-media.json).
_MEDIA_SPEC: dict[str, Any] = json.loads(
    (FIXTURES / "openapi-media.json").read_text(encoding="utf-8")
)
SPEC["paths"].update(_MEDIA_SPEC["paths"])
SPEC["components"]["schemas"].update(_MEDIA_SPEC["components"]["schemas"])
PROBLEMS = "https://api.x.com/2/problems"
TWITTER_EPOCH_MS = 1288834974657

BEARER = "AAAA-fake-app-bearer-token"
USER_TOKEN = "fake-oauth2-user-access-token"
CONSUMER_KEY = "fake-consumer-key"
CONSUMER_SECRET = "fake-consumer-secret"
ACCESS_TOKEN = "1072250532645998596-fake-access-token"
ACCESS_TOKEN_SECRET = "fake-access-token-secret"

# Recorded headers worth replaying; dates, cookies and sizes are made afresh.
_REPLAYED_HEADERS = (
    "api-version",
    "cache-control",
    "content-disposition",
    "content-type",
    "server",
    "strict-transport-security",
    "x-access-level",
    "x-content-type-options",
    "x-frame-options",
    "x-xss-protection",
)


def load_cassettes() -> list[dict[str, Any]]:
    """Every recorded interaction, with its response body decoded to text."""
    interactions = []
    for path in sorted((FIXTURES / "cassettes").glob("*.json")):
        for item in json.loads(path.read_text(encoding="utf-8"))["interactions"]:
            body = item["response"]["body"]
            if "base64" in body:
                text = gzip.decompress(base64.b64decode(body["base64"])).decode("utf-8")
            else:
                text = body["string"]
            interactions.append({**item, "cassette": path.stem, "body_text": text})
    return interactions


# --- OAuth 1.0a (RFC 5849, section 3.4) ------------------------------------------------


def oauth_encode(value: str) -> str:
    """RFC 5849 3.6: percent-encode everything but ALPHA, DIGIT, '-', '.', '_', '~'."""
    return quote(value, safe="~")


def signature_base_string(method: str, base_uri: str, params: list[tuple[str, str]]) -> str:
    encoded = sorted((oauth_encode(k), oauth_encode(v)) for k, v in params)
    normalized = "&".join(f"{k}={v}" for k, v in encoded)
    return "&".join((method.upper(), oauth_encode(base_uri), oauth_encode(normalized)))


def hmac_sha1_signature(base_string: str, consumer_secret: str, token_secret: str) -> str:
    key = f"{oauth_encode(consumer_secret)}&{oauth_encode(token_secret)}"
    digest = hmac.new(key.encode(), base_string.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def parse_oauth_header(header: str) -> dict[str, str]:
    if not header.startswith("OAuth "):
        return {}
    return {unquote(k): unquote(v) for k, v in re.findall(r'([A-Za-z0-9_]+)="([^"]*)"', header[6:])}


# --- a small JSON-schema checker for the OpenAPI subset ----------------------------------


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        _, _, kind, name = schema["$ref"].split("/")
        schema = SPEC["components"][kind][name]
    return schema


def schema_problems(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Where `value` breaks `schema` (the keywords X's description uses); empty when fine."""
    schema = _resolve(schema)
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null"]
    if "oneOf" in schema:
        options = [schema_problems(value, option, where) for option in schema["oneOf"]]
        return [] if any(not o for o in options) else [f"{where}: matches no oneOf option"]
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if kind in checks and not checks[kind](value):
        return [f"{where}: expected {kind}, got {type(value).__name__}"]
    problems: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{where}: longer than {schema['maxLength']}")
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where}: {value} is below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where}: {value} is above {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{where}: fewer than {schema['minItems']} items")
        if schema.get("uniqueItems") and len({json.dumps(v) for v in value}) != len(value):
            problems.append(f"{where}: items repeat")
        for i, item in enumerate(value):
            problems += schema_problems(item, schema.get("items", {}), f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{where}: missing {name}")
        for name, item in value.items():
            if name in props:
                problems += schema_problems(item, props[name], f"{where}.{name}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{where}: unexpected property {name}")
    return problems


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]

    @property
    def endpoint(self) -> str:
        return f"{self.method} " + re.sub(r"\{(\w+)\}", r":\1", self.template)

    def parameters(self) -> list[dict[str, Any]]:
        return [_resolve(p) for p in self.spec.get("parameters", [])]

    def response_schema(self, status: int) -> dict[str, Any] | None:
        answer = self.spec["responses"].get(str(status))
        if answer is None:
            return None
        return answer["content"]["application/json"]["schema"]  # type: ignore[no-any-return]

    def security(self) -> set[str]:
        return {name for option in self.spec.get("security", []) for name in option}


def _operations() -> list[Operation]:
    ops = []
    for template, methods in SPEC["paths"].items():
        regex = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
        for method, spec in methods.items():
            ops.append(Operation(method.upper(), template, re.compile(regex), spec))
    # Literal paths (/2/users/me) before templates that would also match them.
    ops.sort(key=lambda op: op.template.count("{"))
    return ops


OPERATIONS = _operations()


def _param_problems(op: Operation, path_args: dict[str, str], query: dict[str, str]) -> list[str]:
    problems = []
    known = {p["name"]: p for p in op.parameters()}
    for name in query:
        if name not in known or known[name]["in"] != "query":
            allowed = sorted(n for n, p in known.items() if p["in"] == "query")
            problems.append(f"The query parameter [{name}] is not one of {allowed}")
    for name, param in known.items():
        raw = path_args.get(name) if param["in"] == "path" else query.get(name)
        if raw is None:
            if param.get("required"):
                problems.append(f"The `{name}` parameter is missing.")
            continue
        schema = _resolve(param["schema"])
        value: Any = raw
        if schema.get("type") == "array":
            value = raw.split(",")
        elif schema.get("type") == "integer":
            value = int(raw) if re.fullmatch(r"-?\d+", raw) else raw
        for problem in schema_problems(value, schema, name):
            problems.append(f"The `{name}` parameter value [{raw}] is invalid: {problem}")
    return problems


# --- the world --------------------------------------------------------------------------


@dataclass(slots=True)
class Fault:
    method: str
    path_prefix: str
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    stall_s: float = 0.0
    times: int = 1


@dataclass(slots=True)
class RateWindow:
    limit: int
    remaining: int
    reset: int


class XServer:
    """The fake API: a small world of users and posts, served over real HTTP."""

    def __init__(self) -> None:
        self.recorded = load_cassettes()
        self.users: dict[str, dict[str, Any]] = {}
        self.suspended: set[str] = set()
        self.tweets: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        # Uploads by media id: bytes, category, alt text, the post they went into.
        self.uploads: dict[str, dict[str, Any]] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.schema_errors: list[str] = []
        self.oauth1_verified = 0
        self._faults: list[Fault] = []
        self._lose_next_create = 0.0
        self._lagging = 0
        self._nonces: set[tuple[str, str]] = set()
        self._windows: dict[str, RateWindow] = {}
        self._headers: dict[str, dict[str, str]] = {}
        self._seq = itertools.count(1)
        self._media_seq = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.posting_user_id = ""
        self._seed()

    # world building

    def _seed(self) -> None:
        for item in self.recorded:
            uri = item["request"]["uri"].removeprefix("https://api.twitter.com")
            method = item["request"]["method"]
            body = json.loads(item["body_text"])
            op, _ = self._match(method, uri.split("?")[0])
            if op is not None:
                headers = {k.lower(): v[0] for k, v in item["response"]["headers"].items()}
                self._headers.setdefault(op.endpoint, headers)
            data = body.get("data")
            if uri.startswith("/2/users/by/username/") or uri == "/2/users/me":
                self.users[data["id"]] = dict(data)
                if uri == "/2/users/me":
                    self.posting_user_id = data["id"]
            elif re.fullmatch(r"/2/users/\d+/tweets", uri):
                owner = uri.split("/")[3]
                for tweet in data:
                    self.tweets[tweet["id"]] = {**tweet, "author_id": owner}
            elif method == "GET" and isinstance(data, list):
                for tweet in data:  # recorded without their authors
                    self.tweets.setdefault(tweet["id"], dict(tweet))

    def add_user(
        self, username: str, name: str = "", *, protected: bool = False, avatar: str = ""
    ) -> dict[str, Any]:
        user_id = str(10_000 + len(self.users))
        user = {"id": user_id, "name": name or username.title(), "username": username}
        user["protected"] = protected
        user["profile_image_url"] = avatar or f"https://pbs.twimg.com/profile_images/{user_id}.jpg"
        self.users[user_id] = user
        return user

    def user(self, username: str) -> dict[str, Any]:
        for user in self.users.values():
            if user["username"].lower() == username.lower():
                return user
        raise KeyError(username)

    def suspend(self, username: str) -> None:
        self.suspended.add(username.lower())

    def new_id(self) -> str:
        millis = int(time.time() * 1000) - TWITTER_EPOCH_MS
        return str((millis << 22) | (next(self._seq) & 0x3FFFFF))

    def tweet(
        self,
        username: str,
        text: str,
        *,
        links: dict[str, str] | None = None,
        photos: list[tuple[str, str]] | None = None,
        video: str = "",
        note: str = "",
        reply_to: str = "",
        retweet_of: str = "",
        quote_of: str = "",
        edit_of: str = "",
    ) -> dict[str, Any]:
        """Add a post in wire format: t.co entities, media, references, edit history."""
        author = self.user(username)
        tweet_id = self.new_id()
        urls = []
        for short, expanded in (links or {}).items():
            start = text.index(short)
            display = expanded.split("://", 1)[-1][:27]
            urls.append(
                {"start": start, "end": start + len(short), "url": short,
                 "expanded_url": expanded, "display_url": display}
            )  # fmt: skip
        media_keys = []
        for url, alt in photos or []:
            key = f"3_{next(self._media_seq)}"
            self.media[key] = {"media_key": key, "type": "photo", "url": url, "alt_text": alt}
            media_keys.append(key)
        if video:
            key = f"7_{next(self._media_seq)}"
            self.media[key] = {"media_key": key, "type": "video", "preview_image_url": video}
            media_keys.append(key)
        if media_keys:
            short = f"https://t.co/m{tweet_id[-6:]}"
            start = len(text) + 1
            text = f"{text} {short}"
            urls.append(
                {"start": start, "end": start + len(short), "url": short,
                 "expanded_url": f"https://x.com/{username}/status/{tweet_id}/photo/1",
                 "display_url": "pic.x.com/abc", "media_key": media_keys[0]}
            )  # fmt: skip
        tweet: dict[str, Any] = {
            "id": tweet_id,
            "text": text,
            "author_id": author["id"],
            "created_at": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "edit_history_tweet_ids": [tweet_id],
        }
        if urls:
            tweet["entities"] = {"urls": urls}
        if media_keys:
            tweet["attachments"] = {"media_keys": media_keys}
        if note:
            tweet["note_tweet"] = {"text": note}
        refs = [
            {"type": kind, "id": target}
            for kind, target in (
                ("replied_to", reply_to),
                ("retweeted", retweet_of),
                ("quoted", quote_of),
            )
            if target
        ]
        if refs:
            tweet["referenced_tweets"] = refs
        if edit_of:
            history = self.tweets[edit_of]["edit_history_tweet_ids"]
            tweet["edit_history_tweet_ids"] = [*history, tweet_id]
            for old in history:
                self.tweets.pop(old, None)
        self.tweets[tweet_id] = tweet
        return tweet

    def timeline(self, user_id: str) -> list[dict[str, Any]]:
        own = [t for t in self.tweets.values() if t.get("author_id") == user_id]
        return sorted(own, key=lambda t: int(t["id"]), reverse=True)

    # fault injection

    def fail(
        self,
        method: str,
        path_prefix: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        times: int = 1,
    ) -> None:
        self._faults.append(Fault(method, path_prefix, status, headers or {}, body, 0.0, times))

    def stall(self, method: str, path_prefix: str, seconds: float, *, times: int = 1) -> None:
        self._faults.append(Fault(method, path_prefix, 0, {}, None, seconds, times))

    def lag_timelines(self, times: int = 1) -> None:
        """The next `times` timeline reads miss the newest post, as X's index can lag."""
        self._lagging = times

    def lose_next_create(self, stall_s: float = 5.0) -> None:
        """Make the next post, then keep its answer back until the client gives up."""
        self._lose_next_create = stall_s

    def set_remaining(
        self, endpoint: str, remaining: int, *, reset_in_s: int = 60, who: str = "app"
    ) -> None:
        """Set an endpoint's rate-limit window; at 0 left, requests get 429 until the reset."""
        window = self._window(endpoint, who)
        window.remaining = remaining
        window.reset = int(time.time()) + reset_in_s

    def requests_to(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    # HTTP

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _match(self, method: str, path: str) -> tuple[Operation | None, dict[str, str]]:
        for op in OPERATIONS:
            found = op.pattern.match(path)
            if op.method == method and found:
                return op, found.groupdict()
        return None, {}

    def _window(self, endpoint: str, who: str) -> RateWindow:
        """The rate-limit window of one endpoint and identity, sized as recorded."""
        window = self._windows.get(f"{endpoint} {who}")
        if window is None or window.reset <= time.time():
            recorded = self._headers.get(endpoint, {})
            limit = int(recorded.get("x-rate-limit-limit", "300"))
            window = RateWindow(limit, limit, int(time.time()) + 900)
            self._windows[f"{endpoint} {who}"] = window
        return window

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        query = dict(request.query)
        self.requests.append(
            {"method": request.method, "path": request.path, "query": query,
             "headers": dict(request.headers), "body": body}
        )  # fmt: skip
        self.hits[f"{request.method} {request.path}"] += 1
        op, args = self._match(request.method, request.path)
        if op is None:
            return self._problem(404, "Not Found", "Sorry, that page does not exist", "about:blank")
        for fault in self._faults:
            if fault.method == request.method and request.path.startswith(fault.path_prefix):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                if fault.stall_s:
                    await asyncio.sleep(fault.stall_s)
                    break
                payload = fault.body if fault.body is not None else json.dumps(
                    {"title": "Service Unavailable", "detail": "Service Unavailable",
                     "type": "about:blank", "status": fault.status}
                ).encode()  # fmt: skip
                return web.Response(status=fault.status, body=payload, headers=fault.headers)
        who = self._authenticate(request, query)
        if who is None:
            return self._problem(401, "Unauthorized", "Unauthorized", "about:blank")
        if who == "app" and "BearerToken" not in op.security():
            return self._problem(
                403,
                "Unsupported Authentication",
                "Authenticating with OAuth 2.0 Application-Only is forbidden for this "
                "endpoint. Supported authentication types are [OAuth 1.0a User Context, "
                "OAuth 2.0 User Context].",
                f"{PROBLEMS}/unsupported-authentication",
            )
        window = self._window(op.endpoint, who)
        if window.remaining <= 0:
            too_many = {"title": "Too Many Requests", "detail": "Too Many Requests"}
            too_many |= {"type": "about:blank", "status": 429}
            return self._answer(op, 429, too_many, window, request)
        window.remaining -= 1
        problems = _param_problems(op, args, query)
        json_body: Any = None
        if request.method == "POST":
            try:
                json_body = json.loads(body or b"null")
            except ValueError:
                problems.append("Request body is not valid JSON.")
            else:
                schema = op.spec["requestBody"]["content"]["application/json"]["schema"]
                problems += schema_problems(json_body, schema, "body")
        if problems:
            return self._answer(
                op,
                400,
                {
                    "errors": [{"parameters": {}, "message": p} for p in problems],
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "type": f"{PROBLEMS}/invalid-request",
                },
                window,
                request,
            )
        handler = {
            "GET /2/users/by/username/:username": self._user_by_username,
            "GET /2/users/me": self._me,
            "GET /2/users/:id/tweets": self._user_tweets,
            "GET /2/tweets/search/recent": self._search,
            "POST /2/tweets": self._create,
            "DELETE /2/tweets/:id": self._delete,
            "POST /2/media/upload": self._upload,
            "POST /2/media/metadata": self._metadata,
        }[op.endpoint]
        status, payload = handler(args, query, json_body)
        if op.endpoint == "POST /2/tweets" and status == 201 and self._lose_next_create:
            stall, self._lose_next_create = self._lose_next_create, 0.0
            await asyncio.sleep(stall)
        return self._answer(op, status, payload, window, request)

    def _authenticate(self, request: web.Request, query: dict[str, str]) -> str | None:
        header = request.headers.get("Authorization", "")
        if header == f"Bearer {BEARER}":
            return "app"
        if header == f"Bearer {USER_TOKEN}":
            return "user"
        params = parse_oauth_header(header)
        if not params:
            return None
        signature = params.pop("oauth_signature", "")
        params.pop("realm", None)
        if (
            params.get("oauth_consumer_key") != CONSUMER_KEY
            or params.get("oauth_token") != ACCESS_TOKEN
            or params.get("oauth_signature_method") != "HMAC-SHA1"
            or params.get("oauth_version", "1.0") != "1.0"
            or abs(int(params.get("oauth_timestamp", "0")) - time.time()) > 300
        ):
            return None
        nonce = (params.get("oauth_timestamp", ""), params.get("oauth_nonce", ""))
        if not nonce[1] or nonce in self._nonces:
            return None
        base_uri = f"{request.scheme}://{request.host.lower()}{request.path}"
        pairs = list(request.query.items()) + list(params.items())
        expected = hmac_sha1_signature(
            signature_base_string(request.method, base_uri, pairs),
            CONSUMER_SECRET,
            ACCESS_TOKEN_SECRET,
        )
        if not hmac.compare_digest(expected, signature):
            return None
        self._nonces.add(nonce)
        self.oauth1_verified += 1
        return "user"

    def _problem(self, status: int, title: str, detail: str, kind: str) -> web.Response:
        payload = {"title": title, "detail": detail, "type": kind, "status": status}
        return web.json_response(payload, status=status)

    def _answer(
        self,
        op: Operation,
        status: int,
        payload: dict[str, Any],
        window: RateWindow,
        request: web.Request,
    ) -> web.Response:
        schema = op.response_schema(status)
        if schema is not None:
            self.schema_errors += [f"{op.endpoint}: {p}" for p in schema_problems(payload, schema)]
        headers = {
            k: v for k, v in self._headers.get(op.endpoint, {}).items() if k in _REPLAYED_HEADERS
        }
        headers["content-type"] = "application/json; charset=utf-8"
        headers["x-rate-limit-limit"] = str(window.limit)
        headers["x-rate-limit-remaining"] = str(max(window.remaining, 0))
        headers["x-rate-limit-reset"] = str(window.reset)
        if status == 201 and op.endpoint == "POST /2/tweets":
            headers["location"] = f"{self.url}/2/tweets/{payload['data']['id']}"
        raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            raw = gzip.compress(raw)
            headers["content-encoding"] = "gzip"
        return web.Response(status=status, body=raw, headers=headers)

    # endpoints

    def _not_found(self, kind: str, parameter: str, value: str, detail: str) -> dict[str, Any]:
        return {"errors": [{"value": value, "detail": detail, "title": "Not Found Error",
                            "resource_type": kind, "parameter": parameter, "resource_id": value,
                            "type": f"{PROBLEMS}/resource-not-found"}]}  # fmt: skip

    def _project_user(self, user: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        wanted = {"id", "name", "username", *query.get("user.fields", "").split(",")}
        return {k: v for k, v in user.items() if k in wanted}

    def _user_by_username(
        self, args: dict[str, str], query: dict[str, str], _: Any
    ) -> tuple[int, dict[str, Any]]:
        name = args["username"]
        if name.lower() in self.suspended:
            problem = self._not_found(
                "user", "username", name, f"User has been suspended: [{name}]."
            )
            problem["errors"][0]["title"] = "Forbidden"
            return 200, problem
        try:
            user = self.user(name)
        except KeyError:
            return 200, self._not_found(
                "user", "username", name, f"Could not find user with username: [{name}]."
            )
        return 200, {"data": self._project_user(user, query)}

    def _me(
        self, args: dict[str, str], query: dict[str, str], _: Any
    ) -> tuple[int, dict[str, Any]]:
        return 200, {"data": self._project_user(self.users[self.posting_user_id], query)}

    def _user_tweets(
        self, args: dict[str, str], query: dict[str, str], _: Any
    ) -> tuple[int, dict[str, Any]]:
        user_id = args["id"]
        if user_id not in self.users:
            return 200, self._not_found(
                "user", "id", user_id, f"Could not find user with id: [{user_id}]."
            )
        if self.users[user_id]["username"].lower() in self.suspended:
            problem = self._not_found(
                "user", "id", user_id, f"User has been suspended: [{user_id}]."
            )
            return 200, problem
        tweets = self.timeline(user_id)
        if self._lagging:
            self._lagging -= 1
            tweets = tweets[1:]
        return 200, self._page(tweets, query, default_max=10)

    def _search(
        self, args: dict[str, str], query: dict[str, str], _: Any
    ) -> tuple[int, dict[str, Any]]:
        since = query.get("since_id")
        if since and datetime.now(UTC) - _minted(since) > timedelta(days=7):
            # Recent search reaches back 7 days, and so must its since_id.
            message = (
                f"Invalid 'since_id':'{since}'. 'since_id' must be a tweet id created "
                "within the last 7 days."
            )
            return 400, {
                "errors": [{"parameters": {"since_id": [since]}, "message": message}],
                "title": "Invalid Request",
                "detail": "One or more parameters to your request was invalid.",
                "type": f"{PROBLEMS}/invalid-request",
            }
        alternatives = [a.split() for a in query["query"].split(" OR ")]

        def matches(tweet: dict[str, Any]) -> bool:
            author = self.users.get(tweet.get("author_id", ""), {}).get("username", "").lower()
            text = tweet["text"].lower()
            return any(
                all(
                    author == t[5:].lower() if t.lower().startswith("from:") else t.lower() in text
                    for t in terms
                )
                for terms in alternatives
            )

        found = sorted(
            (t for t in self.tweets.values() if matches(t)),
            key=lambda t: int(t["id"]),
            reverse=True,
        )
        return 200, self._page(found, query, default_max=10)

    def _page(
        self, tweets: list[dict[str, Any]], query: dict[str, str], *, default_max: int
    ) -> dict[str, Any]:
        if "since_id" in query:
            tweets = [t for t in tweets if int(t["id"]) > int(query["since_id"])]
        if "start_time" in query:
            start = datetime.fromisoformat(query["start_time"].replace("Z", "+00:00"))
            tweets = [t for t in tweets if _minted(t["id"]) >= start]
        token = query.get("pagination_token") or query.get("next_token")
        if token:
            # The next page starts at the post the previous page's next_token named.
            ids = [t["id"] for t in tweets]
            start = token.removeprefix("fake")
            tweets = tweets[ids.index(start) :] if start in ids else []
        limit = int(query.get("max_results", default_max))
        page, rest = tweets[:limit], tweets[limit:]
        if not page:
            return {"meta": {"result_count": 0}}
        body: dict[str, Any] = {"data": [self._project_tweet(t, query) for t in page]}
        includes = self._includes(page, query)
        if includes:
            body["includes"] = includes
        meta: dict[str, Any] = {
            "newest_id": page[0]["id"],
            "oldest_id": page[-1]["id"],
            "result_count": len(page),
        }
        if rest:
            meta["next_token"] = f"fake{rest[0]['id']}"
        body["meta"] = meta
        return body

    def _project_tweet(self, tweet: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        wanted = {"id", "text", "edit_history_tweet_ids", *query.get("tweet.fields", "").split(",")}
        return {k: v for k, v in tweet.items() if k in wanted}

    def _includes(self, page: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
        expansions = set(query.get("expansions", "").split(","))
        refs = [
            self.tweets[r["id"]]
            for t in page
            for r in t.get("referenced_tweets", [])
            if "referenced_tweets.id" in expansions and r["id"] in self.tweets
        ]
        authors = [t.get("author_id") for t in page] if "author_id" in expansions else []
        if "referenced_tweets.id.author_id" in expansions:
            authors += [t.get("author_id") for t in refs]
        media_of = list(page) if "attachments.media_keys" in expansions else []
        if "referenced_tweets.id.attachments.media_keys" in expansions:
            media_of += refs
        keys = [k for t in media_of for k in t.get("attachments", {}).get("media_keys", [])]
        includes: dict[str, Any] = {}
        users = [
            self._project_user(self.users[a], query)
            for a in dict.fromkeys(authors)
            if a in self.users
        ]
        if users:
            includes["users"] = users
        wanted_media = {"media_key", "type", *query.get("media.fields", "").split(",")}
        media = [{k: v for k, v in self.media[key].items() if k in wanted_media}
                 for key in dict.fromkeys(keys) if key in self.media]  # fmt: skip
        if media:
            includes["media"] = media
        if refs:
            includes["tweets"] = [self._project_tweet(t, query) for t in refs]
        return includes

    def _create(
        self, args: dict[str, str], query: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any]]:
        me = self.users[self.posting_user_id]["username"]
        submitted = body.get("text", "")
        recent = self.timeline(self.posting_user_id)[:20]
        if any(t.get("_submitted") == submitted for t in recent):
            return 403, {"detail": "You are not allowed to create a Tweet with duplicate content.",
                         "type": "about:blank", "title": "Forbidden", "status": 403}  # fmt: skip
        # As X stores it: every URL wrapped in t.co, and &, <, > escaped.
        text, links = "", {}
        for n, part in enumerate(re.split(r"(https?://\S+)", submitted)):
            if n % 2:
                short = f"https://t.co/{hashlib.sha1(part.encode()).hexdigest()[:10]}"
                links[short] = part
                text += short
            else:
                text += part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        media_ids = body.get("media", {}).get("media_ids", [])
        if len(media_ids) > 4 or any(
            self.uploads.get(m, {}).get("tweet_id", "-") != "" for m in media_ids
        ):
            return 400, {"errors": [{"parameters": {"media.media_ids": media_ids},
                                     "message": "Your media IDs are invalid."}],
                         "title": "Invalid Request",
                         "detail": "One or more parameters to your request was invalid.",
                         "type": f"{PROBLEMS}/invalid-request"}  # fmt: skip
        tweet = self.tweet(
            me,
            text,
            links=links,
            photos=[
                (f"https://pbs.twimg.com/media/{m}.jpg", self.uploads[m]["alt_text"])
                for m in media_ids
            ],
            reply_to=body.get("reply", {}).get("in_reply_to_tweet_id", ""),
            quote_of=body.get("quote_tweet_id", ""),
        )
        tweet["_submitted"] = submitted
        for media_id in media_ids:
            self.uploads[media_id]["tweet_id"] = tweet["id"]
        return 201, {"data": {"id": tweet["id"], "text": tweet["text"]}}

    def _delete(
        self, args: dict[str, str], query: dict[str, str], _: Any
    ) -> tuple[int, dict[str, Any]]:
        tweet = self.tweets.get(args["id"])
        if tweet is None or tweet.get("author_id") != self.posting_user_id:
            return 200, {"data": {"deleted": False}}
        del self.tweets[args["id"]]
        return 200, {"data": {"deleted": True}}

    def _upload(
        self, args: dict[str, str], query: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any]]:
        """The one-shot upload with the picture base64-encoded in the JSON body."""
        try:
            data = base64.b64decode(body["media"], validate=True)
        except (ValueError, TypeError):
            data = b""
        kinds = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif"}
        kind = next((k for magic, k in kinds.items() if data.startswith(magic)), "")
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            kind = "image/webp"
        if not kind or not body["media_category"].endswith("_image"):
            return 400, {"errors": [{"parameters": {}, "message": "media type unrecognized."}],
                         "title": "Invalid Request", "detail": "media type unrecognized.",
                         "type": f"{PROBLEMS}/invalid-request"}  # fmt: skip
        media_id = self.new_id()
        self.uploads[media_id] = {"data": data, "category": body["media_category"],
                                  "mime": kind, "alt_text": "", "tweet_id": ""}  # fmt: skip
        return 200, {"data": {"id": media_id, "media_key": f"3_{media_id}", "size": len(data),
                              "expires_after_secs": 86400,
                              "image": {"image_type": kind, "w": 1, "h": 1}}}  # fmt: skip

    def _metadata(
        self, args: dict[str, str], query: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any]]:
        upload = self.uploads.get(body["id"])
        if upload is None:
            return 400, self._not_found("media", "id", body["id"], "Media not found.")
        alt = body.get("metadata", {}).get("alt_text")
        if alt is not None:
            upload["alt_text"] = alt["text"]
        return 200, {"data": {"id": body["id"], "associated_metadata": body.get("metadata", {})}}


def _minted(tweet_id: str) -> datetime:
    return datetime.fromtimestamp(((int(tweet_id) >> 22) + TWITTER_EPOCH_MS) / 1000, UTC)


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[XServer]:
    """A started fake; on exit, every answer it built must have matched X's schema."""
    server = XServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    assert not server.schema_errors, server.schema_errors


class ShiftedClock:
    """Real time plus an offset tests can move forward (rate-limit resets, the next day)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def plugin_config(server: XServer, *, oauth1: bool = False, **options: Any) -> dict[str, Any]:
    """The `[x]` table pointing Starling at `server`, as env variables would give it."""
    config: dict[str, Any] = {
        "api_url": server.url,
        "bearer_token": BEARER,
        "min_interval_s": "0",
        "timeout_s": "2",
    }
    if oauth1:
        config |= {
            "consumer_key": CONSUMER_KEY,
            "consumer_secret": CONSUMER_SECRET,
            "access_token": ACCESS_TOKEN,
            "access_token_secret": ACCESS_TOKEN_SECRET,
        }
    return config | {k: str(v) for k, v in options.items()}
