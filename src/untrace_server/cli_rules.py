"""``untrace rules …``: test, apply, history and rollback of routing documents, against
the local store (the server picks up a stored change within seconds)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer
import yaml

from untrace_server import model
from untrace_server.cli_manage import MaybeKey, MaybeUrl
from untrace_server.config import Settings
from untrace_server.control.store import ControlStore
from untrace_server.control.topology import Topology
from untrace_server.errors import ConfigError
from untrace_server.pipeline.config import RoutingConfig, build_pipeline
from untrace_server.pipeline.dryrun import explain

__all__ = ["rules_app"]

T = TypeVar("T")

rules_app = typer.Typer(no_args_is_help=True, help="Routing rules: test, apply, history, rollback.")

CustomerOpt = Annotated[
    str | None, typer.Option("--customer", help="customer id (offline: required; --url: admin)")
]


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="data directory")]


def _api(url: str | None, key: str | None) -> bool:
    """Whether to go through a running server's API (``--url``) rather than the store."""
    from untrace_server.cli_manage import _remote

    return _remote(url, key)


def _call(url: str | None, key: str | None, method: str, path: str, customer: str | None,
          **kw: Any) -> Any:  # fmt: skip
    from untrace_server.cli_manage import _call as call

    return call(str(url), str(key), method, path,
                params={"customer": customer} if customer else {}, **kw)  # fmt: skip


def _need(customer: str | None) -> str:
    if not customer:
        raise typer.BadParameter("--customer is required without --url")
    return customer


def _ctx(config: Path | None, data_dir: Path | None) -> tuple[Settings, Any]:
    from untrace_server import cli

    return cli.load_cli_settings(config, data_dir), cli.console


def _with_topology(settings: Settings, fn: Callable[[Topology], Awaitable[T]]) -> T:
    from untrace_server.cli import run_with_store

    async def go(store: ControlStore) -> T:
        topology = Topology(settings, store)
        await topology.refresh(force=True)
        return await fn(topology)

    return run_with_store(settings, go)


def _load_document(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise typer.BadParameter(f"{path} must hold a routing document (a mapping)")
    # accept a whole config file's customer section too
    document: dict[str, Any] = loaded.get("routing", loaded)
    return document


def _validate(topology: Topology, customer: str, document: dict[str, Any]) -> dict[str, Any]:
    """Compile the document against the customer's destinations; return its normal form."""
    known = {d.id for d in topology.customers.get(customer, _empty()).destinations if d.enabled}
    build_pipeline(document, customer_id=customer, known_destinations=known)
    normal: dict[str, Any] = RoutingConfig.model_validate(document).model_dump(
        by_alias=True, exclude_none=True
    )
    return normal


def _empty() -> Any:
    from untrace_server.config import CustomerConfig

    return CustomerConfig()


@rules_app.command("test")
def rules_test(
    trace: Annotated[Path, typer.Option("--trace", help="a Trace as JSON")],
    customer: CustomerOpt = None,
    rules: Annotated[Path | None, typer.Option("--rules", help="routing YAML to try")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    url: MaybeUrl = None,
    key: MaybeKey = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Show what would happen to a trace: matched rules, sampling, destinations, and each
    destination's transformed trace as a diff. Nothing is delivered."""
    settings, console = _ctx(config, data_dir)
    try:
        data = json.loads(trace.read_text())
        sample = model.from_builtins(data)
    except (OSError, ValueError, msgspec.ValidationError) as exc:
        console.print(f"[red]cannot use {trace}: {exc}[/red]")
        raise typer.Exit(2) from None
    document = _load_document(rules) if rules else None
    if _api(url, key):
        body = {"trace": data, **({"document": document} if document is not None else {})}
        print(json.dumps(_call(url, key, "POST", "/api/v1/rules/test", customer, json=body),
                         indent=2))  # fmt: skip
        return
    name = _need(customer)

    async def run(topology: Topology) -> Any:
        cust = topology.customers.get(name)
        if cust is None and document is None:
            raise ConfigError(f"customer {name!r} has no configuration")
        doc = document if document is not None else cust.routing  # type: ignore[union-attr]
        known = {d.id for d in (cust.destinations if cust else []) if d.enabled}
        if document is not None and cust is None:
            known = set(doc.get("defaultDestinations", []))
        return explain(build_pipeline(doc, customer_id=name, known_destinations=known), sample)

    try:
        report = _with_topology(settings, run)
    except ConfigError as exc:
        console.print(f"[red]invalid rules:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report.to_text())


@rules_app.command("apply")
def rules_apply(
    file: Annotated[Path, typer.Option("-f", "--file", help="routing YAML")],
    customer: CustomerOpt = None,
    comment: Annotated[str, typer.Option(help="why this change")] = "",
    url: MaybeUrl = None,
    key: MaybeKey = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Validate a routing document and store it as the customer's next version."""
    settings, console = _ctx(config, data_dir)
    document = _load_document(file)
    if _api(url, key):
        out = _call(url, key, "PUT", "/api/v1/rules", customer,
                    json={"document": document, "comment": comment})  # fmt: skip
        console.print(f"stored routing version {out['version']}")
        return
    name = _need(customer)

    async def run(topology: Topology) -> int:
        normal = _validate(topology, name, document)
        return await topology.store.put_routing(name, normal, "cli", comment)

    try:
        version = _with_topology(settings, run)
    except ConfigError as exc:
        console.print(f"[red]invalid rules, nothing stored:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"stored routing version {version} for customer {name!r}")


@rules_app.command("history")
def rules_history(
    customer: CustomerOpt = None,
    url: MaybeUrl = None,
    key: MaybeKey = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List the stored versions of a customer's routing document, newest first."""
    settings, console = _ctx(config, data_dir)
    if _api(url, key):
        rows = [
            (v["version"], v["created_at"], v["created_by"], v["document"], v["comment"])
            for v in _call(url, key, "GET", "/api/v1/rules/history", customer)
        ]
    else:
        name = _need(customer)
        rows = [
            (v.version, v.created_at, v.created_by, v.document, v.comment)
            for v in _with_topology(settings, lambda t: t.store.routing_history(name))
        ]
    from rich.table import Table

    table = Table("version", "created", "by", "rules", "comment")
    for version, created_at, created_by, document, comment in rows:
        table.add_row(
            str(version),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created_at)),
            created_by,
            str(len(document.get("rules", []))),
            comment,
        )
    console.print(table)
    if not rows:
        console.print("no stored versions: the config file's routing applies", style="dim")


@rules_app.command("rollback")
def rules_rollback(
    version: int,
    customer: CustomerOpt = None,
    url: MaybeUrl = None,
    key: MaybeKey = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Store an earlier version again as the newest (after re-validating it)."""
    settings, console = _ctx(config, data_dir)
    if _api(url, key):
        out = _call(url, key, "POST", "/api/v1/rules/rollback", customer,
                    json={"version": version})  # fmt: skip
        console.print(f"version {version} is live again as version {out['version']}")
        return
    name = _need(customer)

    async def run(topology: Topology) -> int:
        found = [v for v in await topology.store.routing_history(name) if v.version == version]
        if not found:
            raise ConfigError(f"customer {name!r} has no routing version {version}")
        normal = _validate(topology, name, found[0].document)
        return await topology.store.put_routing(
            name, normal, "cli", f"rollback to version {version}"
        )

    try:
        new = _with_topology(settings, run)
    except ConfigError as exc:
        console.print(f"[red]rollback refused:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"version {version} is live again as version {new}")
