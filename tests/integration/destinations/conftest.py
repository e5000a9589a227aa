"""Fixtures for connector integration tests: a real Arize Phoenix server and a real MLflow
tracking server (each from its own cached venv, see phoenix_env.sh / mlflow_env.sh) and
small local HTTP servers standing in for SaaS APIs."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from tests.support.tools import cached_tool, running_service

HERE = Path(__file__).resolve().parent
PHOENIX_START_TIMEOUT_S = 90
MLFLOW_START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def phoenix_bin() -> str:
    return cached_tool(HERE / "phoenix_env.sh", "arize-phoenix")


@pytest.fixture(scope="session")
def phoenix_url(phoenix_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("phoenix")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
    env.update(
        {
            "PHOENIX_WORKING_DIR": str(workdir),
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(port),
            "PHOENIX_GRPC_PORT": str(free_port()),
            "PHOENIX_TELEMETRY_ENABLED": "false",
            "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        }
    )
    url = f"http://127.0.0.1:{port}"
    with running_service(
        "phoenix", [phoenix_bin, "serve"], env, workdir, f"{url}/healthz",
        PHOENIX_START_TIMEOUT_S,
    ):  # fmt: skip
        yield url


@pytest.fixture(scope="session")
def mlflow_bin() -> str:
    return cached_tool(HERE / "mlflow_env.sh", "mlflow")


@pytest.fixture(scope="session")
def mlflow_url(mlflow_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 with a SQLite store (spans are kept in the tracking
    store), artifacts in its own working directory, telemetry off, one worker."""
    workdir = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OTEL_"))}
    env.update(
        {
            "HOME": str(workdir),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_MODEL_CATALOG_URI": "",  # no remote price-list fetch: bundled prices
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no huey job workers
            "DO_NOT_TRACK": "true",
        }
    )
    argv = [
        mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--default-artifact-root", str(workdir / "artifacts"),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running_service("mlflow", argv, env, workdir, f"{url}/health", MLFLOW_START_TIMEOUT_S):
        yield url


class LocalServer:
    """An ASGI app under uvicorn in a background thread on a free 127.0.0.1 port."""

    def __init__(self, app: Callable[..., object]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            loop="asyncio",
            http="h11",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("local server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def local_server() -> Iterator[Callable[[Callable[..., object]], LocalServer]]:
    servers: list[LocalServer] = []

    def start(app: Callable[..., object]) -> LocalServer:
        server = LocalServer(app).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)
