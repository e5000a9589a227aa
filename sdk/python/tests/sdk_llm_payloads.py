"""What the mock LLM upstream answers: OpenAI chat completions (plain and chunks),
Responses API objects and events, Anthropic messages and events — built from the
request the way the real APIs build them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

COMPLETION_TEXT = "Hello from the mock"
TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
STREAM_PARTS = ["Hel", "lo ", "from ", "the ", "stream"]


# the answer to a request for structured output (response_format / text.format)
STRUCTURED = '{"city":"Paris","temperature":21}'


def _json_schema(req: dict[str, Any]) -> bool:
    fmt = req.get("response_format") or (req.get("text") or {}).get("format") or {}
    return fmt.get("type") == "json_schema"


def _openai_completion(req: dict[str, Any]) -> dict[str, Any]:
    content = STRUCTURED if _json_schema(req) else COMPLETION_TEXT
    message: dict[str, Any] = {"role": "assistant", "content": content}
    finish = "stop"
    if req.get("tools"):
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        }
        finish = "tool_calls"
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": req["model"] + "-0613",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": 11,
            "completion_tokens": 7,
            "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 3},
        },
    }


def _openai_chunks(req: dict[str, Any]) -> Iterator[dict[str, Any]]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1}
    model = req["model"] + "-0613"
    if req.get("tools"):
        deltas: list[dict[str, Any]] = [
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            },
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        ]
        finish = "tool_calls"
    else:
        deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in STREAM_PARTS]
        finish = "stop"
    # like the real API: with include_usage every chunk carries "usage": null, and a
    # last chunk with no choices carries the usage; without it there is no usage at all
    with_usage = bool((req.get("stream_options") or {}).get("include_usage"))
    if with_usage:
        base["usage"] = None
    for d in deltas:
        yield {**base, "model": model, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
    yield {**base, "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    if with_usage:
        yield {
            **base,
            "model": model,
            "choices": [],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
        }


def _responses_output(req: dict[str, Any]) -> list[dict[str, Any]]:
    answer = STRUCTURED if _json_schema(req) else COMPLETION_TEXT
    text = {"type": "output_text", "text": answer, "annotations": []}
    output: list[dict[str, Any]] = [
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [text],
        }
    ]
    if req.get("tools"):
        output.append(
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
                "status": "completed",
            }
        )
    return output


def _responses_response(
    req: dict[str, Any], status: str, output: list[dict[str, Any]], usage: bool
) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": req["model"] + "-0613",
        "status": status,
        "output": output,
        "usage": {
            "input_tokens": 11,
            "input_tokens_details": {"cached_tokens": 3},
            "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 18,
        }
        if usage
        else None,
        "error": None,
        "incomplete_details": None,
        "instructions": req.get("instructions"),
        "metadata": {},
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": req.get("tools") or [],
        "temperature": req.get("temperature"),
        "top_p": None,
    }


def _responses_events(req: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    seq = iter(range(1000))

    def ev(kind: str, **data: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **data}

    final = _responses_output(req)
    yield ev("response.created", response=_responses_response(req, "in_progress", [], False))
    message = {**final[0], "status": "in_progress", "content": []}
    yield ev("response.output_item.added", output_index=0, item=message)
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    yield ev("response.content_part.added", **where, part=part)
    for delta in STREAM_PARTS:
        yield ev("response.output_text.delta", **where, delta=delta, logprobs=[])
    text = "".join(STREAM_PARTS)
    yield ev("response.output_text.done", **where, text=text, logprobs=[])
    part = {"type": "output_text", "text": text, "annotations": []}
    yield ev("response.content_part.done", **where, part=part)
    final[0]["content"] = [part]
    yield ev("response.output_item.done", output_index=0, item=final[0])
    if req.get("tools"):
        call = {**final[1], "arguments": "", "status": "in_progress"}
        yield ev("response.output_item.added", output_index=1, item=call)
        for delta in ('{"city":', '"Paris"}'):
            kind = "response.function_call_arguments.delta"
            yield ev(kind, item_id="fc_1", output_index=1, delta=delta)
        yield ev(
            "response.function_call_arguments.done",
            item_id="fc_1",
            output_index=1,
            name="get_weather",
            arguments='{"city":"Paris"}',
        )
        yield ev("response.output_item.done", output_index=1, item=final[1])
    yield ev("response.completed", response=_responses_response(req, "completed", final, True))


def _anthropic_message(req: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": COMPLETION_TEXT}]
    stop = "end_turn"
    if req.get("tools"):
        content.append(
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
        )
        stop = "tool_use"
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": req["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6, "cache_read_input_tokens": 4},
    }


def _anthropic_events(req: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": req["model"],
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 12, "output_tokens": 1},
            },
        },
    )
    yield (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    for part in STREAM_PARTS:
        yield (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": part},
            },
        )
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    stop = "end_turn"
    if req.get("tools"):
        stop = "tool_use"
        yield (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {},
                },
            },
        )
        for part in ('{"city":', ' "Paris"}'):
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": part},
                },
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": 1}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": 9},
        },
    )
    yield "message_stop", {"type": "message_stop"}
