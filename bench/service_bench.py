"""Benchmark of the reference checkout service on loopback; prints figures and ratios.

    .venv/bin/python bench/service_bench.py [--seconds 5] [--connections 64]
        [--clients 1] [--pg postgresql://postgres@127.0.0.1:5432/test] [--no-pg]
        [--workers 64] [--queue-limit 100000] [--queue-timeout 10] [--profile DIR]

For each backend (SQLite, PostgreSQL) it measures, at saturation:
  * checkout: POST /v1/checkout on holds reserved beforehand (untimed): the
    checkout attempts/s the issue's target (1,500/s) is about;
  * journey: POST /v1/cart then POST /v1/checkout, back to back;
and, as the reference ceiling of the same server, GET /healthz (no database, no
worker slot). Ratios are to that ceiling. Oversell is checked with /admin/audit
after every phase.

The capacity model is the scenario's ``[service]`` (``--workers``,
``--queue-limit``, ``--queue-timeout``): every line counts the 503s and puts the
p99 and the slowest answer beside ``queue_timeout_s``, which no answer should
exceed by more than one request's service time. ``accept backlog`` is the
number of connections waiting in the kernel's accept queue (``/proc/net/tcp``,
every 20 ms), its peak and its mean over the phase: a queue the service can
neither see nor bound. A burst of new connections shows in the peak for a
moment; connections left waiting show in the mean.
``--workers 1 --queue-limit 0 --connections 200`` is the overload case.
``--profile DIR`` runs the server under pyinstrument and writes where its time
goes to DIR/<backend>.txt.

The load generator is a minimal keep-alive HTTP/1.1 client on raw asyncio
streams (httpx costs several times more CPU per request than the server's
handling), in ``--clients`` processes of ``--connections`` connections each.
`wrk` (apt-get install wrk) would saturate with less CPU, but this script needs
nothing beyond the project's dependencies. All traffic stays on 127.0.0.1 and
every loop is bounded by time and by a request cap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from flashsale.scenario import Scenario, parse_scenario
from flashsale.service.server import PROFILE_ENV, ServiceURL, run_in_background

MAX_REQUESTS_PER_CONNECTION = 200_000
RESERVE_S = 30.0
"""At most this long to reserve the checkout phase's holds (they run short when the
capacity model refuses most carts with 503)."""


def bench_scenario(
    workers: int = 64, queue_limit: int = 100_000, queue_timeout_s: float = 10.0
) -> Scenario:
    """A sale that cannot sell out during the benchmark; no injected latency."""
    return parse_scenario(
        {
            "schema_version": 1,
            "name": "bench",
            "sale": {"sku": "B", "units": 50_000_000, "window_s": 86_400},
            "humans": {"count": 1},
            "service": {
                "workers": workers,
                "queue_limit": queue_limit,
                "queue_timeout_s": queue_timeout_s,
                "cart_hold_s": 3600,
            },
        }
    )


class Conn:
    """One keep-alive HTTP/1.1 connection: send a request, read one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        return cls(*await asyncio.open_connection(host, port))

    async def call(
        self, method: str, path: str, body: bytes = b"", extra: str = ""
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: b\r\n{extra}"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.w.write(head.encode() + b"\r\n" + body)
        raw = await self.r.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length = int(raw.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        return status, await self.r.readexactly(length)


async def _conn_loop(
    host: str, port: int, mode: str, cid: int, until: float, holds: list[Any], out: dict[str, Any]
) -> None:
    lat: list[float] = out["lat"]
    codes: list[int] = out["code"]
    c = await Conn.open(host, port)
    for i in range(MAX_REQUESTS_PER_CONNECTION):
        if time.perf_counter() >= until:
            break
        account = cid * 1_000_000 + i
        t0 = time.perf_counter()
        try:
            if mode == "healthz":
                status, _ = await c.call("GET", "/healthz")
            elif mode == "cart":
                body = json.dumps({"account": account, "sku": "B", "units": 1}).encode()
                status, resp = await c.call("POST", "/v1/cart", body)
                if status == 201:
                    holds.append(json.loads(resp)["reservation_id"])
            else:
                if mode == "journey":
                    body = json.dumps({"account": account, "sku": "B", "units": 1}).encode()
                    status, resp = await c.call("POST", "/v1/cart", body)
                    if status != 201:  # a refused cart (503) is an answer of its own
                        lat.append(time.perf_counter() - t0)
                        codes.append(status)
                        continue
                    rid, acct = json.loads(resp)["reservation_id"], account
                    t0 = time.perf_counter()
                elif holds:
                    rid, acct = holds.pop()
                else:
                    break
                body = json.dumps({"reservation_id": rid, "account": acct}).encode()
                status, _ = await c.call(
                    "POST", "/v1/checkout", body, f"Idempotency-Key: {mode}-{cid}-{i}\r\n"
                )
        except (ConnectionError, asyncio.IncompleteReadError):
            status = 0  # the server closed the connection: counted, then a new one
            c.w.close()
            c = await Conn.open(host, port)
        lat.append(time.perf_counter() - t0)
        codes.append(status)
    c.w.close()


def _client_process(args: tuple[str, int, str, int, int, float, list[Any]]) -> dict[str, Any]:
    host, port, mode, first_cid, connections, seconds, holds = args
    out: dict[str, Any] = {"lat": [], "code": []}
    per_conn = [holds[k::connections] for k in range(connections)]

    async def main() -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                _conn_loop(host, port, mode, first_cid + k, until, per_conn[k], out)
                for k in range(connections)
            )
        )

    t0 = time.perf_counter()
    asyncio.run(main())
    out["elapsed"] = time.perf_counter() - t0
    out["holds"] = [h for hs in per_conn for h in hs]
    return out


