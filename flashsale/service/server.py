"""Running the service: in the foreground (``flashsale serve``) or as a subprocess.

:func:`run_in_background` is what tests and the replay use: it starts
``flashsale serve`` in a child process on a free loopback port (a real process,
so a test can SIGKILL it), waits until it answers, yields its base URL and stops
it cleanly. uvicorn runs with httptools and uvloop when they are installed, and
with an accept loop of its own (:class:`_Server`), so that waiting connections
are the service's to count and refuse, not the kernel's to hide.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import uvicorn

from flashsale.children import die_with_parent
from flashsale.scenario import Scenario
from flashsale.service.app import create_app
from flashsale.service.runtime import Runtime

__all__ = [
    "ADMIN_TOKEN_ENV",
    "PROFILE_ENV",
    "ServiceURL",
    "bind",
    "is_loopback",
    "new_admin_token",
    "run_in_background",
    "serve",
]

PROFILE_ENV = "FLASHSALE_PROFILE"
"""Environment variable: write a pyinstrument report of the server to this path."""

ADMIN_TOKEN_ENV = "FLASHSALE_ADMIN_TOKEN"
"""Environment variable holding the admin token (kept off the command line)."""

BACKLOG = 4096
"""The kernel's accept queue: a burst of connections waits there only until the
next turn of the event loop, which takes them all (:class:`_Server`)."""

_ACCEPT_BATCH = 1024
"""Connections taken per readiness of the listening socket, so that a flood of
connections cannot keep the loop from the requests it already has."""

_ACCEPT_RETRY_S = 1.0
"""Out of file descriptors: stop accepting this long (as asyncio does)."""

_log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free port. Listening before the app has
    started means early clients wait in the backlog instead of being refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(BACKLOG)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, taking every waiting connection each time a listening socket is
    readable.

    Under uvloop, libuv accepts one connection per turn of the event loop (libuv
    pull request 3696). With hundreds of busy keep-alive connections a turn lasts
    tens of milliseconds, so a burst of new connections waited in the kernel's
    accept queue for seconds (issue 11: 650-700 of 1,000, p99 25.6 s against
    ``queue_timeout_s`` = 2): a queue without limit or timeout, invisible to the
    capacity limiter. Accepted at once, their requests reach the limiter, which
    serves, queues or refuses them (503) by the scenario's rules.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._listeners: list[socket.socket] = []
        self._accepting: set[socket.socket] = set()
        self._connecting: set[asyncio.Task[Any]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's lifespan; no listener of uvicorn's
        if not self.started:
            return
        protocol: Any = self.config.http_protocol_class  # what uvicorn's own listener makes
        self._protocol = functools.partial(
            protocol,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        self._listeners = list(sockets or [])
        for sock in self._listeners:
            sock.setblocking(False)
            self._start_accepting(sock)

    def _start_accepting(self, sock: socket.socket) -> None:
        if not self.should_exit and sock.fileno() >= 0 and sock not in self._accepting:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)
            self._accepting.add(sock)

    def _stop_accepting(self, sock: socket.socket) -> None:
        if sock in self._accepting:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            self._accepting.discard(sock)

    def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:  # EMFILE, ENFILE, ENOBUFS: the connections wait
                _log.warning("accept: %s; accepting again in %g s", e, _ACCEPT_RETRY_S)
                self._stop_accepting(sock)
                loop.call_later(_ACCEPT_RETRY_S, self._start_accepting, sock)
                return
            conn.setblocking(False)
            task = loop.create_task(loop.connect_accepted_socket(self._protocol, conn))
            self._connecting.add(task)
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        self._connecting.discard(task)
        if not task.cancelled() and (e := task.exception()) is not None:
            _log.debug("a connection closed before it was set up: %r", e)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for sock in self._listeners:
            self._stop_accepting(sock)
        await super().shutdown(sockets=sockets)  # closes the listening sockets


def serve(
    runtime: Runtime, sock: socket.socket, on_started: Callable[[], None] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's graceful shutdown); ``on_started`` runs
    once the sale is loaded.

    With ``FLASHSALE_PROFILE=path`` in the environment the server samples itself
    with pyinstrument and writes a text report there on shutdown (a profiler
    wrapping the process would not: uvicorn re-raises SIGTERM after shutting down).
    """
    on_stopped = None
    profile_to = os.environ.get(PROFILE_ENV)
    if profile_to:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled")
        started = on_started

        def on_started() -> None:
            profiler.start()
            if started is not None:
                started()

        def on_stopped() -> None:
            profiler.stop()
            Path(profile_to).write_text(profiler.output_text(unicode=False, color=False))

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - Windows
        loop = "asyncio"
    config = uvicorn.Config(
        create_app(runtime, on_started, on_stopped),
        loop=loop,
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=30,
        backlog=BACKLOG,
    )
    # the stdlib loop accepts in batches already; libuv does not (_Server)
    server = _Server(config) if loop == "uvloop" else uvicorn.Server(config)
    server.run(sockets=[sock])


