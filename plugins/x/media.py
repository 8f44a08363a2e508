"""Images for X posts: `POST /2/media/upload`, then `POST /2/media/metadata` for alt text.

The one-shot upload takes the picture base64-encoded in a JSON body, so it goes
through the same door (and the same OAuth 1.0a signing, which leaves JSON bodies
out of the signature) as `POST /2/tweets`. Media not attached to a post expire on
X's side, so a retry simply uploads again.
"""

from __future__ import annotations

import base64

from bot.errors import Outcome, UpstreamError, UserError
from bot.protocols import DraftImage
from plugins.x.api import Credential, XApi
from plugins.x.convert import is_tweet_id

UPLOAD = "POST /2/media/upload"
METADATA = "POST /2/media/metadata"
MAX_IMAGES = 4
MAX_ALT_LENGTH = 1000
MAX_IMAGE_BYTES = 5_000_000  # X's limit for a picture in a post
CATEGORY = "tweet_image"


def image_problems(images: tuple[DraftImage, ...]) -> list[str]:
    """What X would refuse about these pictures, found before anything is sent."""
    problems = []
    if len(images) > MAX_IMAGES:
        problems.append(f"X takes at most {MAX_IMAGES} images; this post has {len(images)}")
    for n, image in enumerate(images, 1):
        if len(image.alt) > MAX_ALT_LENGTH:
            problems.append(
                f"the alt text of image {n} is {len(image.alt)} characters; "
                f"X takes at most {MAX_ALT_LENGTH}"
            )
        if len(image.data) > MAX_IMAGE_BYTES:
            problems.append(f"image {n} is larger than {MAX_IMAGE_BYTES // 1_000_000} MB")
    return problems


async def upload_all(api: XApi, images: tuple[DraftImage, ...]) -> list[str]:
    """Upload each picture and set its alt text; the media ids, in order."""
    return [await upload(api, image, n) for n, image in enumerate(images, 1)]


async def upload(api: XApi, image: DraftImage, n: int = 1) -> str:
    """One picture: its media id once X has it and (if any) its alt text."""
    if not image.data:
        raise UserError(f"image {n} ({image.url}) was not downloaded; nothing was sent to X")
    body = {"media": base64.b64encode(image.data).decode("ascii"), "media_category": CATEGORY}
    try:
        answer = await api.request(
            "POST", UPLOAD, "/2/media/upload", credential=Credential.USER, json_body=body
        )
    except UpstreamError as err:
        if err.status == 400:  # the picture itself (format, size): retrying will not help
            raise UserError(f"X refused image {n}: {err}") from None
        raise
    data = answer.body.get("data")
    media_id = str(data.get("id", "")) if isinstance(data, dict) else ""
    if not is_tweet_id(media_id):
        raise UpstreamError(Outcome.PARSE, f"X took image {n} but sent no media id")
    if image.alt:
        metadata = {"id": media_id, "metadata": {"alt_text": {"text": image.alt}}}
        await api.request(
            "POST", METADATA, "/2/media/metadata", credential=Credential.USER, json_body=metadata
        )
    return media_id
