"""Processes for the proxy benchmark: the mock upstream, ``untrace serve`` and the
LiteLLM proxy, each started under ``taskset`` and waited for; CPU time read from /proc."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
KEY = "utk_bench_0123456789abcdef"
LITELLM_KEY = "sk-litellm-bench"
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, popen: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.popen, self.url, self.log, self.key = popen, url, log, KEY
        self.pid = popen.pid
        self.proc = popen

    def wait_ready(self, path: str, timeout: float = 90.0) -> Proc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.url} exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.url} not ready:\n{self.log.read_text()[-3000:]}")

    def dropped(self) -> dict[str, float]:
        text = httpx.get(self.url + "/metrics").text
        found = re.findall(r'untrace_dropped_total\{reason="(\w+)",where="proxy"\} (\S+)', text)
        return {reason: float(n) for reason, n in found}

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)


def _spawn(cmd: list[str], url: str, log: Path, env: dict[str, str], core: int) -> Proc:
    out = log.open("ab")
    popen = subprocess.Popen(
        ["taskset", "-c", str(core), *cmd],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Proc(popen, url, log)


def start_mock(port: int) -> Proc:
    cmd = [sys.executable, str(ROOT / "bench" / "proxy" / "mock.py"), "--port", str(port)]
    proc = _spawn(
        cmd, f"http://127.0.0.1:{port}", Path(f"/tmp/mock-{port}.log"), dict(os.environ), 1
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    raise RuntimeError("mock did not start")


def start_untrace(work: Path, mock_port: int, role: str = "all") -> Proc:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNTRACE_")}
    env.update(
        UNTRACE_BOOTSTRAP_ADMIN_KEY=KEY,
        UNTRACE_SECRET_KEY="bench",
        UNTRACE_LOG_LEVEL="warning",
        UNTRACE_OPENAI_BASE_URL=f"http://127.0.0.1:{mock_port}/v1",
        UNTRACE_ROLE=role,
    )
    cmd = [str(VENV_BIN / "untrace"), "serve", "--port", str(port),
           "--data-dir", str(work / "untrace")]  # fmt: skip
    return _spawn(cmd, f"http://127.0.0.1:{port}", work / "untrace.log", env, 0).wait_ready(
        "/ready"
    )


def start_litellm(work: Path, mock_port: int, venv: Path) -> Proc:
    port = free_port()
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o-mini\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o-mini\n"
        f"      api_base: http://127.0.0.1:{mock_port}/v1\n"
        "      api_key: sk-bench\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNTRACE_", "DATABASE"))}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", LITELLM_MASTER_KEY=LITELLM_KEY
    )
    cmd = [str(venv / "bin" / "litellm"), "--config", str(config), "--port", str(port),
           "--num_workers", "1"]  # fmt: skip
    proc = _spawn(cmd, f"http://127.0.0.1:{port}", work / "litellm.log", env, 0)
    return proc.wait_ready("/health/liveliness", timeout=180)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
        todo.extend(children.get(p, []))
    return total
