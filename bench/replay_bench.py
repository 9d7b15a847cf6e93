"""Replay benchmark: how much load one Locust process makes here, and how much poco_m3 fits.

Run on demand (not a test): ``.venv/bin/python bench/replay_bench.py``. Prints, in
one run:

1. requests/s one Locust process (FastHttpUser, no wait, 64 users, closed loop)
   reaches against the reference service's ``GET /v1/sale`` and against a trivial
   endpoint (an asyncio server answering a fixed 200) on the same machine, and
   their ratio: how far the service, not Locust, is the limit;
2. the largest scale of poco_m3 this machine replays with ``flashsale replay``
   before the load generator is the bottleneck: Locust's CPU warning ("CPU usage
   above 90%") or journeys starting more than 1 s late. To keep the run short the
   opening burst is replayed with a 20 s window and a 5 s early window
   (``--set``); the peak arrival rate is that of the real scenario.

Traffic goes to 127.0.0.1 only; every Locust run is bounded by --run-time.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from flashsale.scenario import load_scenario
from flashsale.service.server import run_in_background

ROOT = Path(__file__).resolve().parents[1]
FLASHSALE = str(Path(sys.executable).parent / "flashsale")
HAMMER = """
from locust import FastHttpUser, task

class Hammer(FastHttpUser):
    @task
    def get(self):
        self.client.get("{path}", name="get")
"""
BURST = ["--set", "sale.window_s=20", "--set", "humans.arrivals.early_window_s=5"]
SCALES = (0.002, 0.005, 0.01, 0.02)


def _hammer(url: str, path: str, seconds: int = 15, users: int = 64) -> float:
    """Closed-loop requests/s of one Locust process against ``url + path``."""
    with tempfile.TemporaryDirectory() as tmp:
        lf = Path(tmp) / "hammer.py"
        lf.write_text(HAMMER.format(path=path))
        prefix = str(Path(tmp) / "stats")
        subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(lf), "--headless", "--host", url,
             "-u", str(users), "-r", str(users), "--run-time", f"{seconds}s",
             "--csv", prefix, "--only-summary", "--loglevel", "ERROR"],
            check=True, timeout=seconds + 60, capture_output=True,
        )  # fmt: skip
        with open(f"{prefix}_stats.csv") as f:
            row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
        return float(row["Requests/s"])


def _trivial_server() -> tuple[str, asyncio.AbstractEventLoop]:
    """A fixed ``200 ok`` over HTTP/1.1 keep-alive: the cheapest endpoint possible."""
    loop = asyncio.new_event_loop()
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}", loop


def _replay(scale: float, out: Path) -> dict[str, object]:
    t = time.perf_counter()
    proc = subprocess.run(
        [FLASHSALE, "replay", str(ROOT / "scenarios" / "poco_m3.toml"), "--scale", str(scale),
         "--out", str(out), *BURST],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    wall = time.perf_counter() - t
    manifest = json.loads((out / "manifest.json").read_text())
    rep = manifest.get("replay", {})
    return {
        "scale": scale,
        "exit": proc.returncode,
        "status": manifest["status"],
        "journeys": rep.get("journeys"),
        "requests": rep.get("requests"),
        "late_over_1s": rep.get("late_over_1s"),
        "p99_late_s": rep.get("p99_late_s"),
        "cpu_warning": "CPU usage above" in proc.stderr,
        "wall_s": round(wall, 1),
    }


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    smoke = load_scenario(ROOT / "scenarios" / "smoke.toml")
    with run_in_background(smoke) as url:
        service_rps = _hammer(str(url), "/v1/sale")
    trivial_url, loop = _trivial_server()
    trivial_rps = _hammer(trivial_url, "/")
    loop.call_soon_threadsafe(loop.stop)
    print("== requests/s of one Locust process (64 users, closed loop, 15 s)")
    print(f"reference service GET /v1/sale : {service_rps:8.0f} req/s")
    print(f"trivial endpoint              : {trivial_rps:8.0f} req/s")
    print(f"service / trivial             : {service_rps / trivial_rps:8.2f}")

    print("\n== poco_m3 opening burst (20 s window) replayed at increasing scale")
    largest = None
    with tempfile.TemporaryDirectory() as tmp:
        for scale in SCALES:
            row = _replay(scale, Path(tmp) / f"s{scale}")
            print(json.dumps(row))
            ok = row["exit"] in (0, 1) and row["status"] == "complete"
            if ok and not row["cpu_warning"] and row["late_over_1s"] == 0:
                largest = scale
            else:
                break
    print(f"\nlargest scale without a load-generator bottleneck: {largest}")


if __name__ == "__main__":
    main()
