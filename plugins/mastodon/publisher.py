"""Posting to the default instance with the configured token (`/post --to mastodon`).

Every post carries an `Idempotency-Key` derived from Starling's own key: Mastodon
remembers it for an hour and answers a repeat with the status it already made,
so a retry after a timeout never posts twice. `--reply` and `--quote` take a
post's link (or its id on this instance); links to other servers are resolved
through `/api/v2/search?resolve=true`, as any Mastodon app does. Images are
uploaded first (`POST /api/v2/media`, the alt text as `description`) and attached
by id; a retry uploads them again, which leaves at most an unattached copy that
Mastodon cleans up itself, never a second post.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import quote, urlsplit

from bot.errors import UserError
from bot.protocols import Draft, DraftImage, Preparation, Published
from plugins.mastodon.client import ApiError, InstanceClient
from plugins.mastodon.source import MastodonSource
from plugins.mastodon.statuses import full_acct

DEFAULT_MAX_CHARACTERS = 500
URL_WEIGHT = 23  # Mastodon counts every link as 23 characters
_URL = re.compile(r"https?://\S+")
_REMOTE_MENTION = re.compile(r"(@\w+)@[\w.-]+\w")
_LOCAL_STATUS_PATH = re.compile(r"^/(?:@[^/]+|users/[^/]+/statuses)/(\w+)/?$")


def idempotency_header(key: str) -> str:
    """A stable header value for a Starling key: same key, same value; reveals nothing."""
    return "starling-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


def mastodon_length(text: str) -> int:
    """Characters as Mastodon counts them: links weigh 23, mentions only their user part."""
    text = _URL.sub("x" * URL_WEIGHT, text)
    return len(_REMOTE_MENTION.sub(r"\1", text))


class MastodonPublisher:
    """`bot.protocols.Publisher` (and `Preparer`) for the default instance."""

    def __init__(self, source: MastodonSource) -> None:
        self._source = source
        self._acct = ""

    @property
    def _client(self) -> InstanceClient:
        return self._source.client(self._source.directory.default_domain)

    @property
    def account(self) -> str:
        """Shown by /accounts: the account once a post revealed it, else the instance."""
        domain = self._source.directory.default_domain
        return f"@{self._acct}" if self._acct else f"the token's account on {domain}"

    def _max_characters(self) -> int:
        info = self._source.cached_instance_info(self._source.directory.default_domain)
        statuses = ((info or {}).get("configuration") or {}).get("statuses") or {}
        value = statuses.get("max_characters") if isinstance(statuses, dict) else None
        return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_CHARACTERS

    def prepare(self, draft: Draft) -> Preparation:
        """The instance's limit (500 unless it said otherwise) checked before sending."""
        limit = self._max_characters()
        used = mastodon_length(draft.text) + len(draft.content_warning)
        preview = (
            f"CW: {draft.content_warning} — {draft.text}" if draft.content_warning else draft.text
        )
        problems = () if used <= limit else (f"{used} characters; this server allows {limit}",)
        return Preparation(preview, problems)

    async def publish(self, draft: Draft, idempotency_key: str) -> Published:
        return await self.post(
            draft.text,
            idempotency_key=idempotency_key,
            reply_to=draft.reply_to,
            quote_of=draft.quote_of,
            spoiler_text=draft.content_warning,
            images=draft.images,
        )

    async def post(
        self,
        text: str,
        *,
        idempotency_key: str,
        reply_to: str = "",
        quote_of: str = "",
        spoiler_text: str = "",
        images: tuple[DraftImage, ...] = (),
    ) -> Published:
        """`POST /api/v1/statuses`; a 422 (too long, bad reply) is the member's to fix."""
        form: dict[str, str | list[str]] = {"status": text}
        if images:
            form["media_ids[]"] = [await self._upload(image) for image in images]
        if reply_to:
            form["in_reply_to_id"] = await self._status_id(reply_to, "reply to")
        if quote_of:
            form["quoted_status_id"] = await self._status_id(quote_of, "quote")
        if spoiler_text:
            form["spoiler_text"] = spoiler_text
        client = self._client
        try:
            response = await client.request(
                "POST",
                "/api/v1/statuses",
                data=form,
                headers={"Idempotency-Key": idempotency_header(idempotency_key)},
                expect=dict,
            )
        except ApiError as err:
            if err.status == 422:
                reason = f": {err.error}" if err.error else ""
                raise UserError(f"{client.domain} refused the post{reason}") from None
            raise
        status: dict[str, Any] = response.data
        account = status.get("account")
        if isinstance(account, dict):
            self._acct = full_acct(account, client.domain)
        url = status.get("url") or status.get("uri") or ""
        return Published(native_id=str(status.get("id", "")), url=str(url))

    async def _upload(self, image: DraftImage) -> str:
        """`POST /api/v2/media` with the alt text as its description; the media id."""
        client = self._client
        name = "image." + (image.mime.rpartition("/")[2] or "bin")
        try:
            response = await client.request(
                "POST",
                "/api/v2/media",
                data={"description": image.alt} if image.alt else {},
                files={"file": (name, image.data, image.mime)},
                expect=dict,
            )
        except ApiError as err:
            if err.status == 422:
                reason = f": {err.error}" if err.error else ""
                raise UserError(f"{client.domain} refused the image{reason}") from None
            raise
        media_id = str(response.data.get("id", ""))
        if not media_id:
            raise UserError(f"{client.domain} did not say which id the image got")
        return media_id

    async def _status_id(self, reference: str, purpose: str) -> str:
        """A status id on this instance for a link, an id, or a link to another server."""
        reference = reference.strip().strip("<>")
        if reference.isalnum():
            return reference
        parts = urlsplit(reference)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(f"{reference!r} is not a post link to {purpose}")
        client = self._client
        local = _LOCAL_STATUS_PATH.match(parts.path)
        if local and (parts.netloc or "").lower() == client.domain:
            return local.group(1)
        params = {"q": reference, "type": "statuses", "resolve": "true", "limit": "1"}
        data = (await client.get("/api/v2/search", params, expect=dict)).data
        found = data.get("statuses") or []
        if not found or not isinstance(found[0], dict) or not found[0].get("id"):
            raise UserError(f"{client.domain} cannot find the post {reference} to {purpose}")
        return str(found[0]["id"])

    async def delete(self, native_id: str) -> None:
        """`DELETE /api/v1/statuses/:id`; a status that is already gone counts as deleted."""
        try:
            await self._client.request(
                "DELETE", f"/api/v1/statuses/{quote(native_id, safe='')}", expect=dict
            )
        except ApiError as err:
            if err.status != 404:
                raise
