"""``explain``: what a pipeline would do with one trace, delivering nothing.

The engine of ``untrace rules test``: matched rules, the sampling decisions, the
destinations, and per destination the trace it would receive as a unified diff against
the (enriched) trace. Counts no metric and spends no rate-limit token.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from untrace_server.model import Trace, to_builtins
from untrace_server.pipeline.rules import RulePipeline

__all__ = ["Explanation", "RouteExplanation", "explain"]


@dataclass
class RouteExplanation:
    destination_id: str
    rule_ids: list[str]
    transformations: list[str]
    diff: str  # unified diff, empty when the destination receives the trace unchanged
    trace: dict[str, Any]


@dataclass
class Explanation:
    customer_id: str
    version: str
    sampling: dict[str, Any]
    matched_rules: list[dict[str, Any]]
    default_used: bool
    routes: list[RouteExplanation] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "customerId": self.customer_id,
            "version": self.version,
            "sampling": self.sampling,
            "matchedRules": self.matched_rules,
            "defaultUsed": self.default_used,
            "routes": [
                {
                    "destinationId": r.destination_id,
                    "ruleIds": r.rule_ids,
                    "transformations": r.transformations,
                    "diff": r.diff,
                }
                for r in self.routes
            ],
            "failures": self.failures,
        }

    def to_text(self) -> str:
        lines = [f"customer {self.customer_id}, rules version {self.version}"]
        s = self.sampling
        lines.append(f"sampling: {'kept' if s['keep'] else 'dropped'} ({s['reason']})")
        if self.matched_rules:
            lines.append("matched rules:")
            for r in self.matched_rules:
                extra = f", rule sampling: {r['sampling']}" if r.get("sampling") else ""
                lines.append(f"  - {r['id']} ({r['name']}), priority {r['priority']}{extra}")
        else:
            lines.append("matched rules: none" + (" → defaultDestinations" if s["keep"] else ""))
        if not self.routes:
            lines.append("destinations: none (nothing would be delivered)")
        for route in self.routes:
            steps = ", ".join(route.transformations) or "none"
            lines.append(
                f"→ {route.destination_id}  (rules: {', '.join(route.rule_ids) or 'default'}; "
                f"transformations: {steps})"
            )
            lines.append(route.diff.rstrip("\n") if route.diff else "  (trace delivered unchanged)")
        for f in self.failures:
            lines.append(f"✗ {f['destinationId']}: {f['error']} (route dropped)")
        return "\n".join(lines) + "\n"


def _pretty(data: dict[str, Any]) -> list[str]:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False).splitlines(keepends=True)


def explain(pipeline: RulePipeline, trace: Trace) -> Explanation:
    decision = pipeline.decide(trace, record=False)
    base = to_builtins(decision.trace)
    base_lines = _pretty(base)
    by_id = {r.id: r for r in decision.matched}
    report = Explanation(
        customer_id=pipeline.customer_id,
        version=pipeline.version,
        sampling={"keep": decision.sampling.keep, "reason": decision.sampling.reason},
        matched_rules=[
            {
                "id": r.id,
                "name": r.name,
                "priority": r.priority,
                "sampling": (
                    vars(decision.rule_sampling[r.id]) if r.id in decision.rule_sampling else None
                ),
            }
            for r in decision.matched
        ],
        default_used=decision.sampling.keep and not decision.matched,
    )
    for route in decision.routes:
        data = to_builtins(route.trace)
        diff = "".join(
            difflib.unified_diff(base_lines, _pretty(data), "trace", route.destination_id, n=2)
        )
        steps: list[str] = []
        for rid in route.rule_ids:
            steps.extend(s.name for s in by_id[rid].steps if s.name not in steps)
        report.routes.append(
            RouteExplanation(route.destination_id, list(route.rule_ids), steps, diff, data)
        )
    report.failures = [{"destinationId": d, "error": e} for d, e in decision.failures]
    return report
