"""Settings: sources and their order, and bad config refused with one readable line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.server import free_port

from untrace_server.config import load_settings, parse_duration
from untrace_server.errors import ConfigError

UNTRACE = str(Path(sys.executable).parent / "untrace")


def test_defaults_env_file_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(None)
    assert (s.host, s.port, s.queue.synchronous, s.queue.budget_bytes) == (
        "127.0.0.1",
        8080,
        "FULL",
        1 << 30,
    )
    assert s.ingest.max_traces_per_request == 1000 and s.delivery.max_attempts == 10
    cfg = tmp_path / "u.yaml"
    cfg.write_text("port: 9001\ndelivery: {max_attempts: 4, max_batch: 7}\n")
    s = load_settings(cfg)
    assert s.port == 9001 and s.delivery.max_attempts == 4 and s.delivery.max_batch == 7
    monkeypatch.setenv("UNTRACE_PORT", "9002")
    monkeypatch.setenv("UNTRACE_DELIVERY__MAX_ATTEMPTS", "6")
    s = load_settings(cfg)
    assert s.port == 9002 and s.delivery.max_attempts == 6
    assert load_settings(cfg, port=9003).port == 9003


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("port: 70000\n", "port"),
        ("delivery: {max_atempts: 3}\n", "max_atempts"),
        (
            "customers: {a: {destinations: [{id: x, type: webhook}, {id: x, type: file}]}}\n",
            "duplicate destination ids",
        ),
        ("customers: {a: {routing: {defaultDestinations: [nope]}}}\n", "unknown destinations"),
        ("customers: {a: {destinations: [{id: 'bad id!', type: file}]}}\n", "id"),
        ("- a list\n", "mapping"),
        ("port: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_is_one_readable_error(tmp_path: Path, text: str, fragment: str) -> None:
    cfg = tmp_path / "u.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings("/nonexistent/untrace.yaml")


def test_durations() -> None:
    assert parse_duration("30d") == 30 * 86400 and parse_duration("12h") == 43200
    with pytest.raises(ConfigError):
        parse_duration("soon")


def test_serve_exits_2_on_bad_destination_config_before_listening(tmp_path: Path) -> None:
    cfg = tmp_path / "u.yaml"
    cfg.write_text(
        "customers: {a: {destinations: [{id: h, type: webhook, config: {url: 'not a url'}}]}}\n"
    )
    port = free_port()
    done = subprocess.run(
        [
            UNTRACE,
            "serve",
            "--config",
            str(cfg),
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "destination type 'webhook'" in done.stderr and "url" in done.stderr
    unknown = tmp_path / "v.yaml"
    unknown.write_text("customers: {a: {destinations: [{id: h, type: kafkaa}]}}\n")
    done = subprocess.run(
        [
            UNTRACE,
            "serve",
            "--config",
            str(unknown),
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "unknown destination type 'kafkaa'" in done.stderr
