"""Pipeline throughput on one core: router + sampler + (PII redaction) + cost enrichment.

    .venv/bin/python bench/pipeline.py [--traces 50000]

50 rules (team/environment equality, `in`, regex, numeric thresholds, wildcard over
message roles), ~1 KB traces of which 1 in 5 carries PII, global sampling at rate 0.99
(so every trace is hashed). Two scenarios: routing only (no transformer) and with
``pii_redaction`` on every rule. Prints traces/s; the process is single-threaded.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from typing import Any

from untrace_server.model import Message, Request, Response, Trace, Usage, encode
from untrace_server.pipeline.config import build_pipeline

TEAMS = [f"team-{i}" for i in range(40)]
DESTS = {f"dest-{i}" for i in range(10)}


def rules(pii: bool) -> dict[str, Any]:
    steps: list[Any] = ["pii_redaction"] if pii else []
    out: list[dict[str, Any]] = []
    for i, team in enumerate(TEAMS):
        out.append(
            {
                "id": f"team-{i}",
                "name": f"{team} production",
                "priority": 100 - i,
                "conditions": {
                    "all": [
                        {"field": "$.metadata.tags.team", "operator": "eq", "value": team},
                        {"field": "$.metadata.environment", "operator": "eq", "value": "prod"},
                    ]
                },
                "actions": {"destinations": [f"dest-{i % 10}"], "transformations": steps},
            }
        )
    extra = [
        {"field": "$.metadata.applicationId", "operator": "in", "value": ["app-1", "app-7"]},
        {"field": "$.model", "operator": "regex", "value": "^claude-3-(5|7)"},
        {"field": "$.model", "operator": "regex", "value": "^gpt-4o"},
        {"field": "$.response.usage.total_tokens", "operator": "gt", "value": 3000},
        {"field": "$.metrics.latency_ms", "operator": "gte", "value": 5000},
        {"field": "$.metrics.estimated_cost", "operator": "gt", "value": 0.01},
        {"field": "$.request.messages[*].role", "operator": "eq", "value": "tool"},
        {
            "any": [
                {"field": "$.error", "operator": "exists"},
                {"field": "$.response.finish_reason", "operator": "eq", "value": "length"},
            ]
        },
        {"not": {"field": "$.metadata.environment", "operator": "in", "value": ["prod", "stg"]}},
        {"field": "$.request.messages[0].content", "operator": "contains", "value": "refund"},
    ]
    for j, cond in enumerate(extra):
        out.append(
            {
                "id": f"extra-{j}",
                "name": f"extra {j}",
                "priority": 10 - j,
                "conditions": cond,
                "actions": {"destinations": [f"dest-{j}"], "transformations": steps},
            }
        )
    return {
        "version": "bench",
        "rules": out,
        "defaultDestinations": ["dest-0"],
        "samplingConfig": {"rate": 0.99, "alwaysKeep": {"errors": True}},
    }


PII = [
    "Please email me at jane.doe@example.com or call +44 20 7946 0958.",
    "My card is 4111 1111 1111 1111, expiring 12/27.",
    "Use key sk-proj-abcdefghijklmnopqrstuvwx1234 for the call from 10.0.12.7.",
]
PLAIN = (
    "Summarise the following support ticket in three bullet points and suggest a reply. "
    "The customer reports that order 123456789 arrived late on 2024-03-15 and the box "
    "was damaged; version 2.14.1 of the app crashed when they opened the tracking page. "
    "They have been a customer since 2019, ordered 14 times this year and ask whether the "
    "refund can go back to the original payment method within 5-7 business days. "
)


def make_trace(rng: random.Random, i: int) -> Trace:
    text = PLAIN + (rng.choice(PII) if i % 5 == 0 else "")
    model = rng.choice(["gpt-4o-mini", "claude-3-5-sonnet-20241022", "gemini-2.0-flash", "o3"])
    start = 1_700_000_000_000 + i
    return Trace(
        id=f"trace-{i}",
        start_time=start,
        end_time=start + rng.randint(200, 8000),
        model=model,
        request=Request(
            messages=[
                Message(role="system", content="You are a careful support assistant."),
                Message(role="user", content=text),
            ],
            parameters={"temperature": 0.2, "max_tokens": 512},
        ),
        response=Response(
            content="- Late delivery\n- Damaged box\n- App crash on tracking. Reply: apologise.",
            usage=Usage(
                prompt_tokens=rng.randint(100, 3000),
                completion_tokens=rng.randint(20, 600),
                total_tokens=0,
            ),
            finish_reason="stop",
        ),
        metadata={
            "customerId": "bench",
            "applicationId": f"app-{rng.randint(0, 9)}",
            "environment": rng.choice(["prod", "prod", "stg", "dev"]),
            "tags": {"team": rng.choice(TEAMS)},
        },
    )


def run(pii: bool, traces: list[Trace]) -> tuple[float, float]:
    pipeline = build_pipeline(rules(pii), customer_id="bench", known_destinations=DESTS)
    for t in traces[:2000]:  # warm caches
        pipeline.process(t)
    routes = 0
    start = time.perf_counter()
    for t in traces:
        routes += len(pipeline.process(t))
    elapsed = time.perf_counter() - start
    return len(traces) / elapsed, routes / len(traces)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=50_000)
    args = parser.parse_args()
    rng = random.Random(7)
    traces = [make_trace(rng, i) for i in range(args.traces)]
    size = sum(len(encode(t)) for t in traces) / len(traces)
    print(
        f"python {platform.python_version()} on {platform.machine()}, {platform.processor() or ''}"
    )
    print(f"{len(traces)} traces, mean {size:.0f} bytes encoded, 50 rules")
    for label, pii in (("routing only", False), ("with pii_redaction", True)):
        rate, fanout = run(pii, traces)
        print(f"{label:>20}: {rate:>10,.0f} traces/s   ({fanout:.2f} routes per trace)")


if __name__ == "__main__":
    main()
