"""Spans and @observe: nesting through contextvars, errors, outputs, generators."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sdk_fakes import Collector

import untrace

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def sent(collector: Collector) -> Any:
    """Init the default client; call the result to flush and get traces by name."""
    untrace.init("k", base_url=collector.url, flush_interval=30)

    def get() -> dict[str, dict[str, Any]]:
        assert untrace.flush(5)
        return {t["name"]: t for t in collector.accepted()}

    return get


def test_nesting_links_parent_and_inherits_session(sent: Any) -> None:
    with untrace.span("root", session_id="sess-1", tags={"a": "1"}) as root:
        assert untrace.current_span() is root
        with untrace.span("child", kind="retrieval") as child, untrace.span("grandchild"):
            pass
        with untrace.span("sibling", session_id="other"):
            pass
    assert untrace.current_span() is None
    t = sent()
    assert "parentId" not in t["root"] and t["root"]["sessionId"] == "sess-1"
    assert t["child"]["parentId"] == root.id and t["child"]["kind"] == "retrieval"
    assert t["grandchild"]["parentId"] == child.id and t["grandchild"]["kind"] == "chain"
    assert t["grandchild"]["sessionId"] == "sess-1"
    assert t["sibling"]["parentId"] == root.id and t["sibling"]["sessionId"] == "other"
    assert t["root"]["metadata"]["tags"] == {"a": "1"}
    assert t["root"]["startTime"] <= t["child"]["startTime"] <= t["child"]["endTime"]
    assert t["child"]["endTime"] <= t["root"]["endTime"]


def test_exception_is_recorded_and_reraised(sent: Any) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom, match="kaput"), untrace.span("failing"):
        raise Boom("kaput")
    error = sent()["failing"]["error"]
    assert error["type"] == "Boom" and error["message"] == "kaput"
    assert "raise Boom" in error["stack"]


def test_setters(sent: Any) -> None:
    with untrace.span(
        "llm-ish",
        kind="llm",
        model="gpt-x",
        provider="acme",
        input=[{"role": "user", "content": "hi"}],
    ) as sp:
        sp.set_output("hello")
        sp.set_usage(prompt_tokens=3, completion_tokens=2, cached_tokens=1)
        sp.set_metadata(user="u1", tags={"b": 2})
        sp.set_metadata(tags={"c": "3"})
    with untrace.span("structured") as sp2:
        sp2.set_output({"answer": 42})
    t = sent()
    s = t["llm-ish"]
    assert s["model"] == "gpt-x" and s["provider"] == "acme"
    assert s["request"]["messages"] == [{"role": "user", "content": "hi"}]
    assert s["response"]["content"] == "hello"
    assert s["response"]["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
        "cached_tokens": 1,
    }
    assert s["metadata"] == {"user": "u1", "tags": {"b": "2", "c": "3"}}
    assert s["metrics"]["latency_ms"] >= 0
    assert t["structured"]["response"]["content"] == '{"answer":42}'


def test_span_ends_once(sent: Any) -> None:
    sp = untrace.span("manual")
    sp.end()
    sp.end()
    assert list(sent()) == ["manual"]


def test_observe_sync_captures_args_and_result(sent: Any) -> None:
    @untrace.observe
    def add(a: int, b: int = 2) -> int:
        return a + b

    @untrace.observe(name="outer", kind="agent", capture_input=False)
    def outer() -> int:
        return add(1, b=5)

    assert outer() == 6
    assert add.__name__ == "add"
    t = sent()
    name = "test_observe_sync_captures_args_and_result.<locals>.add"
    assert t[name]["request"]["parameters"] == {"a": 1, "b": 5}
    assert t[name]["response"]["content"] == "6"
    assert t[name]["parentId"] == t["outer"]["id"]
    assert t["outer"]["kind"] == "agent" and t["outer"]["request"] == {}


def test_observe_method_skips_self(sent: Any) -> None:
    class Agent:
        @untrace.observe(name="act")
        def act(self, goal: str) -> str:
            return goal.upper()

    assert Agent().act("go") == "GO"
    assert sent()["act"]["request"]["parameters"] == {"goal": "go"}


def test_observe_error(sent: Any) -> None:
    @untrace.observe(name="bad")
    def bad() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        bad()
    assert sent()["bad"]["error"]["type"] == "ValueError"


async def test_observe_async_and_concurrent_tasks_keep_their_parents(
    collector: Collector,
) -> None:
    untrace.init("k", base_url=collector.url, flush_interval=30)

    @untrace.observe(name="branch")
    async def branch(i: int) -> int:
        await asyncio.sleep(0.01 * (3 - i))  # finish in reverse order
        with untrace.span(f"inner{i}"):
            await asyncio.sleep(0)
        return i

    async with untrace.span("root") as root:
        results = await asyncio.gather(*(branch(i) for i in range(3)))
    assert results == [0, 1, 2]
    assert untrace.flush(5)
    traces = collector.accepted()
    branches = {t["request"]["parameters"]["i"]: t for t in traces if t["name"] == "branch"}
    inner = {t["name"]: t for t in traces if t["name"].startswith("inner")}
    for i in range(3):
        assert branches[i]["parentId"] == root.id
        assert inner[f"inner{i}"]["parentId"] == branches[i]["id"]


async def test_observe_async_links_each_leaf_to_its_own_inner(
    collector: Collector,
) -> None:
    untrace.init("k", base_url=collector.url, flush_interval=30)

    @untrace.observe(name="leaf")
    async def leaf(i: int) -> int:
        await asyncio.sleep(0.01 * (3 - i))
        return i

    async def run(i: int) -> None:
        with untrace.span(f"inner{i}"):
            await leaf(i)

    await asyncio.gather(*(run(i) for i in range(3)))
    assert untrace.flush(5)
    traces = collector.accepted()
    inner = {t["name"]: t["id"] for t in traces if t["name"].startswith("inner")}
    for t in traces:
        if t["name"] == "leaf":
            i = t["request"]["parameters"]["i"]
            assert t["parentId"] == inner[f"inner{i}"]
            assert t["response"]["content"] == str(i)


def test_observe_generator_covers_iteration_and_restores_context(sent: Any) -> None:
    @untrace.observe(name="gen")
    def gen(n: int) -> Iterator[str]:
        for i in range(n):
            with untrace.span(f"step{i}"):
                pass
            yield f"<{i}>"

    with untrace.span("consumer") as consumer:
        out = []
        for item in gen(3):
            assert untrace.current_span() is consumer  # between items the caller's span
            with untrace.span(f"use{item}"):
                pass
            out.append(item)
    assert out == ["<0>", "<1>", "<2>"]
    t = sent()
    assert t["gen"]["parentId"] == consumer.id
    assert t["gen"]["response"]["content"] == "<0><1><2>"
    for i in range(3):
        assert t[f"step{i}"]["parentId"] == t["gen"]["id"]
        assert t[f"use<{i}>"]["parentId"] == consumer.id


def test_observe_generator_send_throw_and_early_close(sent: Any) -> None:
    @untrace.observe(name="echo")
    def echo() -> Iterator[Any]:
        got = yield "ready"
        while True:
            try:
                got = yield f"echo:{got}"
            except KeyError:
                got = yield "caught"

    g = echo()
    assert next(g) == "ready"
    assert g.send("a") == "echo:a"
    assert g.throw(KeyError("k")) == "caught"
    g.close()

    @untrace.observe(name="failing-gen")
    def failing() -> Iterator[int]:
        yield 1
        raise RuntimeError("mid-stream")

    with pytest.raises(RuntimeError):
        list(failing())
    t = sent()
    assert "error" not in t["echo"]  # closed early is not an error
    assert t["failing-gen"]["error"]["message"] == "mid-stream"


async def test_observe_async_generator(sent: Any) -> None:
    @untrace.observe(name="agen")
    async def agen(n: int) -> AsyncIterator[str]:
        for i in range(n):
            await asyncio.sleep(0)
            with untrace.span(f"astep{i}"):
                pass
            yield str(i)

    async with untrace.span("aconsumer") as consumer:
        out = [x async for x in agen(3)]
        assert untrace.current_span() is consumer
    assert out == ["0", "1", "2"]
    t = sent()
    assert t["agen"]["parentId"] == consumer.id
    assert t["agen"]["response"]["content"] == "012"
    assert t["astep2"]["parentId"] == t["agen"]["id"]


def test_threads_do_not_share_current_span(sent: Any) -> None:
    seen: list[Any] = []
    with untrace.span("main"):
        thread = threading.Thread(target=lambda: seen.append(untrace.current_span()))
        thread.start()
        thread.join()
    assert seen == [None]


def test_client_span_and_observe_use_that_client(collector: Collector) -> None:
    client = untrace.Untrace("own", base_url=collector.url)

    @client.observe(name="mine")
    def mine() -> str:
        with client.span("inside"):
            return "x"

    mine()
    assert client.flush(5)
    names = sorted(t["name"] for t in collector.accepted())
    assert names == ["inside", "mine"]
    assert collector.requests[0]["auth"] == "Bearer own"
