"""Run a real ``untrace serve`` process for tests and drive it like a user would."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

ADMIN_KEY = "utk_test_admin_0123456789abcdef"
UNTRACE = str(Path(sys.executable).parent / "untrace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``untrace serve`` in a subprocess with its own data dir, config file and port."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        extra_args: list[str] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config_path = workdir / "untrace.yaml"
        self.config = config or {}
        self.extra_env = env or {}
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        self.key = ADMIN_KEY
        self.extra_args = extra_args or []  # more `untrace serve` flags, e.g. --tls-cert
        self.verify = verify  # trusts the test certificate for the readiness probe

    @property
    def url(self) -> str:
        scheme = "https" if "--tls-cert" in self.extra_args else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNTRACE_")}
        env.update(
            {
                "UNTRACE_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
                "UNTRACE_SECRET_KEY": "test-secret",
                "UNTRACE_LOG_LEVEL": "info",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config))
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends
        log = self._log
        self.proc = subprocess.Popen(
            [
                UNTRACE,
                "serve",
                "--config",
                str(self.config_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                *self.extra_args,
            ],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                ready = httpx.get(self.url + "/ready", timeout=1.0, verify=self.verify)
                if ready.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()}")

    def _close_log(self) -> None:
        log: IO[bytes] | None = getattr(self, "_log", None)
        if log is not None:
            log.close()
            del self._log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close_log()

    def terminate(self, timeout: float = 30.0) -> float:
        """SIGTERM; returns the seconds it took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        self._close_log()
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_log()

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}", "Content-Type": "application/json"}

    def post_traces(self, traces: list[dict[str, Any]], key: str | None = None) -> httpx.Response:
        return httpx.post(
            self.url + "/api/v1/traces",
            json={"traces": traces},
            headers=self.headers(key),
            timeout=30.0,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [UNTRACE, *args, "--config", str(self.config_path), "--data-dir", str(self.data_dir)],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )


def make_trace(i: int, **extra: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    trace = {
        "id": f"t-{i}",
        "startTime": now - 120,
        "endTime": now,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "request": {
            "messages": [{"role": "user", "content": f"question {i}"}],
            "parameters": {"temperature": 0.2},
        },
        "response": {
            "content": f"answer {i}",
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        },
        "metadata": {"environment": "test", "tags": {"suite": "e2e"}},
        "metrics": {"latency_ms": 120},
    }
    trace.update(extra)
    return trace


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