def accept_backlog(port: int) -> int | None:
    """Connections the kernel has accepted for the listening socket on ``port`` and
    the server has not (``rx_queue`` of a LISTEN row of /proc/net/tcp); None off Linux."""
    try:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    local = f"0100007F:{port:04X}"
    for row in rows:
        f = row.split()
        if f[1] == local and f[3] == "0A":
            return int(f[4].split(":")[1], 16)
    return 0


class BacklogWatch:
    """The accept backlog while the block runs, sampled every 20 ms: the largest seen
    (a burst of new connections shows here for a moment) and the mean (connections
    left waiting show here)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            n = accept_backlog(self.port)
            if n is not None:
                self.samples.append(n)

    @property
    def largest(self) -> int | None:
        return max(self.samples) if self.samples else None

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None

    def __enter__(self) -> BacklogWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _ms(lat: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of ``lat`` (seconds) in milliseconds; nan if empty."""
    return float(np.percentile(lat, q) * 1e3) if lat.size else float("nan")


def run_phase(
    url: str,
    mode: str,
    seconds: float,
    clients: int,
    connections: int,
    holds: list[Any] | None = None,
) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    holds = holds or []
    jobs = [
        (host, int(port), mode, 1 + p * connections, connections, seconds, holds[p::clients])
        for p in range(clients)
    ]
    with BacklogWatch(int(port)) as backlog, mp.get_context("spawn").Pool(clients) as pool:
        parts = pool.map(_client_process, jobs)
    lat = np.concatenate([np.asarray(p["lat"], float) for p in parts])
    code = np.concatenate([np.asarray(p["code"], int) for p in parts])
    statuses = {int(k): int(v) for k, v in zip(*np.unique(code, return_counts=True), strict=True)}
    elapsed = max(p["elapsed"] for p in parts)
    return {
        "mode": mode,
        "requests": int(lat.size),
        "per_s": lat.size / elapsed,
        "p50_ms": _ms(lat, 50),
        "p99_ms": _ms(lat, 99),
        "max_ms": _ms(lat, 100),
        "p99_503_ms": _ms(lat[code == 503], 99),
        "n503": statuses.get(503, 0),
        "status": statuses,
        "accept_backlog": backlog.largest,
        "accept_backlog_mean": backlog.mean,
        "holds": [h for p in parts for h in p["holds"]],
    }


async def _reserve(url: str, n: int, connections: int, seconds: float) -> list[tuple[int, int]]:
    """Up to ``n`` holds for the checkout phase (untimed), for at most ``seconds``; a
    cart refused with 503 is sent again."""
    host, port = url.removeprefix("http://").split(":")
    holds: list[tuple[int, int]] = []
    until = time.perf_counter() + seconds

    async def one(k: int) -> None:
        c = await Conn.open(host, int(port))
        for i in range(k, n, connections):
            account = 900_000_000 + i
            body = json.dumps({"account": account, "sku": "B", "units": 1}).encode()
            status, resp = await c.call("POST", "/v1/cart", body)
            while status == 503 and time.perf_counter() < until:
                status, resp = await c.call("POST", "/v1/cart", body)
            if status == 201:
                holds.append((json.loads(resp)["reservation_id"], account))
            if time.perf_counter() >= until:
                break
        c.w.close()

    await asyncio.gather(*(one(k) for k in range(connections)))
    return holds


def audit(url: ServiceURL) -> dict[str, Any]:
    a: dict[str, Any] = httpx.get(
        f"{url}/admin/audit", headers=url.admin_headers, timeout=120
    ).json()
    return a