class ServiceURL(str):
    """The base URL (a str), with what a caller needs besides: the admin token, the
    database and the server process."""

    admin_token: str
    db: str
    process: subprocess.Popen[bytes]

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


def new_admin_token() -> str:
    """A random admin token that is safe on a command line: hex, so it never starts
    with ``-``, which argparse would take for an option (``--admin-token -x...``)."""
    return secrets.token_hex(24)


@contextlib.contextmanager
def run_in_background(
    scenario: Scenario,
    host: str = "127.0.0.1",
    port: int = 0,
    db: str | Path | None = None,
    *,
    admin_token: str | None = None,
    fresh: bool = True,
    opens_in_s: float = 0.0,
    ready_timeout_s: float = 300.0,
    env: Mapping[str, str] | None = None,
) -> Iterator[ServiceURL]:
    """Start the service in a child process; yield its base URL; stop it.

    ``db`` None: a fresh SQLite file in a temporary folder. ``fresh`` False resumes
    the sale already in ``db`` (a restart). The yielded URL carries
    ``.admin_token`` (random unless given), ``.db`` and ``.process``.
    ``env`` adds environment variables for the server (e.g. ``PROFILE_ENV``).

    Waiting for the start is event-based: the server writes its ready file once it
    listens, and a server that exits is noticed at once. ``ready_timeout_s`` is only
    a safety bound for a server that hangs (it starts in about a second; on a machine
    loaded by other work, many times that), so it is generous. Raises RuntimeError
    with the tail of the server's log when it exits or hangs before it is ready.
    """
    if not is_loopback(host):
        raise ValueError(f"host {host!r}: run_in_background binds loopback only")
    token = admin_token or new_admin_token()
    with tempfile.TemporaryDirectory(prefix="flashsale-serve-") as tmp:
        spec = Path(tmp) / "scenario.json"
        spec.write_text(json.dumps(scenario.to_toml_dict()))
        ready = Path(tmp) / "ready"
        database = str(db) if db is not None else str(Path(tmp) / "sale.db")
        cmd = [
            sys.executable,
            "-c",
            # the command alone: the full CLI would import the chart stack for nothing
            "import typer; from flashsale.commands.serve import serve_command; "
            "typer.run(serve_command)",
            str(spec),
            "--host",
            host,
            "--port",
            str(port),
            "--db",
            database,
            "--opens-in",
            str(opens_in_s),
            "--ready-file",
            str(ready),
            "--fresh" if fresh else "--resume",
        ]
        log = (Path(tmp) / "server.log").open("wb")
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), ADMIN_TOKEN_ENV: token},
            preexec_fn=die_with_parent,
        )
        try:
            deadline = time.monotonic() + ready_timeout_s
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    hung = proc.poll() is None
                    proc.kill()
                    proc.wait()
                    tail = (Path(tmp) / "server.log").read_text(errors="replace")[-2000:]
                    why = f"not ready within {ready_timeout_s:g} s" if hung else "it exited"
                    raise RuntimeError(f"the service did not start ({why}):\n{tail}")
                time.sleep(0.05)
            url = ServiceURL(ready.read_text().strip())
            url.admin_token, url.db, url.process = token, database, proc
            yield url
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)  # a profiler launcher writes its report here
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
