"""Third-party tools the tests run for real (Arize Phoenix, MLflow, traceloop-sdk), each
from a cached venv of its own, and their servers as local processes.

A missing tool is a skip on a laptop and a failure under ``CI=true``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

__all__ = ["cached_tool", "running_service", "unavailable"]


def unavailable(reason: str) -> None:
    """Under CI a missing service is a failure; on a laptop it is a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def cached_tool(script: Path, what: str, timeout_s: float = 1200) -> str:
    """Run an ``*_env.sh`` script that builds (once) a venv holding ``what``; returns the
    path it prints last (the tool's executable or interpreter)."""
    if shutil.which("bash") is None:
        unavailable(f"bash is needed to prepare the {what} venv")
    try:
        done = subprocess.run(
            [str(script)], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        unavailable(f"installing {what} timed out")
    if done.returncode != 0:
        unavailable(f"cannot install {what}: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def running_service(
    name: str,
    argv: list[str],
    env: dict[str, str],
    workdir: Path,
    health_url: str,
    timeout_s: float = 90,
) -> Iterator[None]:
    """Start ``argv`` in ``workdir`` (output in ``<name>.log``), wait until ``health_url``
    answers 200, and stop it afterwards."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    unavailable(
                        f"{name} exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
                    )
                try:
                    if httpx.get(health_url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    unavailable(f"{name} did not answer within {timeout_s}s")
                time.sleep(0.5)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
