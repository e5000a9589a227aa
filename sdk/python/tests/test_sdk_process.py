"""Process lifecycle: fork (as under gunicorn) and flush at interpreter exit. Each
scenario runs in a fresh interpreter so the test process never forks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest
from sdk_fakes import Collector, Reply

pytestmark = pytest.mark.timeout(60)

FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading, untrace
    client = untrace.init("k", base_url=sys.argv[1], flush_interval=30)
    untrace.trace({"name": "parent-before"})
    assert client.flush(5)
    untrace.trace({"name": "parent-pending"})  # still queued when we fork
    children = []
    for n in range(3):
        pid = os.fork()
        if pid == 0:
            for i in range(10):
                untrace.trace({"name": f"child{n}-{i}"})
            if n == 0:  # explicit flush, then a hard exit (no atexit)
                ok = untrace.flush(5) and client.stats["sent"] == 10
                workers = [t for t in threading.enumerate() if t.name == "untrace-worker"]
                os._exit(0 if ok and len(workers) == 1 else 3)
            sys.exit(0)  # the others rely on the exit hook
        children.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    untrace.trace({"name": "parent-after"})
    assert client.flush(5)
    print(codes, client.stats)
    sys.exit(max(codes))
    """
)


def test_fork_children_trace_through_their_own_worker(collector: Collector) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, collector.url],
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names = Counter(t["name"] for t in collector.accepted())
    expected = {"parent-before", "parent-pending", "parent-after"} | {
        f"child{n}-{i}" for n in range(3) for i in range(10)
    }
    assert set(names) == expected
    assert max(names.values()) == 1  # the parent's pending trace is not resent by children


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, untrace
    untrace.init("k", base_url=sys.argv[1])
    for i in range(30):
        untrace.trace({"name": f"exit-{i}"})
    # no flush: the exit hook sends them
    """
)


def test_exit_hook_flushes_while_server_is_slow(collector: Collector) -> None:
    collector.default = Reply(delay=1.0)
    result = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, collector.url],
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(t["name"] for t in collector.accepted()) == sorted(f"exit-{i}" for i in range(30))


def test_exit_hook_gives_up_at_shutdown_timeout(collector: Collector) -> None:
    collector.default = Reply(503, {"Retry-After": "60"})
    script = textwrap.dedent(
        """
        import sys, untrace
        untrace.init("k", base_url=sys.argv[1], shutdown_timeout=0.5, max_backoff=60)
        untrace.trace({"name": "never"})
        """
    )
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script, collector.url], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0
    assert time.monotonic() - start < 5  # not the 60 s the server asked for
    assert "dropped 1 trace(s): shutdown" in result.stderr
