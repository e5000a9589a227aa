"""The ``untrace`` command: a thin layer over the library."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from untrace_server import cli_keys_dlq
from untrace_server.cli_manage import destinations_app, replay_cmd, secrets_app, traces_app
from untrace_server.cli_rules import rules_app
from untrace_server.config import Settings, load_settings, parse_duration
from untrace_server.control.crypto import Keyring
from untrace_server.control.keys import SCOPES, generate_key
from untrace_server.control.store import ControlStore
from untrace_server.errors import ConfigError
from untrace_server.queue import queue_from_settings
from untrace_server.queue.base import DELIVERY_PREFIX, Queue, delivery_topic

__all__ = ["main"]

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Untrace: LLM trace forwarding.")
# the offline keys/dlq commands below; cli_keys_dlq's keys/dlq add --url and call them
keys_app = typer.Typer(no_args_is_help=True, help="API keys in the local store.")
dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter queue.")
app.add_typer(cli_keys_dlq.keys_app, name="keys")
app.add_typer(cli_keys_dlq.dlq_app, name="dlq")
app.add_typer(rules_app, name="rules")
app.add_typer(destinations_app, name="destinations")
app.add_typer(traces_app, name="traces")
app.add_typer(secrets_app, name="secrets")
app.command("replay")(replay_cmd)
console = Console(width=None if sys.stdout.isatty() else 240)
err_console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="data directory")]


def load_cli_settings(config: Path | None, data_dir: Path | None, **kw: Any) -> Settings:
    try:
        return load_settings(config, data_dir=data_dir, **kw)
    except ConfigError as exc:
        console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="listen port")] = None,
    data_dir: DataDirOpt = None,
    role: Annotated[str | None, typer.Option(help="all, api or worker")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert")] = None,
) -> None:
    """Run the server (receivers, worker and deliverers in one process by default)."""
    import uvicorn

    from untrace_server.app import build_app
    from untrace_server.observability.logging import configure_logging

    settings = load_cli_settings(config, data_dir, host=host, port=port, role=role)
    configure_logging(settings.log_level, settings.log_json)
    try:
        application = build_app(settings)
    except ConfigError as exc:
        print(f"untrace: config error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=int(max(1, settings.shutdown_grace_s)),
        access_log=False,
        # Python's server context refuses anything older than TLS 1.2
        ssl_certfile=str(tls_cert or settings.security.tls_cert or "") or None,
        ssl_keyfile=str(tls_key or settings.security.tls_key or "") or None,
    )


def run_with_store(
    settings: Settings,
    fn: Callable[[ControlStore], Awaitable[T]],
    keyring: Keyring | None = None,
) -> T:
    """Open the local control store, run ``fn`` on it, close it."""

    async def go() -> T:
        store = ControlStore.from_settings(settings, keyring)
        await store.start()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


@keys_app.command("create")
def keys_create(
    customer: Annotated[str, typer.Option(help="customer the key belongs to")],
    scopes: Annotated[str, typer.Option(help=f"comma-separated: {', '.join(SCOPES)}")] = "ingest",
    expires_in: Annotated[str | None, typer.Option(help="e.g. 30d, 12h")] = None,
    name: Annotated[str, typer.Option(help="a label")] = "",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    bad = [s for s in wanted if s not in SCOPES]
    if bad or not wanted:
        console.print(f"[red]unknown scopes {bad}[/red]; choose from {', '.join(SCOPES)}")
        raise typer.Exit(2)
    try:
        expires_at = time.time() + parse_duration(expires_in) if expires_in else None
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    settings = load_cli_settings(config, data_dir)
    key = generate_key()
    record = run_with_store(
        settings,
        lambda s: s.add_key(
            key, customer_id=customer, scopes=wanted, name=name, expires_at=expires_at
        ),
    )
    err_console.print(
        f"created key {record.id} for customer {customer!r} "
        f"(scopes {','.join(wanted)}); it is shown only once:",
        highlight=False,
    )
    print(key)


@keys_app.command("list")
def keys_list(
    customer: Annotated[str | None, typer.Option()] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List keys (prefix, customer, scopes, expiry) — never the keys themselves."""
    settings = load_cli_settings(config, data_dir)
    found = run_with_store(settings, lambda s: s.list_keys(customer))
    table = Table("id", "prefix", "customer", "scopes", "created", "expires", "revoked")
    for k in found:
        table.add_row(
            k.id,
            k.prefix,
            k.customer_id,
            ",".join(sorted(k.scopes)),
            _when(k.created_at),
            _when(k.expires_at),
            _when(k.revoked_at),
        )
    console.print(table)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if t else "-"


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Revoke a key by its id."""
    settings = load_cli_settings(config, data_dir)
    if not run_with_store(settings, lambda s: s.revoke_key(key_id)):
        console.print(f"[red]no active key {key_id}[/red]")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")


def _run_queue(settings: Settings, fn: Callable[[Queue], Awaitable[T]]) -> T:
    async def go() -> T:
        queue = queue_from_settings(settings)
        await queue.start()
        try:
            return await fn(queue)
        finally:
            await queue.close()

    return asyncio.run(go())


def _topic(destination: str | None) -> str | None:
    """'customer/dest' (or 'dest' of customer 'default') → its outbox topic."""
    if destination is None:
        return None
    customer, _, dest = destination.rpartition("/")
    return delivery_topic(customer or "default", dest)


@dlq_app.command("list")
def dlq_list(
    destination: Annotated[str | None, typer.Option(help="customer/destination")] = None,
    limit: int = 100,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List dead letters with their last error."""
    settings = load_cli_settings(config, data_dir)
    letters = _run_queue(settings, lambda q: q.list_dead(_topic(destination), limit))
    table = Table("id", "destination", "trace id", "attempts", "dead at", "error")
    for d in letters:
        table.add_row(
            str(d.id),
            d.topic.removeprefix(DELIVERY_PREFIX),
            d.key,
            str(d.attempts),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.dead_at)),
            d.error[:120],
        )
    console.print(table)
    console.print(f"{len(letters)} dead letters", style="dim")


@dlq_app.command("replay")
def dlq_replay(
    destination: Annotated[str | None, typer.Option(help="customer/destination")] = None,
    id: Annotated[
        list[int] | None, typer.Option("--id", help="dead letter id (repeatable)")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Make dead letters deliverable again (a running server picks them up)."""
    settings = load_cli_settings(config, data_dir)
    count = _run_queue(settings, lambda q: q.replay_dead(_topic(destination), id or None))
    console.print(f"replayed {count} dead letters")


@app.command()
def version() -> None:
    """Print the version."""
    from untrace_server import __version__

    print(__version__)


def main() -> None:
    app()
