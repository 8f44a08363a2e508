"""Posting to X as the team's account: `POST /2/tweets`, `DELETE /2/tweets/:id`.

Pictures are uploaded first (`plugins/x/media.py`) and attached by their media ids.

X takes no idempotency key, so a retry after a lost answer could post twice. The
publisher keeps a small journal (in the plugin's state in Starling's database) of every
idempotency key it has tried: before its first request it writes the key down;
when it sees the key again without a recorded result, it is a retry, and it first
reads the account's own posts since that attempt (`GET /2/users/me`, then
`GET /2/users/:id/tweets?start_time=…`). A post with the same text is the lost one:
it is returned instead of posting again. If that check cannot run (cap reached,
X down) the retry fails rather than risk a duplicate.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.clock import Clock
from bot.errors import Outcome, UpstreamError, UserError
from bot.pluginstate import KeyedJournal, PluginState
from bot.protocols import Draft, Preparation, Published
from plugins.x.api import Credential, XApi
from plugins.x.convert import expanded_text, is_tweet_id, is_username, permalink
from plugins.x.media import image_problems, upload_all
from plugins.x.source import PROFILE_HOSTS
from plugins.x.textlen import MAX_WEIGHTED_LENGTH, weighted_length

log = logging.getLogger(__name__)

CREATE = "POST /2/tweets"
DELETE = "DELETE /2/tweets/:id"
ME = "GET /2/users/me"
OWN_TIMELINE = "GET /2/users/:id/tweets"
JOURNAL_DAYS = 7
# X's clock and ours may differ a little; look back this much further than the attempt.
CLOCK_SLACK_S = 120.0


def _normal(text: str) -> str:
    """Text as X stores it, for comparison: NFC, whitespace runs collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


@dataclass(slots=True)
class _Attempt:
    text: str
    started: float  # epoch seconds
    native_id: str = ""


class Journal(KeyedJournal[_Attempt]):
    """Idempotency keys tried, with their text, start time and (once known) the post id.

    Entries `post:<key>` in the plugin's state. Releases before 0008 kept a JSON
    file (`<name>-posts.json`); it is imported on first use.
    """

    def __init__(self, state: PluginState, legacy_path: Path | None = None) -> None:
        super().__init__(
            state,
            prefix="post:",
            keep_s=JOURNAL_DAYS * 86400,
            encode=_encode,
            decode=lambda text: _decode(json.loads(text)),
            legacy=legacy_path,
            read_legacy=_read_legacy,
            label="x: post journal",
        )


