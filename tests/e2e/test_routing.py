"""Routing through a running server: rules, redaction per route, enrichment, and hot
reload from the store (``untrace rules apply``/``rollback``) and from the config file."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from tests.support.server import ServerProcess, make_trace, wait_until
from tests.support.sink import WebhookSink

ServerFactory = Callable[..., ServerProcess]
SinkFactory = Callable[..., WebhookSink]

REDACT_PROD = {
    "id": "redact-prod",
    "name": "Production traces, redacted, to the vendor",
    "enabled": True,
    "priority": 10,
    "conditions": {"all": [{"field": "$.metadata.environment", "operator": "eq", "value": "prod"}]},
    "actions": {
        "destinations": ["vendor"],
        "transformations": ["pii_redaction"],
        "metadata": {"routedBy": "redact-prod"},
    },
}


def config(
    internal: WebhookSink, vendor: WebhookSink, rules: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "customers": {
            "default": {
                "destinations": [
                    {"id": "internal", "type": "webhook", "config": {"url": internal.url}},
                    {"id": "vendor", "type": "webhook", "config": {"url": vendor.url}},
                ],
                "routing": {"defaultDestinations": ["internal"], "rules": rules},
            }
        },
        "delivery": {"max_wait_s": 0.05},
    }


def secret_trace(i: int, environment: str) -> dict[str, Any]:
    return make_trace(
        i,
        request={
            "messages": [
                {"role": "user", "content": "I am jane.doe@example.com, card 4111 1111 1111 1111"}
            ]
        },
        metadata={"environment": environment},
    )


def by_id(sink: WebhookSink) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for d in sink.deliveries for t in d.traces}


def eventually_routed(
    server: ServerProcess,
    want: WebhookSink,
    other: WebhookSink,
    make: Callable[[int], Any],
    within_s: float = 10.0,
) -> bool:
    """Post one trace at a time until one reaches ``want`` (a reload has taken effect)."""
    deadline = time.monotonic() + within_s
    i = 1000
    while time.monotonic() < deadline:
        i += 1
        assert server.post_traces([make(i)]).status_code == 202
        trace_id = f"t-{i}"
        wait_until(lambda t=trace_id: t in by_id(want) or t in by_id(other), 5)
        if trace_id in by_id(want):
            return True
        time.sleep(0.2)
    return False


def test_rules_route_and_redact_only_where_asked(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    internal, vendor = sink_factory(), sink_factory()
    server = server_factory(config(internal, vendor, [REDACT_PROD])).start()
    assert server.post_traces([secret_trace(1, "prod"), secret_trace(2, "dev")]).status_code == 202
    assert wait_until(lambda: "t-1" in by_id(vendor) and "t-2" in by_id(internal), 10)
    # a matching rule replaces the default destinations: prod goes to the vendor only
    assert set(by_id(vendor)) == {"t-1"} and set(by_id(internal)) == {"t-2"}
    prod = by_id(vendor)["t-1"]
    content = prod["request"]["messages"][0]["content"]
    assert "jane.doe@example.com" not in content and "4111" not in content
    assert "[REDACTED:EMAIL]" in content
    assert prod["metadata"]["routedBy"] == "redact-prod"
    # nothing unredacted ever reached the vendor
    raw = json.dumps([d.traces for d in vendor.deliveries])
    assert "jane.doe@example.com" not in raw
    dev = by_id(internal)["t-2"]
    assert "jane.doe@example.com" in dev["request"]["messages"][0]["content"]
    # enrichment: cost from the bundled price table, throughput from usage and latency
    assert dev["metrics"]["estimated_cost"] > 0
    assert dev["metrics"]["tokens_per_second"] > 0


def test_document_wide_redaction_reaches_every_destination(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    """``transformations`` at the top of the routing document: the default destination
    and a rule's destination both receive the redacted trace, never the original."""
    internal, vendor = sink_factory(), sink_factory()
    plain_rule = {**REDACT_PROD, "actions": {"destinations": ["vendor"]}}
    cfg = config(internal, vendor, [plain_rule])
    cfg["customers"]["default"]["routing"]["transformations"] = ["pii_redaction"]
    server = server_factory(cfg).start()
    assert server.post_traces([secret_trace(1, "prod"), secret_trace(2, "dev")]).status_code == 202
    assert wait_until(lambda: "t-1" in by_id(vendor) and "t-2" in by_id(internal), 10)
    for sink in (vendor, internal):
        raw = json.dumps([d.traces for d in sink.deliveries])
        assert "jane.doe@example.com" not in raw and "4111 1111" not in raw
        assert "[REDACTED:EMAIL]" in raw


