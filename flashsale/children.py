"""Child processes that do not outlive the flashsale command that started them.

``flashsale replay`` starts the reference service and Locust as child processes,
``flashsale simulate`` and ``flashsale sweep`` a pool of simulation workers; each
command stops them on its way out, Ctrl-C and SIGTERM included. A parent killed
outright (SIGKILL, the OOM killer) has no way out: its service would listen on its
loopback port for ever, and its workers would finish their replications (hundreds
of MB each) for nobody and then wait for work that never comes. On Linux the kernel
can signal a child when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere
this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["die_with_parent", "orphaned"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Loaded here, in the parent: between fork and exec the child should only make the
# one system call, not load a library.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """``preexec_fn`` for ``subprocess.Popen`` (or a pool's initializer): the child gets
    ``sig`` (default SIGTERM, its graceful stop) when the process that started it dies,
    however it dies.

    Linux watches the *thread* that forked, not the process: start such a child from
    a thread that lives as long as it should (every caller here uses the main thread).
    A parent that died before this call is not watched: a caller that cares checks
    :func:`orphaned` afterwards.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def orphaned(parent: int) -> bool:
    """True when this process is no longer the child of ``parent`` (it died, and the
    process was handed to init or a subreaper)."""
    return os.getppid() != parent