def _read_legacy(path: Path) -> list[tuple[str, _Attempt, float]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    entries = [(str(key), _decode(value)) for key, value in raw.items()]
    return [(key, attempt, attempt.started) for key, attempt in entries]


def _decode(item: Any) -> _Attempt:
    return _Attempt(str(item["text"]), float(item["started"]), str(item.get("id", "")))


def _encode(attempt: _Attempt) -> str:
    return json.dumps({"text": attempt.text, "started": attempt.started, "id": attempt.native_id})


class XPublisher:
    """Also a `Preparer`: `/post` shows what X will get and refuses what X would refuse."""

    def __init__(self, api: XApi, clock: Clock, journal: Journal, *, account: str) -> None:
        self._api = api
        self._clock = clock
        self._journal = journal
        self._account = account
        self._me: tuple[str, str] | None = None  # (id, username)

    @property
    def account(self) -> str:
        """Who posts, for /accounts: the handle once X has told us, else the credential kind."""
        if self._me and self._me[1]:
            return f"@{self._me[1]}"
        return self._account

    def prepare(self, draft: Draft) -> Preparation:
        text = compose(draft)
        problems = []
        length = weighted_length(text)
        if not text:
            problems.append("an X post needs some text")
        elif length > MAX_WEIGHTED_LENGTH:
            problems.append(
                f"the post is {length} characters as X counts them (links 23, CJK and emoji "
                f"2); the limit is {MAX_WEIGHTED_LENGTH}"
            )
        problems += image_problems(draft.images)
        for label, value in (("reply", draft.reply_to), ("quote", draft.quote_of)):
            if value and not post_id(value):
                problems.append(f"the {label} target {value!r} is not an X post (x.com/…/status/…)")
        return Preparation(text, tuple(problems))

    async def publish(self, draft: Draft, idempotency_key: str) -> Published:
        preparation = self.prepare(draft)
        if preparation.problems:
            raise UserError("; ".join(preparation.problems))
        text = preparation.text
        now = self._clock.now().timestamp()
        attempt = await self._journal.get(idempotency_key)
        if attempt is not None and attempt.native_id:
            return self._published(attempt.native_id)
        retry = attempt is not None
        if attempt is not None:
            # Reading back costs reads: not while posting is held back anyway.
            self._api.check_limit(CREATE, Credential.USER)
            found = await self._find_posted(text, attempt.started)
            if found:
                await self._journal.put(idempotency_key, _Attempt(text, attempt.started, found))
                return self._published(found)
        else:
            attempt = _Attempt(text, now)
            await self._journal.put(idempotency_key, attempt)
        body: dict[str, Any] = {"text": text}
        if draft.images:
            # After the journal entry: a retry that finds the post uploads nothing.
            body["media"] = {"media_ids": await upload_all(self._api, draft.images)}
        if draft.reply_to:
            body["reply"] = {"in_reply_to_tweet_id": post_id(draft.reply_to)}
        if draft.quote_of:
            body["quote_tweet_id"] = post_id(draft.quote_of)
        try:
            answer = await self._api.request(
                "POST", CREATE, "/2/tweets", credential=Credential.USER, json_body=body
            )
        except UpstreamError as err:
            if not (retry and err.status == 403 and "duplicate content" in str(err)):
                raise
            # X has it although the read-back missed it (its timeline lagged): look again.
            found = await self._find_posted(text, attempt.started)
            if not found:
                raise
            await self._journal.put(idempotency_key, _Attempt(text, attempt.started, found))
            return self._published(found)
        data = answer.body.get("data")
        native_id = str(data.get("id", "")) if isinstance(data, dict) else ""
        if not is_tweet_id(native_id):
            raise UpstreamError(Outcome.PARSE, "X accepted the post but sent no post id")
        await self._journal.put(idempotency_key, _Attempt(text, attempt.started, native_id))
        return self._published(native_id)

    async def delete(self, native_id: str) -> None:
        if not is_tweet_id(native_id):
            raise UserError(f"{native_id!r} is not an X post id")
        answer = await self._api.request(
            "DELETE", DELETE, f"/2/tweets/{native_id}", credential=Credential.USER
        )
        data = answer.body.get("data")
        if not (isinstance(data, dict) and data.get("deleted") is True):
            raise UpstreamError(Outcome.PARSE, f"X did not confirm deleting post {native_id}")

    def _published(self, native_id: str) -> Published:
        username = self._me[1] if self._me else ""
        return Published(native_id, permalink(username, native_id))

    async def _whoami(self) -> tuple[str, str]:
        if self._me is None:
            answer = await self._api.request("GET", ME, "/2/users/me", credential=Credential.USER)
            data = answer.body.get("data")
            user_id = str(data.get("id", "")) if isinstance(data, dict) else ""
            username = str(data.get("username", "")) if isinstance(data, dict) else ""
            if not is_tweet_id(user_id):
                raise UpstreamError(Outcome.PARSE, "X did not say which account is posting")
            self._me = (user_id, username if is_username(username) else "")
        return self._me

    async def _find_posted(self, text: str, started: float) -> str:
        """The id of our own post with this text made since the attempt began, or ""."""
        user_id, _ = await self._whoami()
        since = datetime.fromtimestamp(started - CLOCK_SLACK_S, UTC)
        answer = await self._api.request(
            "GET",
            OWN_TIMELINE,
            f"/2/users/{user_id}/tweets",
            credential=Credential.USER,
            params={
                "start_time": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "max_results": "20",
                "tweet.fields": "created_at,entities,note_tweet",
            },
        )
        wanted = _normal(text)
        tweets = answer.body.get("data")
        for tweet in tweets if isinstance(tweets, list) else []:
            if isinstance(tweet, dict) and _normal(expanded_text(tweet)[0]) == wanted:
                return str(tweet.get("id", ""))
        return ""


def compose(draft: Draft) -> str:
    """The text X gets; X has no content warnings, so one becomes the first line."""
    text = draft.text.strip()
    warning = " ".join(draft.content_warning.split())
    return f"CW: {warning}\n\n{text}" if warning and text else text


def post_id(reference: str) -> str:
    """An X post id from an id or a post URL (x.com or twitter.com); "" if it is neither."""
    reference = reference.strip().strip("<>")
    if is_tweet_id(reference):
        return reference
    parts = urlsplit(reference if "://" in reference else f"https://{reference}")
    if (parts.hostname or "").lower() not in PROFILE_HOSTS:
        return ""
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) >= 3 and segments[1] == "status" and is_tweet_id(segments[2]):
        return segments[2]
    return ""
