"""Benchmark: one full-scale replication of a scenario, our engine vs a naive SimPy model.

    .venv/bin/python bench/sim_bench.py [scenarios/poco_m3.toml] [--naive/--no-naive]
        [--repeat N] [--sequence N]

Prints, for each model, wall and CPU time, simulated events per second, journeys
and requests per second and peak RSS (each model runs in its own process, so
RSS is its own), then the ratios. Not a test: timings depend on the machine.

Then (``--sequence N``, default 8; 0 skips it) the memory of a process that runs N
replications back to back, as a ``flashsale simulate`` worker (or ``--workers 1``)
does: its peak RSS after the first replication and after the N-th, which should
be flat (each replication is freed before the next).

The naive reference is the textbook way to write the same model: one SimPy
process per request, a ``simpy.Resource`` for the workers, a process per cart
hold, a Generator call per random draw, and results appended to lists of dicts.
It follows the same journey rules (view -> cart -> pay, refresh before the
opening, think times, patience, retries, holds, payment failures at the base
rate), so on a scenario without defenses it does comparable work; its numbers
differ from the engine's by the random draws and those simplifications (no
defenses, no load-dependent failures).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import simpy

from flashsale.arrivals import HUMAN, build_schedule
from flashsale.scenario import Scenario, load_scenario
from flashsale.sim.engine import simulate
from flashsale.sim.runner import run_jobs
from flashsale.streams import Streams

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_engine(sc: Scenario) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    res = simulate(sc)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    j = res.outcome.journeys
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "events": res.events,
        "journeys": len(j["journey"]),
        "requests": len(res.outcome.requests["journey"]),
        "units_sold": int(j["units"].sum()),
        "peak_rss_mib": _rss_mib(),
    }


def run_sequence(sc: Scenario, n: int) -> dict[str, Any]:
    """Replications 0..n-1 back to back in this process through the runner (what a
    pool worker runs per job), peak RSS after each."""
    peaks: list[float] = []
    t0 = time.perf_counter()
    run_jobs([(sc, sc.seed, r) for r in range(n)], 1, lambda i, o: peaks.append(_rss_mib()))
    return {"wall_s": time.perf_counter() - t0, "peak_rss_mib": peaks}


def run_naive(sc: Scenario, limit_s: float) -> dict[str, Any]:
    """The reference: one SimPy process per request, rows as dicts in lists.

    Stops after ``limit_s`` of CPU time if it has not finished: its figures are then
    for a partial run, and the ratio a lower bound. (Its cost grows faster than
    linearly with the queue: a client that gives up is removed from SimPy's list of
    waiting requests, a linear scan.)
    """
    streams = Streams.for_replication(sc.seed, 0)
    s = build_schedule(sc, streams["arrivals"])
    rng_h, rng_s, rng_p = streams["humans"], streams["service"], streams["payment"]
    svc, pay, h, b = sc.service, sc.service.payment, sc.humans, sc.bots
    env = simpy.Environment(initial_time=min(float(s.t[0]), 0.0))
    workers = simpy.Resource(env, capacity=svc.workers)
    available = sc.sale.split(sc.sale.units)
    requests: list[dict[str, Any]] = []
    journeys: list[dict[str, Any]] = []
    holds: dict[int, dict[str, Any]] = {}
    step_dist = {"view": svc.step_s.view, "cart": svc.step_s.cart, "pay": svc.step_s.pay}
    t0, c0 = time.perf_counter(), time.process_time()

    def expire(hid: int) -> Any:
        yield env.timeout(svc.cart_hold_s)
        hold = holds[hid]
        if hold["state"] == "held":
            hold["state"] = "expired"
            available[hold["channel"]] += hold["units"]

    def request(who: dict[str, Any], step: str, patience: float) -> Any:
        sent = env.now
        if len(workers.queue) >= svc.queue_limit and workers.count == workers.capacity:
            requests.append({"journey": who["id"], "step": step, "sent": sent, "status": 503})
            return 503
        limit = min(patience, svc.queue_timeout_s)
        with workers.request() as req:
            got = yield req | env.timeout(limit)
            if req not in got:
                status = 499 if patience < svc.queue_timeout_s else 504
                requests.append(
                    {"journey": who["id"], "step": step, "sent": sent, "status": status}
                )
                return status
            start = env.now
            yield env.timeout(float(step_dist[step].sample(rng_s, 1)[0]))
        ch = who["channel"]
        if step != "pay" and start < 0:
            status = 425
        elif step != "pay" and start > sc.sale.window_s:
            status = 409
        elif step == "view":
            status = 200 if available[ch] > 0 else 409
        elif step == "cart":
            if available[ch] < who["units"]:
                status = 409
            else:
                available[ch] -= who["units"]
                hid = len(holds)
                holds[hid] = {"state": "held", "channel": ch, "units": who["units"]}
                who["hold"] = hid
                who["carted"] = start
                env.process(expire(hid))
                status = 201
        else:
            hold = holds[who["hold"]]
            if hold["state"] != "held":
                status = 410
            else:
                hold["state"] = "paying"
                gateway = float(pay.gateway_s.sample(rng_p, 1)[0])
                if gateway > pay.timeout_s:
                    yield env.timeout(pay.timeout_s)
                    status = 504
                else:
                    yield env.timeout(gateway)
                    status = 402 if rng_p.random() < pay.failure_prob else 201
                if status == 201:
                    hold["state"] = "paid"
                    who["paid"] += hold["units"]
                else:
                    hold["state"] = "failed"
                    available[ch] += hold["units"]
            if status != 201 or hold["state"] != "paid":
                who["hold"] = None
        requests.append({"journey": who["id"], "step": step, "sent": sent, "status": status})
        return status

    def journey(who: dict[str, Any]) -> Any:
        human = who["human"]
        step = "view" if human else "cart"
        retries = h.retries_on_error if human else b.max_retries
        pace = 1.0 / b.request_rate_per_s
        while True:
            patience = (
                float(h.patience_s.sample(rng_h, 1)[0])
                if human and h.patience_s is not None
                else math.inf
            )
            status = yield env.process(request(who, step, patience))
            think = float(h.think_s.sample(rng_h, 1)[0]) if human else pace
            if status < 300:
                if step == "pay":
                    who["result"] = "purchased"
                    break
                step = "cart" if step == "view" else "pay"
            elif status == 425:
                think = h.refresh_s if human else pace
            elif status in (402, 410, 429, 503, 504) and retries > 0:
                retries -= 1
                if step == "pay" and who["hold"] is None:
                    step = "cart"
            else:
                who["result"] = "sold_out" if status == 409 else "failed"
                break
            yield env.timeout(think)
        who["finished"] = env.now
        journeys.append(who)

    def spawn() -> Any:
        for i in range(len(s)):
            t = float(s.t[i])
            if t > env.now:
                yield env.timeout(t - env.now)
            human = bool(s.kind[i] == HUMAN)
            who = {
                "id": i,
                "human": human,
                "channel": int(s.channel[i]),
                "units": h.units_per_order if human else b.units_per_order,
                "hold": None,
                "carted": math.nan,
                "paid": 0,
            }
            env.process(journey(who))

    env.process(spawn())
    finished = True
    try:
        while True:
            for _ in range(10_000):
                env.step()
            if time.process_time() - c0 > limit_s:
                finished = False
                break
    except simpy.core.EmptySchedule:
        pass
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "events": int(next(env._eid)),  # SimPy numbers every scheduled event
        "journeys": len(journeys),
        "requests": len(requests),
        "units_sold": sum(j["paid"] for j in journeys),
        "peak_rss_mib": _rss_mib(),
        "finished": finished,
        "simulated_to_s": env.now,
    }


def _child(model: str, path: str, limit_s: float, sequence: int = 0) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            path,
            "--child",
            model,
            "--naive-limit-s",
            str(limit_s),
            "--sequence",
            str(sequence),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def _show(name: str, r: dict[str, Any]) -> None:
    print(
        f"{name:>7}: wall {r['wall_s']:6.2f} s  cpu {r['cpu_s']:6.2f} s  "
        f"events {r['events']:>9,}  ({r['events'] / r['cpu_s']:>9,.0f}/s cpu)  "
        f"journeys/s {r['journeys'] / r['cpu_s']:>8,.0f}  requests {r['requests']:>9,}  "
        f"units sold {r['units_sold']:>6,}  peak RSS {r['peak_rss_mib']:6.0f} MiB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios" / "poco_m3.toml"))
    ap.add_argument(
        "--repeat", type=int, default=3, help="engine runs, each in a new process (default 3)"
    )
    ap.add_argument("--naive", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument(
        "--naive-limit-s",
        type=float,
        default=600.0,
        help="CPU seconds after which the naive model is stopped (ratio = lower bound)",
    )
    ap.add_argument(
        "--sequence",
        type=int,
        default=8,
        help="replications back to back in one process, peak RSS after the first and "
        "the last (default 8; 0 skips)",
    )
    ap.add_argument("--child", choices=("engine", "naive", "sequence"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sc = load_scenario(args.scenario)
        if args.child == "sequence":
            r = run_sequence(sc, args.sequence)
        else:
            r = run_engine(sc) if args.child == "engine" else run_naive(sc, args.naive_limit_s)
        print(json.dumps(r))
        return
    sc = load_scenario(args.scenario)
    print(
        f"{sc.name}: {sc.sale.units:,} units, {sc.humans.count:,} humans, "
        f"{sc.bots.accounts:,} bot accounts; one replication per run, each run in its own process"
    )
    if args.repeat < 1:
        ap.error(f"--repeat: must be >= 1 (got {args.repeat})")
    if args.sequence < 0 or args.sequence == 1:
        ap.error(f"--sequence: must be 0 (skip) or >= 2 (got {args.sequence})")
    print(f"  load average before: {_load()}")
    runs = [_child("engine", args.scenario, args.naive_limit_s) for _ in range(args.repeat)]
    for r in runs:
        _show("engine", r)
    walls = sorted(r["wall_s"] for r in runs)
    engine = max(runs, key=lambda r: r["wall_s"])  # judged on its slowest run
    peak_rss = max(r["peak_rss_mib"] for r in runs)
    if len(runs) > 1:
        print(
            f"  engine over {len(runs)} runs: wall min {walls[0]:.2f} s, "
            f"median {statistics.median(walls):.2f} s, max {walls[-1]:.2f} s; "
            "ratios and targets below use the slowest"
        )
    if args.naive:
        naive = _child("naive", args.scenario, args.naive_limit_s)
        _show("naive", naive)
        bound = ""
        if not naive["finished"]:
            bound = ">= "
            print(
                f"  naive stopped after {naive['cpu_s']:.0f} s of CPU at simulated "
                f"t = {naive['simulated_to_s']:.0f} s: its figures are partial, the ratios "
                "lower bounds"
            )
        print(
            f"  ratio: naive/engine wall {bound}{naive['wall_s'] / engine['wall_s']:.1f}x, "
            f"cpu {bound}{naive['cpu_s'] / engine['cpu_s']:.1f}x, "
            f"peak RSS {naive['peak_rss_mib'] / peak_rss:.1f}x"
        )
    growth = None
    if args.sequence:
        seq = _child("sequence", args.scenario, args.naive_limit_s, args.sequence)
        peaks = seq["peak_rss_mib"]
        growth = peaks[-1] / peaks[0] - 1
        print(
            f"  {args.sequence} replications back to back in one process "
            f"({seq['wall_s']:.1f} s): peak RSS {peaks[0]:.0f} MiB after 1, "
            f"{peaks[-1]:.0f} MiB after {args.sequence} ({100 * growth:+.0f}%); "
            f"after each: {', '.join(f'{p:.0f}' for p in peaks)} MiB"
        )
    print(f"  load average after: {_load()}")
    print(
        f"  targets: engine wall <= 10 s: {'yes' if engine['wall_s'] <= 10 else 'NO'}; "
        f"peak RSS <= 1 GiB: {'yes' if peak_rss <= 1024 else 'NO'}"
        + (
            f"; >= 3x faster than naive: {'yes' if naive['cpu_s'] >= 3 * engine['cpu_s'] else 'NO'}"
            if args.naive
            else ""
        )
        + (
            f"; memory flat over {args.sequence} replications (<= +10%): "
            f"{'yes' if growth <= 0.10 else 'NO'}"
            if growth is not None
            else ""
        )
    )


if __name__ == "__main__":
    main()
