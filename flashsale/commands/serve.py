"""``flashsale serve``: run the reference checkout service in the foreground.

The service (uvicorn, Starlette, the database drivers) is imported when the command
runs, not when the command line starts (``flashsale --help``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flashsale._cli_utils import SetOption, fail, load_or_exit, terminate

if TYPE_CHECKING:
    from flashsale.service.store import SaleRecord

__all__ = ["serve_command"]

ADMIN_TOKEN_ENV = "FLASHSALE_ADMIN_TOKEN"
"""``flashsale.service.server.ADMIN_TOKEN_ENV``, named here without importing that
module, which loads uvicorn (tests/test_cli_startup.py checks that they agree)."""


@contextlib.contextmanager
def _temporary_database() -> Iterator[str]:
    """A new SQLite file in a temporary folder, removed with the folder however the
    service stops: normally, on Ctrl-C or on SIGTERM.

    uvicorn stops gracefully on SIGTERM, then raises it again; Python's default for
    SIGTERM is to die on the spot, before any cleanup. So while the folder exists,
    SIGTERM raises ``Terminated`` (as under ``flashsale``'s entry point) unless the
    process has a handler of its own.
    """
    own = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    )
    if own:
        signal.signal(signal.SIGTERM, terminate)
    try:
        with tempfile.TemporaryDirectory(prefix="flashsale-", ignore_cleanup_errors=True) as d:
            yield str(Path(d) / "sale.db")
    finally:
        if own:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _check_sqlite_path(path: Path) -> None:
    """Exit 2 naming --db when the SQLite file cannot be created or opened there: found
    here, not by the service's start-up after the port is taken (a traceback, exit 3)."""
    if path.is_dir():
        fail(f"--db {path}: a folder; give a SQLite file path, e.g. {path / 'sale.db'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"--db {path}: cannot create its folder {path.parent}: {e.strerror or e}")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        fail(f"--db {path}: its folder {path.parent} is not writable")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        fail(f"--db {path}: not readable and writable")


def _sale_in(database: str) -> SaleRecord | None:
    """The sale ``database`` holds, if any (exit 2 if it cannot be opened): looked at
    before the port is taken, so a refusal is one line, not a failed start-up."""
    import asyncio
    import sqlite3

    import psycopg

    from flashsale.service.backends import describe_db, open_store

    store = open_store(database, pool_size=1)

    async def peek() -> SaleRecord | None:
        await store.setup()
        try:
            return await store.load_sale()
        finally:
            await store.close()

    try:
        return asyncio.run(peek())
    except (OSError, sqlite3.Error, psycopg.Error) as e:
        fail(f"--db: {describe_db(store)}: cannot open: {str(e).splitlines()[0]}")
    except (ValueError, TypeError) as e:  # a sale record this version cannot read
        fail(f"--db: {describe_db(store)}: holds a sale this version cannot read ({e})")


def _named(data: dict[str, object]) -> str:
    """``'smoke' (200 units of SMOKE-1)`` from a resolved scenario's data."""
    sale = data.get("sale")
    sale = sale if isinstance(sale, dict) else {}
    units = sale.get("units")
    amount = f"{units:,}" if isinstance(units, int) else "?"
    return f"{data.get('name')!r} ({amount} units of {sale.get('sku', '?')})"


def serve_command(
    scenario: Annotated[
        Path, typer.Argument(help="Scenario TOML (or resolved JSON) to put on sale.")
    ] = Path("scenarios/smoke.toml"),
    set_: SetOption = None,
    host: Annotated[
        str, typer.Option(help="Interface to bind; loopback only unless --allow-remote-bind.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="TCP port; 0 picks a free one.")
    ] = 8000,
    db: Annotated[
        str | None,
        typer.Option(
            help="postgresql://user@host:port/db[?schema=name], or a SQLite file path "
            "(default: a new SQLite file in a temporary folder)."
        ),
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(
            envvar=ADMIN_TOKEN_ENV,
            help=f"Bearer token for /admin/* (env {ADMIN_TOKEN_ENV}; default: random, printed).",
        ),
    ] = None,
    opens_in: Annotated[
        float, typer.Option("--opens-in", min=0, help="Seconds from now until the opening.")
    ] = 0.0,
    fresh: Annotated[
        bool | None,
        typer.Option(
            "--fresh/--resume",
            help="When --db already holds a sale: --fresh replaces it with SCENARIO (its "
            "orders are deleted), --resume continues it, e.g. after a crash (SCENARIO is "
            "then not used). Without either, such a --db is refused. A new or empty --db "
            "starts SCENARIO.",
            show_default=False,
        ),
    ] = None,
    allow_remote_bind: Annotated[
        bool,
        typer.Option(
            "--allow-remote-bind",
            help="Allow a non-loopback --host. The service has no user authentication: "
            "only for a closed test network.",
        ),
    ] = False,
    ready_file: Annotated[
        Path | None, typer.Option(hidden=True, help="Write the base URL here once serving.")
    ] = None,
) -> None:
    """Run the reference checkout service (HTTP API, SQLite or PostgreSQL, defenses)."""
    from flashsale.service.backends import describe_db, open_store
    from flashsale.service.runtime import Runtime
    from flashsale.service.server import bind, is_loopback, new_admin_token, serve
    from flashsale.service.sqlite_store import SqliteStore
    from flashsale.service.store import unstorable_channel

    sc = load_or_exit(scenario, set_)
    if (bad := unstorable_channel(c.name for c in sc.sale.channels)) is not None:
        fail(
            f"{scenario}: sale.channels: name {bad!r} holds a NUL character (no database keeps it)"
        )
    if not is_loopback(host) and not allow_remote_bind:
        fail(f"--host {host}: not a loopback address; add --allow-remote-bind to expose it")
    with contextlib.ExitStack() as stack:
        # no --db: a temporary folder, removed when the service stops (never a --db)
        database = db or stack.enter_context(_temporary_database())
        try:
            store = open_store(database)
        except ValueError as e:
            fail(str(e))
        if isinstance(store, SqliteStore):
            _check_sqlite_path(store.path)
        if db is not None and fresh is None and (held := _sale_in(database)) is not None:
            fail(
                f"--db: {describe_db(store)} holds the sale {_named(held.scenario)}, not "
                f"{_named(sc.to_toml_dict())} from {scenario}; add --resume to continue the "
                f"sale in the database, or --fresh to replace it (its orders are deleted)"
            )
        try:
            sock = bind(host, port)
        except OSError as e:
            fail(f"--host {host} --port {port}: cannot listen: {e}")
        token = admin_token or new_admin_token()
        bound_host, bound_port = sock.getsockname()[:2]
        url = f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}"
        # fresh None: the database held no sale a moment ago; should one have appeared
        # since, it is resumed (and the banner says so), never wiped unasked
        runtime = Runtime(store, sc, token, fresh=bool(fresh) or db is None, opens_in_s=opens_in)

        def started() -> None:
            state = "resumed the sale in" if runtime.resumed else "new sale in"
            live = runtime.scenario  # what /v1/sale serves: the database's sale when resumed
            typer.echo(f"flashsale service listening on {url} ({state} {describe_db(store)})")
            typer.echo(f"  scenario {live.name}: {live.sale.units:,} units of {live.sale.sku}")
            if runtime.resumed and live.to_toml_dict() != sc.to_toml_dict():
                typer.echo(f"  (the sale in the database; {scenario} is not used)")
            if admin_token is None:
                typer.echo(f"  admin token: {token}")
            typer.echo(f"  API: {url}/openapi.json   stop: Ctrl-C")
            if ready_file is not None:
                tmp = ready_file.with_name(ready_file.name + ".tmp")
                tmp.write_text(url)
                os.replace(tmp, ready_file)

        serve(runtime, sock, started)
