"""Start a stand-in shop as a real process on a free loopback port, for replay tests.

A shop is any module run as ``python -m MODULE --port 0 ...`` from the checkout's root
that prints ``serving http://127.0.0.1:PORT`` once it serves (the example shops in
examples/shops/, tests/_auth_shop.py). :func:`running` waits for that line, never for
a fixed time, and stops the shop (SIGTERM, then SIGKILL) when the block ends.
"""

from __future__ import annotations

import contextlib
import json
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flashsale._ports import free_port
from flashsale.children import die_with_parent

__all__ = ["READY_TIMEOUT_S", "ROOT", "books", "closed_port", "free_port", "running"]

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 60.0
"""Bound on a shop's start (generous: a loaded machine); not a wall-clock assertion."""


@contextlib.contextmanager
def running(module: str, log: Path, *args: str) -> Iterator[str]:
    """Run ``python -m MODULE --port 0 ARGS`` from the root, its stderr into ``log``;
    yield its base URL once it serves; stop it when the block ends."""
    cmd = [sys.executable, "-m", module, "--port", "0", *args]
    with log.open("wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, preexec_fn=die_with_parent
        )
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n"):
            ready, _, _ = select.select(
                [proc.stdout], [], [], max(0.0, deadline - time.monotonic())
            )
            chunk = proc.stdout.readline() if ready else b""
            if not chunk:  # EOF (it died) or no line in time
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{module} did not start (rc={proc.poll()}):\n{tail}")
            line += chunk
        first = line.decode().strip()
        assert first.startswith("serving http://127.0.0.1:"), first
        yield first.removeprefix("serving ")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


def books(command: str, db: Path, *args: str) -> dict[str, Any]:
    """``python -m examples.shops.books COMMAND --db DB ARGS``: its one JSON line."""
    done = subprocess.run(
        [sys.executable, "-m", "examples.shops.books", command, "--db", str(db), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    answer: dict[str, Any] = json.loads(lines[0])
    return answer


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released: connecting is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
