"""Discord's refusals, translated into the core's `ChatError` with a clear reason.

Permanent means retrying cannot help (channel gone, access or permission missing,
token rejected, message refused): the core pauses the subscription and shows the
reason in /list. Everything else is retried, after Discord's `retry_after` when
it gave one.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import discord

from bot.errors import ChatError, Outcome
from plugins.discord.transport import AnswerLost

UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
UNKNOWN_WEBHOOK = 10015
MISSING_ACCESS = 50001
MISSING_PERMISSIONS = 50013
NEEDED = "View Channel, Send Messages, Send Messages in Threads, Embed Links, Read Message History"


@dataclass(frozen=True, slots=True)
class Classified:
    error: ChatError
    # The request may have reached Discord: look before sending it again.
    ambiguous: bool = False
    # The cached webhook no longer exists.
    webhook_gone: bool = False


def classify(exc: BaseException, where: str, *, use_webhooks: bool) -> Classified:
    """Turn whatever discord.py or aiohttp raised into the core's `ChatError`."""
    if isinstance(exc, ChatError):
        return Classified(exc)
    if isinstance(exc, discord.LoginFailure):
        return Classified(_bad_token())
    if isinstance(exc, discord.RateLimited):
        return Classified(
            ChatError(
                f"Discord asks to wait {exc.retry_after:.0f} s",
                retry_after_s=exc.retry_after,
                outcome=Outcome.RATE_LIMITED,
            )
        )
    if isinstance(exc, discord.HTTPException):
        return _http(exc, where, use_webhooks=use_webhooks)
    if isinstance(exc, AnswerLost):
        return Classified(
            ChatError(
                f"Discord failed ({exc.status}) posting in {where}", outcome=Outcome.HTTP_5XX
            ),
            ambiguous=True,
        )
    if isinstance(exc, TimeoutError):
        return Classified(
            ChatError(f"Discord did not answer in time for {where}", outcome=Outcome.TIMEOUT),
            ambiguous=True,
        )
    if isinstance(exc, aiohttp.ClientError | OSError):
        return Classified(
            ChatError(f"could not reach Discord ({exc})", outcome=Outcome.REFUSED), ambiguous=True
        )
    return Classified(ChatError(f"unexpected error talking to Discord: {exc!r}"), ambiguous=True)


def _bad_token() -> ChatError:
    return ChatError(
        "Discord rejected the bot token (401 Unauthorized); set a valid [discord] token",
        permanent=True,
        outcome=Outcome.AUTH,
    )


def _http(exc: discord.HTTPException, where: str, *, use_webhooks: bool) -> Classified:
    code, status = exc.code, exc.status
    detail = f"{code} {exc.text}".strip() if code else f"HTTP {status} {exc.text}".strip()
    if status == 401:
        return Classified(_bad_token())
    if code == MISSING_ACCESS:
        return Classified(
            ChatError(
                f"Starling cannot see {where} (Discord 50001 Missing Access); "
                "give it View Channel there, or invite it to that server",
                permanent=True,
            )
        )
    if code == MISSING_PERMISSIONS:
        needed = NEEDED + (", Manage Webhooks" if use_webhooks else "")
        return Classified(
            ChatError(
                f"Starling lacks a permission in {where} (Discord 50013 Missing Permissions); "
                f"it needs {needed}",
                permanent=True,
            )
        )
    if code == UNKNOWN_CHANNEL:
        return Classified(
            ChatError(f"{where} no longer exists (Discord 10003 Unknown Channel)", permanent=True)
        )
    if code == UNKNOWN_WEBHOOK:
        return Classified(
            ChatError(
                "Starling's webhook was deleted; a new one is made",
                retry_after_s=1.0,
                outcome=Outcome.HTTP_4XX,
            ),
            webhook_gone=True,
        )
    if code == UNKNOWN_MESSAGE:
        return Classified(
            ChatError(f"the message in {where} was deleted (Discord 10008)", permanent=True)
        )
    if status == 429:
        retry = _retry_after(exc.response)
        return Classified(
            ChatError(
                f"Discord rate limit in {where}", retry_after_s=retry, outcome=Outcome.RATE_LIMITED
            )
        )
    if status >= 500:
        return Classified(
            ChatError(f"Discord failed ({detail})", outcome=Outcome.HTTP_5XX), ambiguous=True
        )
    return Classified(ChatError(f"Discord refused to post in {where} ({detail})", permanent=True))


def _retry_after(response: object) -> float | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
