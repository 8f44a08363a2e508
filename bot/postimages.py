"""Images for post-back: checked, downloaded once through the SSRF guard, remembered.

A member gives an image as a link (`/post --image URL --alt TEXT`, or a Discord
attachment, whose link is the same thing). Starling fetches it itself, vetting every
redirect hop and every connection (`bot.netguard`), so a member cannot make the bot
read an intranet page and post it; the size and type are checked before any network
sees a byte. The links and alt texts are kept beside the outbox row (plugin state),
so a post held for an outage, or waiting for approval, still has its images after a
restart: they are downloaded again then.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp

from bot.errors import UserError
from bot.guardedfetch import guarded_get, guarded_session
from bot.netguard import BlockedAddressError
from bot.protocols import DraftImage

MAX_IMAGES = 4  # Mastodon, Bluesky and X all take at most four
MAX_IMAGE_BYTES = 1_000_000  # Bluesky's limit for an image blob, the smallest of them
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
FETCH_TIMEOUT_S = 20.0


def check_alt(images: tuple[DraftImage, ...], require_alt: bool) -> None:
    """Refuse before anything is fetched: too many images, or one without alt text."""
    if len(images) > MAX_IMAGES:
        raise UserError(f"{len(images)} images; a post takes at most {MAX_IMAGES}")
    if not require_alt:
        return
    missing = [str(n) for n, image in enumerate(images, 1) if not image.alt.strip()]
    if missing:
        which = "image " + missing[0] if len(missing) == 1 else "images " + ", ".join(missing)
        raise UserError(
            f"{which} has no alt text; add --alt after each --image "
            "(use _ for spaces) so people who cannot see it know what it shows"
        )


def describe(images: tuple[DraftImage, ...]) -> str:
    """The preview's note on images: how many and each one's alt text."""
    if not images:
        return ""
    alts = "; ".join(f"alt: {image.alt}" if image.alt else "no alt text" for image in images)
    count = "1 image" if len(images) == 1 else f"{len(images)} images"
    return f" [+ {count} — {alts}]"


class ImageFetcher:
    """Downloads post images through the SSRF guard, with a size cap and a type check."""

    def __init__(self, *, allow_private: bool, user_agent: str = "Starling post-back") -> None:
        self._allow_private = allow_private
        self._user_agent = user_agent

    async def fetch_all(self, images: tuple[DraftImage, ...]) -> tuple[DraftImage, ...]:
        """Every image with its bytes and type; raises `UserError` naming the first bad one."""
        if not images:
            return ()
        fetched: list[DraftImage] = []
        async with self._session() as session:
            for number, image in enumerate(images, 1):
                try:
                    async with asyncio.timeout(FETCH_TIMEOUT_S):
                        data, mime = await self._get(session, image.url)
                except UserError as err:
                    raise UserError(f"image {number} ({image.url}): {err}") from None
                except BlockedAddressError as err:
                    raise UserError(f"image {number}: {err}") from None
                except TimeoutError:
                    raise UserError(
                        f"image {number} ({image.url}) did not arrive within {FETCH_TIMEOUT_S:g} s"
                    ) from None
                except (aiohttp.ClientError, OSError) as err:
                    if isinstance(err.__cause__, BlockedAddressError):  # refused on connect
                        raise UserError(f"image {number}: {err.__cause__}") from None
                    raise UserError(
                        f"image {number} ({image.url}) could not be downloaded: "
                        f"{err or type(err).__name__}"
                    ) from None
                fetched.append(replace(image, data=data, mime=mime))
        return tuple(fetched)

    def _session(self) -> aiohttp.ClientSession:
        return guarded_session(allow_private=self._allow_private, user_agent=self._user_agent)

    async def _get(self, session: aiohttp.ClientSession, url: str) -> tuple[bytes, str]:
        """The image's bytes and type; only JPEG, PNG, GIF or WebP, at most 1 MB."""
        fetched = await guarded_get(
            session,
            url,
            allow_private=self._allow_private,
            limit=MAX_IMAGE_BYTES,
            too_large=f"is larger than {MAX_IMAGE_BYTES / 1_000_000:g} MB, the most a post takes",
            check_type=_check_image_type,
        )
        if not fetched.body:
            raise UserError("is empty")
        return fetched.body, _mime(fetched.content_type)


def _mime(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _check_image_type(content_type: str) -> None:
    mime = _mime(content_type)
    if mime not in IMAGE_TYPES:
        raise UserError(f"is {mime or 'of no stated type'}, not an image (JPEG, PNG, GIF or WebP)")