def test_rules_apply_history_rollback_hot_reload(
    server_factory: ServerFactory, sink_factory: SinkFactory, tmp_path: Path
) -> None:
    internal, vendor = sink_factory(), sink_factory()
    server = server_factory(config(internal, vendor, [])).start()
    assert server.post_traces([secret_trace(1, "prod")]).status_code == 202
    assert wait_until(lambda: "t-1" in by_id(internal), 10)

    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        yaml.safe_dump({"defaultDestinations": ["internal"], "rules": [REDACT_PROD]})
    )
    applied = server.cli("rules", "apply", "--customer", "default", "-f", str(rules_file))
    assert applied.returncode == 0 and "version 1" in applied.stdout, (
        applied.stdout + applied.stderr
    )

    # the running server picks the stored version up within seconds, without a restart
    assert eventually_routed(server, vendor, internal, lambda i: secret_trace(i, "prod"))

    # an invalid document is refused whole and nothing is stored
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"defaultDestinations": ["nowhere"], "rules": []}))
    refused = server.cli("rules", "apply", "--customer", "default", "-f", str(bad))
    assert refused.returncode == 2 and "nowhere" in refused.stdout

    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"defaultDestinations": ["vendor"], "rules": []}))
    assert server.cli("rules", "apply", "--customer", "default", "-f", str(plain)).returncode == 0
    history = server.cli("rules", "history", "--customer", "default")
    assert history.returncode == 0
    assert [line.split()[1] for line in history.stdout.splitlines() if line.startswith("│")][
        :2
    ] == ["2", "1"]

    rolled = server.cli("rules", "rollback", "--customer", "default", "1")
    assert rolled.returncode == 0 and "live again as version 3" in rolled.stdout
    dry = tmp_path / "trace.json"
    dry.write_text(json.dumps(secret_trace(9, "prod")))
    report = server.cli("rules", "test", "--customer", "default", "--trace", str(dry))
    assert report.returncode == 0, report.stderr
    assert "redact-prod" in report.stdout and "[REDACTED:EMAIL]" in report.stdout
    assert "t-9" not in by_id(vendor) and "t-9" not in by_id(internal)  # nothing delivered


def test_config_file_change_takes_effect_without_restart(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    internal, vendor = sink_factory(), sink_factory()
    server = server_factory(config(internal, vendor, [])).start()
    assert server.post_traces([make_trace(1)]).status_code == 202
    assert wait_until(lambda: "t-1" in by_id(internal), 10)

    changed = config(internal, vendor, [])
    changed["customers"]["default"]["routing"]["defaultDestinations"] = ["vendor"]
    server.config_path.write_text(yaml.safe_dump(changed))

    assert eventually_routed(server, vendor, internal, make_trace)
    # a broken edit is refused and the previous configuration keeps running
    server.config_path.write_text(
        "customers: {default: {routing: {defaultDestinations: [ghost]}}}\n"
    )
    assert wait_until(lambda: "configuration change not applied" in server.log(), 10)
    assert "ghost" in server.log()
    assert server.post_traces([make_trace(50)]).status_code == 202
    assert wait_until(lambda: "t-50" in by_id(vendor), 10)


def test_rules_cli_through_the_api(
    server_factory: ServerFactory, sink_factory: SinkFactory, tmp_path: Path
) -> None:
    internal, vendor = sink_factory(), sink_factory()
    server = server_factory(config(internal, vendor, [])).start()
    remote = ("--url", server.url, "--key", server.key)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        yaml.safe_dump({"defaultDestinations": ["internal"], "rules": [REDACT_PROD]})
    )
    applied = server.cli("rules", "apply", "-f", str(rules_file), "--comment", "via api", *remote)
    assert applied.returncode == 0 and "stored routing version 1" in applied.stdout, applied.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"defaultDestinations": ["nowhere"]}))
    refused = server.cli("rules", "apply", "-f", str(bad), *remote)
    assert refused.returncode == 1 and "nowhere" in refused.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"defaultDestinations": ["vendor"]}))
    assert server.cli("rules", "apply", "-f", str(plain), *remote).returncode == 0
    history = server.cli("rules", "history", *remote)
    assert [ln.split()[1] for ln in history.stdout.splitlines() if ln.startswith("│")] == ["2", "1"]
    rolled = server.cli("rules", "rollback", "1", *remote)
    assert "live again as version 3" in rolled.stdout, rolled.stderr
    sample = tmp_path / "trace.json"
    sample.write_text(json.dumps(secret_trace(1, "prod")))
    report = server.cli("rules", "test", "--trace", str(sample), *remote)
    assert report.returncode == 0, report.stderr
    assert "redact-prod" in report.stdout and "[REDACTED:EMAIL]" in report.stdout
    # the same store offline sees what the API wrote
    offline = server.cli("rules", "history", "--customer", "default")
    assert next(ln.split()[1] for ln in offline.stdout.splitlines() if ln.startswith("│")) == "3"
