"""Watching processes from tests on Linux: children, liveness, waiting for events.

Waits poll for an event with a generous safety bound; nothing asserts how fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

__all__ = [
    "FLASHSALE",
    "LINUX",
    "children",
    "cpu_s",
    "dead",
    "run_flashsale",
    "start",
    "wait_until",
]

LINUX = sys.platform.startswith("linux")
FLASHSALE = Path(sys.executable).parent / "flashsale"


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()  # [state, ppid, ...]


def dead(pid: int) -> bool:
    """Gone, or a zombie waiting to be reaped: running nothing, holding no memory."""
    stat = _stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def cpu_s(pid: int) -> float | None:
    """The CPU time ``pid`` has used (user + system), in seconds; None once it is gone.

    How far a process has got in its own work, whatever the machine's load: a test
    that waits for it, not for wall-clock time, lands at the same point when loaded.
    """
    stat = _stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == str(pid) and stat[0] not in ("Z", "X"):
                out.append(int(entry.name))
    return sorted(out)


def wait_until(what: str, cond: Callable[[], object], bound_s: float = 180.0) -> None:
    """Poll ``cond()`` until true; fail (not hang) after a generous safety bound."""
    deadline = time.monotonic() + bound_s
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {bound_s:.0f} s")
        time.sleep(0.1)


def _own_group() -> None:
    # Like a shell's foreground job: its own process group (the test signals the
    # group, as a terminal's Ctrl-C does) and Ctrl-C not ignored.
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args: str) -> subprocess.Popen[str]:
    """``flashsale ARGS...`` in its own process group, stdout and stderr captured."""
    return subprocess.Popen(
        [str(FLASHSALE), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_own_group,
    )


def run_flashsale(*args: str, timeout_s: float = 900.0) -> subprocess.CompletedProcess[str]:
    """``flashsale ARGS...`` to its end, stdout and stderr captured; ``timeout_s`` is a
    safety bound for a hung command, not a speed target."""
    return subprocess.run(
        [str(FLASHSALE), *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