def bench_backend(name: str, db: str | None, args: argparse.Namespace) -> dict[str, Any]:
    env = {}
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        env[PROFILE_ENV] = str((Path(args.profile) / f"{name}.txt").resolve())
    results: dict[str, Any] = {}
    sc = bench_scenario(args.workers, args.queue_limit, args.queue_timeout)
    with run_in_background(sc, db=db, env=env) as url:

        def phase(mode: str, holds: list[Any] | None = None) -> dict[str, Any]:
            return run_phase(url, mode, args.seconds, args.clients, args.connections, holds)

        results["healthz"] = phase("healthz")
        guess = int(results["healthz"]["per_s"] * args.seconds * 0.8)
        holds = asyncio.run(_reserve(url, guess, 32, RESERVE_S))
        results["checkout"] = phase("checkout", holds)
        results["journey"] = phase("journey")
        a = audit(url)
        results["audit"] = {
            k: a[k]
            for k in ("units", "units_sold", "units_reserved", "stock_left", "oversold_units")
        }
        if a["units_sold"] + a["units_reserved"] + a["stock_left"] != a["units"]:
            raise SystemExit(f"{name}: the books do not balance: {results['audit']}")
    return results


def report(name: str, r: dict[str, Any], queue_timeout_s: float) -> None:
    ceiling = r["healthz"]["per_s"]
    print(f"\n== {name}")
    for mode, label in (
        ("healthz", "GET /healthz (ceiling)"),
        ("checkout", "checkout attempts"),
        ("journey", "cart+checkout journeys"),
    ):
        x = r[mode]
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(x["status"].items()))
        backlog = (
            "n/a"
            if x["accept_backlog"] is None
            else f"peak {x['accept_backlog']}, mean {x['accept_backlog_mean']:.0f}"
        )
        print(
            f"  {label:26s} {x['per_s']:8.0f}/s  p50 {x['p50_ms']:6.2f} ms"
            f"  p99 {x['p99_ms']:7.2f} ms  ratio to ceiling {x['per_s'] / ceiling:4.2f}  [{codes}]"
        )
        share = x["n503"] / x["requests"] if x["requests"] else 0.0
        print(
            f"  {'':26s} 503s {x['n503']:,} ({share:.1%}, their p99 {x['p99_503_ms']:.2f} ms);"
            f" p99 {x['p99_ms'] / 1e3:.3f} s, slowest {x['max_ms'] / 1e3:.3f} s"
            f" vs queue_timeout_s {queue_timeout_s:g} s; accept backlog {backlog}"
        )
    a = r["audit"]
    print(
        f"  audit: sold {a['units_sold']:,}, reserved {a['units_reserved']:,}, left "
        f"{a['stock_left']:,} of {a['units']:,}; oversold {a['oversold_units']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each timed phase")
    ap.add_argument("--connections", type=int, default=64, help="connections per client process")
    ap.add_argument("--clients", type=int, default=1, help="load-generator processes")
    ap.add_argument(
        "--pg", default="postgresql://postgres@127.0.0.1:5432/test?schema=flashsale_bench"
    )
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument("--workers", type=int, default=64, help="service.workers")
    ap.add_argument("--queue-limit", type=int, default=100_000, help="service.queue_limit")
    ap.add_argument("--queue-timeout", type=float, default=10.0, help="service.queue_timeout_s")
    ap.add_argument("--profile", default=None, help="folder for pyinstrument reports of the server")
    args = ap.parse_args()
    for flag, value, low in (
        ("--seconds", args.seconds, 0.1),
        ("--connections", args.connections, 1),
        ("--clients", args.clients, 1),
        ("--workers", args.workers, 1),
        ("--queue-limit", args.queue_limit, 0),
    ):
        if value < low:
            ap.error(f"{flag}: must be >= {low:g} (got {value:g})")
    if not args.queue_timeout > 0:
        ap.error(f"--queue-timeout: must be > 0 (got {args.queue_timeout:g})")
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    if not args.no_pg:
        backends.append(("postgresql", args.pg))
    print(
        f"service_bench: {args.seconds:g} s per phase, {args.clients} client process(es) x "
        f"{args.connections} connections, loopback; workers {args.workers}, queue_limit "
        f"{args.queue_limit}, queue_timeout_s {args.queue_timeout:g}"
    )
    for name, db in backends:
        report(name, bench_backend(name, db, args), args.queue_timeout)
    if args.profile:
        print(f"\nserver profiles (pyinstrument): {args.profile}/<backend>.txt")


if __name__ == "__main__":
    main()
