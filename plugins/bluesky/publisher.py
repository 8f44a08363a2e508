"""Posting to Bluesky on the team's behalf, exactly once per idempotency key.

The record key (rkey) is derived from the idempotency key, so a retry after a
timeout or a crash addresses the same record: Starling first asks whether the
record already exists (`getRecord`), and after a failed `createRecord` asks
again before giving up, because a write can succeed even when its answer is lost.

Images are uploaded as blobs (`com.atproto.repo.uploadBlob`) and embedded with
their alt text (`app.bsky.embed.images`); with a quote as well, both go into an
`app.bsky.embed.recordWithMedia`. Images take the place of a link card.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from bot.errors import Outcome, UserError
from bot.protocols import Draft, DraftImage, Preparation, Published
from plugins.bluesky.ids import (
    is_did,
    permalink,
    post_ref_from_input,
    post_uri,
    split_at_uri,
    tid_from_key,
)
from plugins.bluesky.lexicon import (
    POST_COLLECTION,
    Empty,
    Posts,
    PostView,
    ResolvedHandle,
    StoredRecord,
    UploadedBlob,
    WrittenRecord,
    reply_of,
)
from plugins.bluesky.linkcard import PageReader
from plugins.bluesky.richtext import build_facets, check_length, length_problems
from plugins.bluesky.session import Sessions
from plugins.bluesky.xrpc import Xrpc, XrpcError

log = logging.getLogger(__name__)


def post_text(draft: Draft) -> str:
    """Bluesky has no free-text content warning: it goes first, as people write it there."""
    text = draft.text.strip()
    warning = " ".join(draft.content_warning.split())
    return f"CW: {warning}\n\n{text}" if warning else text


class BlueskyPublisher:
    """`Publisher` and `Preparer`; exists only when an account is configured."""

    def __init__(
        self,
        *,
        service: Xrpc,
        appview: Xrpc,
        sessions: Sessions,
        web_url: str,
        account: str,
        cards: PageReader | None = None,
    ) -> None:
        self._cards = cards  # None: no link cards (`link_cards = false`)
        self._service = service
        self._appview = appview
        self._sessions = sessions
        self._web_url = web_url
        self.account = account  # shown by /accounts

    def prepare(self, draft: Draft) -> Preparation:
        text = post_text(draft)
        return Preparation(text, tuple(length_problems(text)))

    async def publish(self, draft: Draft, idempotency_key: str) -> Published:
        text = post_text(draft)
        check_length(text)
        if not idempotency_key:
            raise ValueError("an idempotency key is required")
        did = await self._sessions.did()
        handle = await self._sessions.handle()
        rkey = tid_from_key(idempotency_key)
        published = Published(post_uri(did, rkey), permalink(self._web_url, handle, did, rkey))
        if await self._exists(did, rkey):
            return published
        record: dict[str, Any] = {
            "$type": POST_COLLECTION,
            "text": text,
            "createdAt": _now_iso(),
        }
        facets = await build_facets(text, self._resolve_handle)
        if facets:
            record["facets"] = facets
        if draft.reply_to:
            record["reply"] = await self._reply_ref(draft.reply_to)
        quote: dict[str, Any] | None = None
        if draft.quote_of:
            quoted = await self._post(draft.quote_of)
            quote = {
                "$type": "app.bsky.embed.record",
                "record": {"uri": quoted.uri, "cid": quoted.cid},
            }
        if draft.images:
            media = await self._images_embed(draft.images)
            record["embed"] = (
                {"$type": "app.bsky.embed.recordWithMedia", "record": quote, "media": media}
                if quote
                else media
            )
        elif quote:
            record["embed"] = quote
        elif (link := first_link(facets)) and self._cards is not None:
            card = await self._link_card(link)
            if card is not None:
                record["embed"] = card
        body = {"repo": did, "collection": POST_COLLECTION, "rkey": rkey, "record": record}

        async def create(token: str) -> WrittenRecord:
            return await self._service.procedure(
                "com.atproto.repo.createRecord", body, WrittenRecord, token=token
            )

        try:
            await self._sessions.call(create)
        except XrpcError as err:
            # A lost answer or a second writer: the record may be there all the same.
            if err.outcome in (Outcome.AUTH, Outcome.RATE_LIMITED) or not await self._exists(
                did, rkey
            ):
                raise
        return published

    async def delete(self, native_id: str) -> None:
        try:
            repo, collection, rkey = split_at_uri(native_id)
        except ValueError:
            raise UserError(f"{native_id!r} is not a Bluesky post address (at://…)") from None
        did = await self._sessions.did()
        if repo != did or collection != POST_COLLECTION:
            raise UserError("Starling can only delete posts it made with its own account")
        body = {"repo": did, "collection": collection, "rkey": rkey}

        async def remove(token: str) -> Empty:
            return await self._service.procedure(
                "com.atproto.repo.deleteRecord", body, Empty, token=token
            )

        await self._sessions.call(remove)

    async def _own_post(self, ref: str) -> StoredRecord | None:
        """A post of the team's own account, read from its PDS, which has it as soon as it
        is written; the AppView indexes it a moment later. None for anyone else's post."""
        if not ref.startswith("at://"):
            return None
        actor, rkey = post_ref_from_input(ref)
        did = await self._sessions.did()
        if actor != did:
            return None
        found = await self._own_record(did, rkey)
        if found is None:
            raise UserError(f"the post {ref} was not found; it may have been deleted")
        return found if found.cid else None

    async def _exists(self, did: str, rkey: str) -> bool:
        return await self._own_record(did, rkey) is not None

    async def _own_record(self, did: str, rkey: str) -> StoredRecord | None:
        """`getRecord` of one of the account's posts; None when there is no such record."""
        params: dict[str, str | int | list[str]] = {
            "repo": did,
            "collection": POST_COLLECTION,
            "rkey": rkey,
        }

        async def get(token: str) -> StoredRecord:
            # With the token an entryway (bsky.social) routes the read to the account's PDS.
            return await self._service.query(
                "com.atproto.repo.getRecord", params, StoredRecord, token=token
            )

        try:
            return await self._sessions.call(get)
        except XrpcError as err:
            if err.error == "RecordNotFound" or err.status == 404:
                return None
            raise

    async def _images_embed(self, images: tuple[DraftImage, ...]) -> dict[str, Any]:
        """`app.bsky.embed.images`: each picture uploaded as a blob, with its alt text."""
        embedded = []
        for image in images:
            blob = await self._upload_blob(image.data, image.mime)
            embedded.append({"alt": image.alt, "image": blob})
        return {"$type": "app.bsky.embed.images", "images": embedded}

    async def _upload_blob(self, data: bytes, mime: str) -> dict[str, Any]:
        """`uploadBlob` with the account's session (refreshed if it expired): the blob ref."""

        async def upload(token: str) -> UploadedBlob:
            return await self._service.upload(
                "com.atproto.repo.uploadBlob", data, mime, UploadedBlob, token=token
            )

        return (await self._sessions.call(upload)).blob

    async def _link_card(self, url: str) -> dict[str, Any] | None:
        """`app.bsky.embed.external` for `url`, its picture uploaded; None if the page has none."""
        assert self._cards is not None
        found = await self._cards.card(url)
        if found is None:
            return None
        page, thumb = found
        external: dict[str, Any] = {
            "uri": page.url,
            "title": page.title,
            "description": page.description,
        }
        if thumb is not None:
            try:
                external["thumb"] = await self._upload_blob(thumb.data, thumb.mime)
            except XrpcError as err:
                if err.outcome in (Outcome.AUTH, Outcome.RATE_LIMITED):
                    raise
                log.info("link card without its picture: %s", err)
        return {"$type": "app.bsky.embed.external", "external": external}

    async def _resolve_handle(self, handle: str) -> str | None:
        try:
            found = await self._service.query(
                "com.atproto.identity.resolveHandle", {"handle": handle}, ResolvedHandle
            )
        except XrpcError as err:
            if err.outcome is Outcome.HTTP_4XX:
                return None  # not a real account: the text stays plain, as in Bluesky's app
            raise
        return found.did if is_did(found.did) else None

    async def _post(self, ref: str) -> PostView:
        actor, rkey = post_ref_from_input(ref)
        did = actor if is_did(actor) else await self._resolve_handle(actor)
        if did is None:
            raise UserError(f"there is no Bluesky account @{actor}")
        found = await self._appview.query(
            "app.bsky.feed.getPosts", {"uris": [post_uri(did, rkey)]}, Posts
        )
        if not found.posts:
            raise UserError(f"the post {ref} was not found; it may have been deleted")
        return found.posts[0]

    async def _reply_ref(self, ref: str) -> dict[str, Any]:
        own = await self._own_post(ref)
        if own is not None:  # e.g. the previous part of a thread, not indexed yet
            parent_ref = {"uri": own.uri, "cid": own.cid}
            root = (own.value.get("reply") or {}).get("root")
            if isinstance(root, dict) and root.get("uri") and root.get("cid"):
                return {"root": {"uri": root["uri"], "cid": root["cid"]}, "parent": parent_ref}
            return {"root": parent_ref, "parent": parent_ref}
        parent = await self._post(ref)
        parent_ref = {"uri": parent.uri, "cid": parent.cid}
        thread = reply_of(parent.record)
        root = {"uri": thread.root.uri, "cid": thread.root.cid} if thread else parent_ref
        return {"root": root, "parent": parent_ref}


def first_link(facets: list[dict[str, Any]]) -> str:
    """The first link of the text (facets are in text order), or ""."""
    for facet in facets:
        for feature in facet.get("features", []):
            if feature.get("$type") == "app.bsky.richtext.facet#link" and feature.get("uri"):
                return str(feature["uri"])
    return ""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
