"""Benchmark of the reference checkout service on loopback; prints figures and ratios.

    .venv/bin/python bench/service_bench.py [--seconds 5] [--connections 64]
        [--clients 1] [--pg postgresql://postgres@127.0.0.1:5432/test] [--profile DIR]

For each backend (SQLite, PostgreSQL) it measures, at saturation:
  * checkout: POST /v1/checkout on holds reserved beforehand (untimed): the
    checkout attempts/s the issue's target (1,500/s) is about;
  * journey: POST /v1/cart then POST /v1/checkout, back to back;
and, as the reference ceiling of the same server, GET /healthz (no database, no
worker slot). Ratios are to that ceiling. Oversell is checked with /admin/audit
after every phase. ``--profile DIR`` runs the server under pyinstrument and
writes where its time goes to DIR/<backend>.txt.

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
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from flashsale.scenario import Scenario, parse_scenario
from flashsale.service.server import PROFILE_ENV, ServiceURL, run_in_background

MAX_REQUESTS_PER_CONNECTION = 200_000


def bench_scenario() -> Scenario:
    """A sale that cannot sell out during the benchmark; no injected latency."""
    return parse_scenario(
        {
            "schema_version": 1,
            "name": "bench",
            "sale": {"sku": "B", "units": 50_000_000, "window_s": 86_400},
            "humans": {"count": 1},
            "service": {"workers": 64, "queue_limit": 100_000, "cart_hold_s": 3600},
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
    host: str, port: int, mode: str, cid: int, until: float, holds: list[int], out: dict[str, Any]
) -> None:
    c = await Conn.open(host, port)
    lat: list[float] = out["lat"]
    statuses: dict[int, int] = out["status"]
    for i in range(MAX_REQUESTS_PER_CONNECTION):
        if time.perf_counter() >= until:
            break
        account = cid * 1_000_000 + i
        t0 = time.perf_counter()
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
                if status != 201:
                    statuses[status] = statuses.get(status, 0) + 1
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
        lat.append(time.perf_counter() - t0)
        statuses[status] = statuses.get(status, 0) + 1
    c.w.close()


def _client_process(args: tuple[str, int, str, int, int, float, list[Any]]) -> dict[str, Any]:
    host, port, mode, first_cid, connections, seconds, holds = args
    out: dict[str, Any] = {"lat": [], "status": {}}
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
    with mp.get_context("spawn").Pool(clients) as pool:
        parts = pool.map(_client_process, jobs)
    lat = np.concatenate([np.asarray(p["lat"]) for p in parts]) if parts else np.zeros(0)
    statuses: dict[int, int] = {}
    for p in parts:
        for k, v in p["status"].items():
            statuses[k] = statuses.get(k, 0) + v
    elapsed = max(p["elapsed"] for p in parts)
    return {
        "mode": mode,
        "requests": int(lat.size),
        "per_s": lat.size / elapsed,
        "p50_ms": float(np.percentile(lat, 50) * 1e3) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99) * 1e3) if lat.size else float("nan"),
        "status": statuses,
        "holds": [h for p in parts for h in p["holds"]],
    }


async def _reserve(url: str, n: int, connections: int) -> list[tuple[int, int]]:
    """Holds for the checkout phase (untimed)."""
    host, port = url.removeprefix("http://").split(":")
    holds: list[tuple[int, int]] = []

    async def one(k: int) -> None:
        c = await Conn.open(host, int(port))
        for i in range(k, n, connections):
            account = 900_000_000 + i
            body = json.dumps({"account": account, "sku": "B", "units": 1}).encode()
            status, resp = await c.call("POST", "/v1/cart", body)
            if status == 201:
                holds.append((json.loads(resp)["reservation_id"], account))
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
    with run_in_background(bench_scenario(), db=db, env=env) as url:
        phase = lambda mode, holds=None: run_phase(  # noqa: E731
            url, mode, args.seconds, args.clients, args.connections, holds
        )
        results["healthz"] = phase("healthz")
        guess = int(results["healthz"]["per_s"] * args.seconds * 0.8)
        holds = asyncio.run(_reserve(url, guess, 32))
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


def report(name: str, r: dict[str, Any]) -> None:
    ceiling = r["healthz"]["per_s"]
    print(f"\n== {name}")
    for mode, label in (
        ("healthz", "GET /healthz (ceiling)"),
        ("checkout", "checkout attempts"),
        ("journey", "cart+checkout journeys"),
    ):
        x = r[mode]
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(x["status"].items()))
        print(
            f"  {label:26s} {x['per_s']:8.0f}/s  p50 {x['p50_ms']:6.2f} ms"
            f"  p99 {x['p99_ms']:7.2f} ms  ratio to ceiling {x['per_s'] / ceiling:4.2f}  [{codes}]"
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
    ap.add_argument("--profile", default=None, help="folder for pyinstrument reports of the server")
    args = ap.parse_args()
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    if not args.no_pg:
        backends.append(("postgresql", args.pg))
    print(
        f"service_bench: {args.seconds:g} s per phase, {args.clients} client process(es) x "
        f"{args.connections} connections, loopback"
    )
    for name, db in backends:
        report(name, bench_backend(name, db, args))
    if args.profile:
        print(f"\nserver profiles (pyinstrument): {args.profile}/<backend>.txt")


if __name__ == "__main__":
    main()
