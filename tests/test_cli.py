"""The command line as a user runs it: `python -m bot …` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot import __version__

REPO = Path(__file__).resolve().parents[1]


def starling(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("STARLING_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=REPO,
        env=clean,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_version() -> None:
    result = starling("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"starling {__version__}"


def test_help_lists_the_commands() -> None:
    result = starling("--help")
    assert result.returncode == 0
    for command in ("run", "health", "plugins"):
        assert command in result.stdout
    assert "STARLING_" in result.stdout


def test_no_command_prints_help_and_fails() -> None:
    result = starling()
    assert result.returncode == 2
    assert "usage: starling" in result.stdout


def test_run_help_lists_its_options() -> None:
    result = starling("run", "--help")
    assert result.returncode == 0
    for option in ("--config", "--db", "--data-dir", "--log-level"):
        assert option in result.stdout


def test_plugins_lists_the_built_in_ones() -> None:
    result = starling("plugins")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "starling.networks: feeds = plugins.feeds:create" in lines
    assert "starling.chats: console = plugins.console:create" in lines


def test_health_without_heartbeat_is_unhealthy(tmp_path: Path) -> None:
    result = starling("health", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.startswith("unhealthy: no heartbeat")


def test_health_with_fresh_heartbeat_is_healthy(tmp_path: Path) -> None:
    (tmp_path / "heartbeat").touch()
    result = starling("health", "--data-dir", str(tmp_path))
    assert result.returncode == 0
    assert result.stdout.startswith("healthy")


def test_health_with_stale_heartbeat_is_unhealthy(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    beat.touch()
    old = time.time() - 300
    os.utime(beat, (old, old))
    result = starling("health", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.startswith("unhealthy: last heartbeat")


def test_health_reads_data_dir_from_env(tmp_path: Path) -> None:
    (tmp_path / "heartbeat").touch()
    assert starling("health", env={"STARLING_DATA_DIR": str(tmp_path)}).returncode == 0


def test_run_with_missing_config_fails_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    result = starling("run", "--config", str(missing), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"starling: config file {missing} does not exist"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_run_with_bad_env_value_names_the_setting(tmp_path: Path) -> None:
    result = starling(
        "run", "--data-dir", str(tmp_path / "data"), env={"STARLING_LOG_LEVEL": "LOUD"}
    )
    assert result.returncode == 2
    assert "log_level" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_with_unknown_chat_plugin_fails_cleanly(tmp_path: Path) -> None:
    result = starling(
        "run", "--data-dir", str(tmp_path / "data"), env={"STARLING_CHATS": "telepathy"}
    )
    assert result.returncode == 2
    # The last line is the one-line answer, not the tail of a traceback.
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("starling: chat plugin 'telepathy' is not installed"), last
    assert "console" in last  # it names what is available


@pytest.mark.slow
def test_run_until_end_of_input_then_health(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = starling("run", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Starling {__version__}")
    assert (data / "starling.db").is_file()
    # It wrote a heartbeat while it ran, so a health check right after passes.
    health = starling("health", "--data-dir", str(data))
    assert health.returncode == 0, health.stdout
