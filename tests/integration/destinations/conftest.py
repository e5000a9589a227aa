"""Fixtures for connector integration tests: a real Arize Phoenix server and a real MLflow
tracking server (each from its own cached venv, see phoenix_env.sh / mlflow_env.sh) and
small local HTTP servers standing in for SaaS APIs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

HERE = Path(__file__).resolve().parent
PHOENIX_START_TIMEOUT_S = 90
MLFLOW_START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable(reason: str) -> None:
    """Under CI a missing service is a failure; on a laptop it is a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def phoenix_bin() -> str:
    if shutil.which("bash") is None:
        unavailable("bash is needed to prepare the Phoenix venv")
    try:
        done = subprocess.run(
            [str(HERE / "phoenix_env.sh")],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
    except subprocess.TimeoutExpired:
        unavailable("installing arize-phoenix timed out")
    if done.returncode != 0:
        unavailable(f"cannot install arize-phoenix: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


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
    log = (workdir / "phoenix.log").open("wb")
    proc = subprocess.Popen(
        [phoenix_bin, "serve"],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PHOENIX_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                unavailable(
                    f"phoenix exited with {proc.returncode}: "
                    f"{(workdir / 'phoenix.log').read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                unavailable(f"phoenix did not answer within {PHOENIX_START_TIMEOUT_S}s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def mlflow_bin() -> str:
    if shutil.which("bash") is None:
        unavailable("bash is needed to prepare the MLflow venv")
    try:
        done = subprocess.run(
            [str(HERE / "mlflow_env.sh")],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
    except subprocess.TimeoutExpired:
        unavailable("installing mlflow timed out")
    if done.returncode != 0:
        unavailable(f"cannot install mlflow: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


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
    log = (workdir / "mlflow.log").open("wb")
    proc = subprocess.Popen(
        [
            mlflow_bin,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{workdir / 'mlflow.db'}",
            "--default-artifact-root",
            str(workdir / "artifacts"),
        ],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + MLFLOW_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                unavailable(
                    f"mlflow exited with {proc.returncode}: "
                    f"{(workdir / 'mlflow.log').read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                unavailable(f"mlflow did not answer within {MLFLOW_START_TIMEOUT_S}s")
            time.sleep(0.5)
        yield url
    finally:
        _stop(proc)
        log.close()


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
