"""``untrace destinations|replay|traces|secrets …``: the management API from the command
line, with ``--url`` (and ``--key`` / ``UNTRACE_KEY``) against a running server;
``secrets rotate`` works on the local store. Long operations show a progress bar.
``keys`` and ``dlq`` (both ways) are in ``cli_keys_dlq.py``."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.progress import Progress

from untrace_server.control.catalog import DestinationCatalog
from untrace_server.errors import ConfigError, IngestError

__all__ = ["destinations_app", "replay_cmd", "secrets_app", "traces_app"]

destinations_app = typer.Typer(no_args_is_help=True, help="Destinations (through the API).")
traces_app = typer.Typer(
    no_args_is_help=True, help="Trace status and a live view of traces (through the API)."
)
secrets_app = typer.Typer(no_args_is_help=True, help="Secrets at rest.")

UrlOpt = Annotated[str, typer.Option("--url", envvar="UNTRACE_URL", help="server base URL")]
KeyOpt = Annotated[str, typer.Option("--key", envvar="UNTRACE_KEY", help="API key")]
CustomerOpt = Annotated[
    str | None, typer.Option("--customer", help="offline: whose; --url: admin acting for")
]
MaybeUrl = Annotated[
    str | None,
    typer.Option("--url", envvar="UNTRACE_URL", help="server base URL; without it: offline"),
]
MaybeKey = Annotated[
    str | None, typer.Option("--key", envvar="UNTRACE_KEY", help="API key (with --url)")
]
ConfigFileOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (offline)")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="data directory (offline)")]
T = TypeVar("T")


def _remote(url: str | None, key: str | None) -> bool:
    if url and not key:
        typer.echo("--url needs --key (or UNTRACE_KEY)", err=True)
        raise typer.Exit(2)
    return bool(url)


def _call(url: str, key: str, method: str, path: str, **kw: Any) -> Any:
    params = kw.pop("params", {}) or {}
    with httpx.Client(base_url=url.rstrip("/"), timeout=60) as client:
        r = client.request(
            method, path, headers={"Authorization": f"Bearer {key}"}, params=params, **kw
        )
    if r.status_code >= 400:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text
        typer.echo(f"error {r.status_code}: {message}", err=True)
        raise typer.Exit(1)
    return r.json() if r.content else None


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _offline(
    config: Path | None, data_dir: Path | None, fn: Callable[[DestinationCatalog], Awaitable[T]]
) -> T:
    """Run ``fn`` on the local store's destination catalog (no server needed)."""
    from untrace_server.cli import load_cli_settings
    from untrace_server.cli_rules import _with_topology

    settings = load_cli_settings(config, data_dir)
    try:
        return _with_topology(settings, lambda topology: fn(DestinationCatalog(topology)))
    except (ConfigError, IngestError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _customer(customer: str | None) -> str:
    if not customer:
        raise typer.BadParameter("--customer is required without --url")
    return customer


@destinations_app.command("list")
def destinations_list(
    url: MaybeUrl = None,
    key: MaybeKey = None,
    customer: CustomerOpt = None,
    config_file: ConfigFileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List destinations (secrets masked): through the API with --url, else the local store."""
    if _remote(url, key):
        params = {"customer": customer} if customer else {}
        _print(_call(str(url), str(key), "GET", "/api/v1/destinations", params=params))
        return
    name = _customer(customer)
    _print(list(_offline(config_file, data_dir, lambda c: c.effective(name)).values()))


@destinations_app.command("create")
def destinations_create(
    id: Annotated[str, typer.Option("--id")],
    type: Annotated[str, typer.Option("--type")],
    config: Annotated[str, typer.Option("--config-json", help="the connector config as JSON")],
    url: MaybeUrl = None,
    key: MaybeKey = None,
    customer: CustomerOpt = None,
    config_file: ConfigFileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a destination; the config is validated by its connector."""
    body = {"id": id, "type": type, "config": json.loads(config)}
    if _remote(url, key):
        params = {"customer": customer} if customer else {}
        _print(_call(str(url), str(key), "POST", "/api/v1/destinations", json=body,
                     params=params))  # fmt: skip
        return
    name = _customer(customer)
    _print(_offline(config_file, data_dir,
                    lambda c: c.create(name, id, type, body["config"], True)))  # fmt: skip


@destinations_app.command("delete")
def destinations_delete(
    id: str,
    url: MaybeUrl = None,
    key: MaybeKey = None,
    customer: CustomerOpt = None,
    config_file: ConfigFileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete a destination (not one declared in the config file, nor one still routed to)."""
    if _remote(url, key):
        params = {"customer": customer} if customer else {}
        _call(str(url), str(key), "DELETE", f"/api/v1/destinations/{id}", params=params)
    else:
        name = _customer(customer)
        _offline(config_file, data_dir, lambda c: c.delete(name, id))
    typer.echo(f"deleted {id}")


@destinations_app.command("test")
def destinations_test(url: UrlOpt, key: KeyOpt, id: str) -> None:
    """Send one synthetic trace and report the result."""
    result = _call(url, key, "POST", f"/api/v1/destinations/{id}/test")
    _print(result)
    if not result["ok"]:
        raise typer.Exit(1)


@destinations_app.command("health")
def destinations_health(url: UrlOpt, key: KeyOpt, id: str) -> None:
    _print(_call(url, key, "GET", f"/api/v1/destinations/{id}/health"))


@traces_app.command("status")
def traces_status(url: UrlOpt, key: KeyOpt, trace_id: str) -> None:
    """Per destination: pending, retrying, delivered or dead."""
    _print(_call(url, key, "GET", f"/api/v1/traces/{trace_id}"))


@traces_app.command("tail")
def traces_tail(
    url: UrlOpt,
    key: KeyOpt,
    since: Annotated[str, typer.Option(help="start this far back: 30s, 5m, 2h")] = "1m",
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="keep watching")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object a line")] = False,
    full: Annotated[bool, typer.Option(help="whole traces (with --json)")] = False,
    customer: CustomerOpt = None,
    interval: Annotated[float, typer.Option(help="seconds between polls", min=0.1)] = 1.0,
) -> None:
    """Print the traces the server routes, oldest first, like ``tail -f``."""
    from untrace_server.config import parse_duration

    params: dict[str, Any] = {"since": time.time() - parse_duration(since), "limit": 500}
    if full:
        params["full"] = "true"
    if customer:
        params["customer"] = customer
    announced = not follow
    try:
        while True:
            page = _call(url, key, "GET", "/api/v1/traces", params=params)
            if not announced:  # after the first answer: what comes next will be shown
                started = time.strftime("%H:%M:%S", time.localtime(params["since"]))
                typer.echo(f"watching traces accepted since {started} (Ctrl-C stops)", err=True)
                announced = True
            for summary in page["traces"]:
                if not full:
                    summary.pop("trace", None)
                typer.echo(json.dumps(summary) if as_json else _tail_line(summary))
            if page["cursor"]:
                params["cursor"] = page["cursor"]
            if len(page["traces"]) < params["limit"]:  # caught up
                if not follow:
                    return
                time.sleep(interval)
    except KeyboardInterrupt:
        return


def _tail_line(s: dict[str, Any]) -> str:
    """One trace as a line: when, id, what, tokens, latency, session, error."""
    when = time.strftime("%H:%M:%S", time.localtime(s["start_time"] / 1000))
    what = "/".join(p for p in (s["provider"], s["model"]) if p) or s["name"] or "-"
    parts = [when, s["id"], s["kind"], what]
    if s["total_tokens"] is not None:
        parts.append(f"{s['total_tokens']} tok")
    if s["latency_ms"] is not None:
        parts.append(f"{s['latency_ms']:.0f} ms")
    if s["session_id"]:
        parts.append(f"session={s['session_id']}")
    if s["error"]:
        parts.append(f"ERROR {s['error']}")
    return "  ".join(parts)


def replay_cmd(
    url: UrlOpt,
    key: KeyOpt,
    destination: Annotated[str, typer.Option(help="the destination to backfill")],
    since: Annotated[str, typer.Option(help="how far back: 2h, 3d …")],
    filter: Annotated[str | None, typer.Option(help="condition group as JSON")] = None,
) -> None:
    """Re-send retained traces of a time range to one destination, with progress."""
    from untrace_server.config import parse_duration

    body: dict[str, Any] = {
        "destination": destination,
        "since": time.time() - parse_duration(since),
    }
    if filter:
        body["filter"] = json.loads(filter)
    job = _call(url, key, "POST", "/api/v1/replay", json=body)
    with Progress() as progress:
        task = progress.add_task(f"replay to {destination}", total=None)
        while job["state"] == "running":
            progress.update(
                task, completed=job["scanned"], description=f"published {job['published']}"
            )
            time.sleep(0.5)
            job = _call(url, key, "GET", f"/api/v1/replay/{job['id']}")
        progress.update(task, total=job["scanned"], completed=job["scanned"])
    _print(job)
    if job["state"] != "done":
        raise typer.Exit(1)


@secrets_app.command("rotate")
def secrets_rotate(
    config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Re-wrap every stored destination secret under a new master key. Without a
    configured UNTRACE_MASTER_KEY a new key is generated into the data dir's key file
    (the old one stays there for the other nodes); with one, the stored secrets are
    re-wrapped under it (keep the old in security.previous_master_keys until done)."""
    from untrace_server.cli import load_cli_settings, run_with_store
    from untrace_server.control import crypto

    settings = load_cli_settings(config, data_dir)
    if not settings.master_key:
        path = crypto.keyring_file(settings.data_dir)
        existing = path.read_text().split() if path.exists() else []
        crypto.write_keyring_file(path, [crypto.new_master_key(), *existing])
    keyring = crypto.load_keyring(
        settings.master_key, settings.security.previous_master_keys, settings.data_dir
    )

    count = run_with_store(settings, lambda store: store.rewrap_secrets(), keyring)
    typer.echo(f"re-wrapped the secrets of {count} destinations under key {keyring.current}")
