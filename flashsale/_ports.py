"""A free loopback port for a server flashsale starts (Locust's master)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]


def free_port() -> int:
    """A free port on 127.0.0.1, below the kernel's ephemeral range: a port from that
    range (what binding port 0 gives) can be taken by any outgoing connection between
    this check and the server's own bind (and a replay opens many).

    Raises RuntimeError when 200 tries find none free.
    """
    try:
        first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except OSError:  # not Linux: IANA's dynamic range starts at 49152
        first_ephemeral = 49_152
    for port in random.Random().sample(range(20_000, first_ephemeral), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in 20000-{first_ephemeral - 1}")
