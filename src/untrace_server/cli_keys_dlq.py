"""``untrace keys|dlq …``: through the management API with ``--url`` (and ``--key`` /
``UNTRACE_KEY``), else on the local store and queue (the offline commands in
``cli.py``)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from untrace_server.cli_manage import (
    ConfigFileOpt,
    DataDirOpt,
    KeyOpt,
    MaybeKey,
    MaybeUrl,
    _call,
    _remote,
)

__all__ = ["dlq_app", "keys_app"]

# -- keys and dead letters: through the API with --url, else the local store ----------

keys_app = typer.Typer(
    no_args_is_help=True, help="API keys: through the API with --url, else the local store."
)
dlq_app = typer.Typer(
    no_args_is_help=True,
    help="The dead-letter queue: through the API with --url, else the local queue.",
)

ConfigOpt = ConfigFileOpt
DestOpt = Annotated[str | None, typer.Option(help="[customer/]destination")]


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if t else "-"


def _split(destination: str | None, customer: str | None) -> dict[str, str]:
    """'customer/dest' → the API's customer and destination parameters."""
    params = {"customer": customer} if customer else {}
    if destination:
        owner, _, dest = destination.rpartition("/")
        params["destination"] = dest
        if owner:
            params["customer"] = owner
    return params


@keys_app.command("create")
def keys_create(
    customer: Annotated[str | None, typer.Option(help="the key's customer")] = None,
    scopes: Annotated[str, typer.Option(help="comma-separated scopes")] = "ingest",
    expires_in: Annotated[str | None, typer.Option(help="e.g. 30d, 12h")] = None,
    name: Annotated[str, typer.Option(help="a label")] = "",
    url: MaybeUrl = None,
    key: MaybeKey = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from untrace_server import cli
    from untrace_server.config import parse_duration

    if not _remote(url, key):
        if customer is None:
            typer.echo("offline, --customer is required", err=True)
            raise typer.Exit(2)
        cli.keys_create(customer, scopes, expires_in, name, config, data_dir)
        return
    body: dict[str, Any] = {"name": name, "scopes": [s.strip() for s in scopes.split(",")]}
    if expires_in:
        body["expires_in_s"] = int(parse_duration(expires_in))
    params = {"customer": customer} if customer else {}
    made = _call(str(url), str(key), "POST", "/api/v1/keys", json=body, params=params)
    typer.echo(
        f"created key {made['id']} for customer {made['customer']!r} "
        f"(scopes {','.join(made['scopes'])}); it is shown only once:",
        err=True,
    )
    typer.echo(made["key"])


@keys_app.command("list")
def keys_list(
    customer: Annotated[str | None, typer.Option()] = None,
    url: MaybeUrl = None,
    key: MaybeKey = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List keys (prefix, customer, scopes, expiry) — never the keys themselves."""
    from untrace_server import cli

    if not _remote(url, key):
        cli.keys_list(customer, config, data_dir)
        return
    params = {"customer": customer} if customer else {}
    found = _call(str(url), str(key), "GET", "/api/v1/keys", params=params)
    table = Table(
        "id", "prefix", "customer", "scopes", "created", "last used", "expires", "revoked"
    )
    for k in found:
        table.add_row(
            k["id"],
            k["prefix"],
            k["customer"],
            ",".join(k["scopes"]),
            *(_when(k[f]) for f in ("created_at", "last_used_at", "expires_at", "revoked_at")),
        )
    cli.console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: str,
    customer: Annotated[str | None, typer.Option(help="admin: act for")] = None,
    url: MaybeUrl = None,
    key: MaybeKey = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a key by its id."""
    from untrace_server import cli

    if not _remote(url, key):
        cli.keys_revoke(key_id, config, data_dir)
        return
    params = {"customer": customer} if customer else {}
    _call(str(url), str(key), "DELETE", f"/api/v1/keys/{key_id}", params=params)
    typer.echo(f"revoked {key_id}")


@keys_app.command("rotate")
def keys_rotate(
    key_id: str,
    url: Annotated[str, typer.Option("--url", envvar="UNTRACE_URL", help="server base URL")],
    key: KeyOpt,
    overlap: Annotated[str, typer.Option(help="how long the old key keeps working")] = "1h",
    customer: Annotated[str | None, typer.Option(help="admin: act for")] = None,
) -> None:
    """A new key with the same grants; the old one expires after the overlap (server only:
    the running server's key cache must learn of it)."""
    from untrace_server.config import parse_duration

    body = {"overlap_s": int(parse_duration(overlap))}
    params = {"customer": customer} if customer else {}
    made = _call(url, key, "POST", f"/api/v1/keys/{key_id}/rotate", json=body, params=params)
    typer.echo(f"rotated {key_id} → {made['id']}; the new key is shown only once:", err=True)
    typer.echo(made["key"])


@dlq_app.command("list")
def dlq_list(
    destination: DestOpt = None,
    error: Annotated[str | None, typer.Option(help="text in the error (with --url)")] = None,
    limit: int = 100,
    url: MaybeUrl = None,
    key: MaybeKey = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List dead letters with their last error."""
    from untrace_server import cli

    if not _remote(url, key):
        cli.dlq_list(destination, limit, config, data_dir)
        return
    params: dict[str, Any] = {**_split(destination, None), "limit": limit}
    if error:
        params["error"] = error
    letters = _call(str(url), str(key), "GET", "/api/v1/dlq", params=params)
    table = Table("id", "destination", "trace id", "attempts", "dead at", "error")
    for d in letters:
        dead_at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d["dead_at"]))
        table.add_row(
            d["id"], d["destination"], d["trace_id"], str(d["attempts"]), dead_at, d["error"][:120]
        )
    cli.console.print(table)
    cli.console.print(f"{len(letters)} dead letters", style="dim")


def _dlq_act(
    action: str, url: str, key: str, destination: str | None, ids: list[str] | None, all_: bool
) -> int:
    params = _split(destination, None)
    body: dict[str, Any] = {"all": all_}
    if "destination" in params:
        body["destination"] = params.pop("destination")
    if ids:
        body["ids"] = ids
    result = _call(url, key, "POST", f"/api/v1/dlq/{action}", json=body, params=params)
    return int(result["count"])


IdsOpt = Annotated[list[str] | None, typer.Option("--id", help="dead letter id (repeatable)")]
AllOpt = Annotated[bool, typer.Option("--all", help="with --url: act on every dead letter")]


@dlq_app.command("replay")
def dlq_replay(
    destination: DestOpt = None,
    id: IdsOpt = None,
    all_: AllOpt = False,
    url: MaybeUrl = None,
    key: MaybeKey = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Make dead letters deliverable again (a running server picks them up)."""
    from untrace_server import cli

    if not _remote(url, key):
        cli.dlq_replay(destination, [int(i) for i in id] if id else None, config, data_dir)
        return
    count = _dlq_act("replay", str(url), str(key), destination, id, all_)
    typer.echo(f"replayed {count} dead letters")


@dlq_app.command("purge")
def dlq_purge(
    destination: DestOpt = None,
    id: IdsOpt = None,
    all_: AllOpt = False,
    url: MaybeUrl = None,
    key: MaybeKey = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete dead letters for good (give ids, a destination, or --all)."""
    from untrace_server import cli

    if destination is None and not id and not all_:
        typer.echo("give --id, --destination or --all", err=True)
        raise typer.Exit(2)
    if _remote(url, key):
        count = _dlq_act("purge", str(url), str(key), destination, id, all_)
    else:
        settings = cli.load_cli_settings(config, data_dir)
        ids = [int(i) for i in id] if id else None
        count = cli._run_queue(settings, lambda q: _purge_local(q, cli._topic(destination), ids))
    typer.echo(f"purged {count} dead letters")


async def _purge_local(queue: Any, topic: str | None, ids: list[int] | None) -> int:
    purge = getattr(queue, "purge_dead", None)
    if purge is None:
        typer.echo("this queue backend cannot purge dead letters", err=True)
        raise typer.Exit(1)
    topics = [topic] if topic else list((await queue.stats()).dead)
    return sum([await purge(t, ids) for t in topics])
