"""`/post` with an attached picture on Discord: the attachment's link becomes `--image`.

The whole bot runs with the Discord chat (the real discord.py client) against the
local Discord, which sends the attachment as Discord does (an option of type 11
and its `resolved.attachments` entry); the picture itself is served from loopback
and ends up on the fake Mastodon with the alt text as its description.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.fakes.discord_server import DiscordServer
from tests.fakes.image_server import PNG, ImageServer, image_server
from tests.postback_networks import Networks, networks, statuses
from tests.test_postback_discord import Start, channel_of, discord_server, plain, start

pytestmark = pytest.mark.slow
__all__ = ["discord_server", "networks", "start"]  # fixtures, imported so pytest finds them


@pytest_asyncio.fixture
async def pictures() -> AsyncIterator[ImageServer]:
    async with image_server() as server:
        yield server


def attached(server: DiscordServer, url: str) -> tuple[str, dict[str, object]]:
    """An attachment's id and `resolved.attachments` as Discord sends it for a picture."""
    snowflake = str(server.snowflake())
    return snowflake, {
        "attachments": {
            snowflake: {
                "id": snowflake,
                "filename": "cat.png",
                "size": len(PNG),
                "url": url,
                "proxy_url": url,
                "content_type": "image/png",
                "width": 1,
                "height": 1,
                "ephemeral": True,
            }
        }
    }


async def test_an_attached_picture_is_posted_with_its_alt_text(
    start: Start, discord_server: DiscordServer, networks: Networks, pictures: ImageServer
) -> None:
    await start(postback_approval=[])
    general = channel_of(discord_server)
    attachment_id, resolved = attached(discord_server, f"{pictures.url}/cat.png")
    options = [
        {"name": "text", "type": 3, "value": "Our mascot"},
        {"name": "to", "type": 3, "value": "mastodon"},
        {"name": "image", "type": 11, "value": attachment_id},
    ]
    log = await discord_server.invoke(general, "post", options, resolved=resolved)
    (shown,) = await log.wait_shown(within_s=20)
    assert plain(shown) == (
        "/post: image 1 has no alt text; add --alt after each --image (use _ for spaces) "
        "so people who cannot see it know what it shows",
        True,
    )
    assert statuses(networks.mastodon, "Our mascot") == []

    options.append({"name": "alt", "type": 3, "value": "A cat  asleep"})
    log = await discord_server.invoke(general, "post", options, resolved=resolved)
    await log.wait_shown(within_s=20)
    [status] = statuses(networks.mastodon, "Our mascot")
    [media] = status["media_attachments"]
    assert media["description"] == "A cat asleep"
    assert pictures.paths == ["/cat.png"]
    assert discord_server.invalid_bodies == []
