"""The command line: `python -m bot run`, `python -m bot health`, `python -m bot --version`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from bot import __version__
from bot.app import HEARTBEAT_FILE, App
from bot.config import ConfigError, load_settings
from bot.plugins import CHAT_GROUP, NETWORK_GROUP, discover

HEARTBEAT_MAX_AGE_S = 120


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="starling",
        description="Relay microblogs and feeds into team chat.",
        epilog="Every option can also be set as STARLING_<OPTION> in the environment.",
    )
    parser.add_argument("--version", action="version", version=f"starling {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="start relaying (console chat unless configured otherwise)")
    run.add_argument("--config", type=Path, help="TOML config file (default: none)")
    run.add_argument("--db", help="SQLite database file (default: <data-dir>/starling.db)")
    run.add_argument("--data-dir", type=Path, help="where state lives (default: ./data)")
    run.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    health = sub.add_parser("health", help="exit 0 if a running Starling's heartbeat is fresh")
    health.add_argument("--data-dir", type=Path, default=None)
    sub.add_parser("plugins", help="list installed network and chat plugins")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "health":
        return _health(args)
    if args.command == "plugins":
        for group in (NETWORK_GROUP, CHAT_GROUP):
            for name, ep in sorted(discover(group).items()):
                print(f"{group}: {name} = {ep.value}")
        return 0
    parser.print_help()
    return 2


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(
            args.config, db=args.db, data_dir=args.data_dir, log_level=args.log_level
        )
    except ConfigError as err:
        print(f"starling: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)

    async def go() -> None:
        app = await App.create(settings)
        await app.run()

    try:
        asyncio.run(go())
    except ConfigError as err:
        print(f"starling: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _health(args: argparse.Namespace) -> int:
    data_dir = args.data_dir
    if data_dir is None:
        try:
            data_dir = load_settings().data_dir
        except ConfigError as err:
            print(f"unhealthy: {err}")
            return 1
    path = Path(data_dir) / HEARTBEAT_FILE
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(f"unhealthy: no heartbeat at {path}")
        return 1
    if age > HEARTBEAT_MAX_AGE_S:
        print(f"unhealthy: last heartbeat {age:.0f} s ago")
        return 1
    print(f"healthy: heartbeat {age:.0f} s ago")
    return 0
