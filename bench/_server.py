"""Shared by the benchmarks: start ``untrace serve`` in a subprocess with a config file
and a data dir of its own, wait until it is ready, stop it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.server import ADMIN_KEY, free_port  # noqa: E402

__all__ = ["ADMIN_KEY", "SINK", "UNTRACE", "free_port", "start_server", "stop"]

UNTRACE = str(Path(sys.executable).parent / "untrace")

# A webhook sink: counts traces ("startTime" occurrences); argv[2] = seconds per request.
SINK = r"""
import asyncio, sys, uvicorn
count = 0
delay = float(sys.argv[2])
async def app(scope, receive, send):
    global count
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    if scope["path"] == "/count":
        out = str(count).encode()
    else:
        if delay:
            await asyncio.sleep(delay)
        count += body.count(b'"startTime"')
        out = b"{}"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def start_server(
    workdir: Path, config: dict[str, Any], env_extra: dict[str, str], ready_s: float = 20.0
) -> tuple[subprocess.Popen[bytes], str]:
    """``untrace serve`` on a free port (warnings only, stderr to server.log); its URL."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "untrace.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNTRACE_")}
    env.update(
        {"UNTRACE_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY, "UNTRACE_LOG_LEVEL": "warning", **env_extra}
    )
    command = [UNTRACE, "serve", "--config", str(workdir / "untrace.yaml"), "--port", str(port),
               "--data-dir", str(workdir / "data")]  # fmt: skip
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ready").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"server did not start; see {workdir / 'server.log'}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
