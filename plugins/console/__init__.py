"""Console chat: commands from stdin, messages on stdout — no tokens needed.

Like Hubot's shell adapter or errbot's text mode. Sent messages are also appended
to a transcript file, which is the console's "message history": after a crash
between printing and recording, `find_sent` finds the message there instead of
printing it again.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
import threading
from datetime import UTC
from pathlib import Path
from typing import TextIO

from bot import __version__
from bot.config import PluginSettings, parse_plugin_config
from bot.model import ChannelRef, RichMessage
from bot.protocols import CommandService, Invocation, PluginContext

PLATFORM = "console"


class ConsoleSettings(PluginSettings):
    channel: str = "console"
    user: str = ""
    exit_on_eof: bool = True
    transcript: bool = True


def create(ctx: PluginContext) -> ConsoleChat:
    settings = parse_plugin_config(ConsoleSettings, dict(ctx.config), ctx.name)
    transcript = Path(ctx.data_dir) / "console-transcript.jsonl" if settings.transcript else None
    return ConsoleChat(settings, transcript)


def format_message(channel: ChannelRef, message: RichMessage, *, edited: bool = False) -> str:
    """A readable block: header line, title, text, link, images."""
    header = [f"#{channel.native_id}"]
    if message.network:
        header.append(message.network)
    if message.author:
        header.append(message.author)
    if message.timestamp is not None:
        header.append(message.timestamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    lines = ["── " + " · ".join(header) + (" (edited)" if edited else "")]
    if message.title:
        lines.append(message.title)
    if message.text:
        lines.append(message.text)
    if message.link:
        lines.append(message.link)
    lines += [f"[image] {img.url}" + (f" — {img.alt}" if img.alt else "") for img in message.images]
    if message.footer:
        lines.append(message.footer)
    # A carriage return would let upstream text overwrite what the terminal shows.
    return "\n".join(line.replace("\r", "") for line in lines)


class ConsoleChat:
    name = PLATFORM
    min_interval_s = 0.0

    def __init__(
        self,
        settings: ConsoleSettings,
        transcript: Path | None,
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self.settings = settings
        self._stdin = stdin or sys.stdin
        self._stdout = stdout or sys.stdout
        self._transcript_path = transcript
        self._sent: dict[str, str] | None = None
        self._counter = 0

    def _print(self, text: str) -> None:
        print(text, file=self._stdout, flush=True)

    async def run(self, commands: CommandService) -> None:
        default = ChannelRef(PLATFORM, self.settings.channel, self.settings.channel)
        user = self.settings.user or _whoami()
        self._print(
            f"Starling {__version__} — console chat in #{default.native_id}. "
            "Type /help for commands; prefix a line with #name to use another channel."
        )
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def pump() -> None:
            # A thread, because a regular file on stdin cannot be watched by the event loop.
            for line in self._stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=pump, name="console-stdin", daemon=True).start()
        while (line := await lines.get()) is not None:
            text = line.strip()
            if not text:
                continue
            channel = default
            if text.startswith("#"):
                name, _, text = text[1:].partition(" ")
                channel = ChannelRef(PLATFORM, name, name)
                text = text.strip()
            if not text.startswith("/"):
                self._print("» Commands start with /; type /help to see them.")
                continue
            command, _, args = text.partition(" ")
            reply = await commands.handle(Invocation(channel, user, command, args.strip()))
            self._print("» " + reply.text.replace("\n", "\n  "))
        if not self.settings.exit_on_eof:
            await asyncio.Event().wait()

    def _load_transcript(self) -> dict[str, str]:
        if self._sent is None:
            self._sent = {}
            path = self._transcript_path
            if path is not None and path.exists():
                for raw in path.read_text(encoding="utf-8").splitlines():
                    try:
                        entry = json.loads(raw)
                    except ValueError:
                        continue  # a torn last line after a crash
                    self._sent[entry["key"]] = entry["ref"]
            self._counter = len(self._sent)
        return self._sent

    async def send(self, channel: ChannelRef, message: RichMessage, key: str) -> str:
        sent = self._load_transcript()
        self._counter += 1
        ref = f"{channel.native_id}:{self._counter}"
        self._print(format_message(channel, message))
        if self._transcript_path is not None:
            self._transcript_path.parent.mkdir(parents=True, exist_ok=True)
            with self._transcript_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"key": key, "ref": ref}) + "\n")
                out.flush()
                os.fsync(out.fileno())
        sent[key] = ref
        return ref

    async def edit(self, channel: ChannelRef, message_ref: str, message: RichMessage) -> None:
        self._print(format_message(channel, message, edited=True))

    async def find_sent(self, channel: ChannelRef, key: str) -> str | None:
        return self._load_transcript().get(key)

    async def aclose(self) -> None:
        return None


def _whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "console"
