"""``flashsale sweep``: the grid, the folders, pairing, the charts, and honest failure."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.outcome import KIND, Outcome
from flashsale.runs import RunFolder
from flashsale.scenario import Scenario
from flashsale.sim import runner as sim_runner
from flashsale.sim.stock import OversellError
from flashsale.sweep import MAX_POINTS, SWEEP_SCHEMA, parse_vary, plan_sweep, run_sweep

from ._processes import LINUX, children, dead, start, wait_until

cli = CliRunner()

# Axis order fixes the point order: workers is the first axis (the chart's x).
GRID = ["--vary", "service.workers=2,8", "--vary", "humans.count=500,1000"]
# Breached where the checkout has 2 workers: each order holds a worker for a cart
# (0.02 s) and a payment (0.05 s) on average, so 2 workers pay at most 2 / 0.05 = 40
# orders/s even in a lucky second; with 8 workers the smoke sale's demand peaks near 57.
THRESHOLD = 'thresholds.throughput_peak_orders_per_s=">= 45"'


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    smoke = Path(__file__).resolve().parents[1] / "scenarios" / "smoke.toml"
    out = tmp_path_factory.mktemp("sweep") / "s"
    res = cli.invoke(
        app,
        [
            "sweep",
            str(smoke),
            *GRID,
            "--replications",
            "2",
            "--workers",
            "2",
            "--seed",
            "11",
            "--set",
            THRESHOLD,
            "--report",
            "full",  # every point's page and the comparison (the default is a summary)
            "--out",
            str(out),
        ],
    )
    return out, res


def _doc(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / "sweep.json").read_text())
    return doc


# ---------------------------------------------------------------- the grid


def test_vary_values_split_outside_quotes_arrays_and_tables() -> None:
    axes = parse_vary(
        [
            "service.workers=32, 40,48",
            'humans.think_s={dist = "constant", value = 1},{dist = "exponential", mean = 2}',
            'sale.sku="A,B",C',
        ],
        "s.toml",
    )
    assert [a.values for a in axes] == [
        ("32", "40", "48"),
        ('{dist = "constant", value = 1}', '{dist = "exponential", mean = 2}'),
        ('"A,B"', "C"),
    ]


def test_grid_is_the_cartesian_product_with_one_seed(smoke_path: Path) -> None:
    axes = parse_vary(["service.workers=2,4,8", "humans.count=10,20"], str(smoke_path))
    points = plan_sweep(smoke_path, axes, [], seed=5)
    assert [p.overrides for p in points][:3] == [
        ["service.workers=2", "humans.count=10"],
        ["service.workers=2", "humans.count=20"],
        ["service.workers=4", "humans.count=10"],
    ]
    assert len(points) == 6
    assert [(p.scenario.service.workers, p.scenario.humans.count) for p in points] == [
        (w, h) for w in (2, 4, 8) for h in (10, 20)
    ]
    assert {p.scenario.seed for p in points} == {5}


@pytest.mark.parametrize(
    ("vary", "field"),
    [
        ("service.workers=4,0", "service.workers"),  # a bad value at the second point
        ("service.wrkers=4,8", "wrkers"),  # a typo in the path
        ("humans.count=10,ten", "humans.count"),
        ("seed=1,2", "seed"),  # pairing needs one root seed
        ("service.workers=4,,8", "service.workers"),
        ("service.workers", "service.workers"),
    ],
)
def test_bad_vary_exits_2_naming_the_field_before_anything_runs(
    smoke_path: Path, tmp_path: Path, vary: str, field: str
) -> None:
    out = tmp_path / "never"
    res = cli.invoke(app, ["sweep", str(smoke_path), "--vary", vary, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert field in res.output and "error:" in res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_grid_over_the_cap_exits_2(smoke_path: Path, tmp_path: Path) -> None:
    counts = ",".join(str(10 + i) for i in range(MAX_POINTS // 2 + 1))
    res = cli.invoke(
        app,
        [
            "sweep",
            str(smoke_path),
            "--vary",
            f"humans.count={counts}",
            "--vary",
            "service.workers=4,8",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert res.exit_code == 2
    assert f"{2 * (MAX_POINTS // 2 + 1)} points" in res.output and str(MAX_POINTS) in res.output


def test_non_empty_out_exits_2(smoke_path: Path, tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("x")
    res = cli.invoke(
        app, ["sweep", str(smoke_path), "--vary", "service.workers=4,8", "--out", str(tmp_path)]
    )
    assert res.exit_code == 2 and "not empty" in res.output


# ---------------------------------------------------------------- a whole sweep


@pytest.mark.slow
def test_sweep_writes_a_run_folder_per_point_and_an_honest_manifest(
    swept: tuple[Path, Any],
) -> None:
    out, res = swept
    doc = _doc(out)
    assert doc["schema"] == SWEEP_SCHEMA and doc["status"] == "complete"
    assert doc["seed"] == 11 and doc["replications"] == 2
    assert doc["grid"] == [
        {"path": "service.workers", "values": [2, 8]},
        {"path": "humans.count", "values": [500, 1000]},
    ]
    expected = [(w, h) for w in (2, 8) for h in (500, 1000)]
    assert [p["folder"] for p in doc["points"]] == [f"point-{i:03d}" for i in range(4)]
    for p, (w, h) in zip(doc["points"], expected, strict=True):
        assert p["status"] == "complete"
        assert p["overrides"] == [f"service.workers={w}", f"humans.count={h}"]
        run = RunFolder.load(out / p["folder"])
        assert run.status == "complete" and run.manifest["engine"] == "sim"
        assert run.manifest["sweep"]["overrides"] == p["overrides"]
        assert (run.scenario.service.workers, run.scenario.humans.count) == (w, h)
        assert run.manifest["seed"] == 11 and run.replications() == [0, 1]
        assert (out / p["folder"] / "metrics.json").exists()
        assert (out / p["folder"] / "report.html").exists()
    # Quiet points: the per-run summary is not printed four times, the sweep table is.
    assert "human success share" in res.output
    assert res.output.count("results:") == 0
    assert all(f"point-00{i}" in res.output for i in range(4))
    assert f"sweep:   {out}" in res.output


@pytest.mark.slow
def test_off_a_terminal_the_output_is_the_table_without_progress_bars(
    smoke_path: Path, tmp_path: Path
) -> None:
    """Piped, as in a CI log: no bar's last frame on stdout or stderr, only the table
    (a header, a line per point) and the paths."""
    out = tmp_path / "s"
    proc = start(
        "sweep",
        str(smoke_path),
        *("--vary", "service.workers=4,8", "--replications", "1", "--workers", "2"),
        *("--out", str(out)),
    )
    stdout, stderr = proc.communicate(timeout=300)  # a safety bound, not a deadline
    assert proc.returncode == 0, stdout + stderr
    assert stderr == ""
    assert "━" not in stdout and "sweeping" not in stdout and "point reports" not in stdout
    lines = stdout.splitlines()
    assert lines[0].split()[:2] == ["point", "settings"] and "thresholds" in lines[0]
    assert [ln.split()[:2] for ln in lines[1:3]] == [
        ["point-000", "service.workers=4"],
        ["point-001", "service.workers=8"],
    ]
    assert lines[3:] == [f"sweep:   {out}", f"report:  {out / 'report.html'}"]
    assert [r["folder"] for r in _doc(out)["results"]] == ["point-000", "point-001"]


@pytest.mark.slow
def test_points_are_paired_same_people_same_arrivals(swept: tuple[Path, Any]) -> None:
    """Points 0 and 2 differ only in service.workers: under common random numbers
    replication r of each saw the very same humans arriving at the very same times."""
    out, _ = swept
    for r in (0, 1):
        a = RunFolder.load(out / "point-000").load_replication(r).journeys
        b = RunFolder.load(out / "point-002").load_replication(r).journeys
        human = KIND.index("human")
        np.testing.assert_array_equal(
            a["arrived"][a["kind"] == human], b["arrived"][b["kind"] == human]
        )
    page = (out / "compare" / "report.html").read_text()
    assert "common random numbers" in page
    assert "service.workers=8" in page  # the compare labels say what differs


@pytest.mark.slow
def test_more_checkout_workers_do_not_sell_out_later(swept: tuple[Path, Any]) -> None:
    out, _ = swept
    rows = {
        (r["settings"]["service.workers"], r["settings"]["humans.count"]): r
        for r in _doc(out)["results"]
    }
    for humans in (500, 1000):
        slow = rows[(2, humans)]["metrics"]["sellout_time_s"]
        fast = rows[(8, humans)]["metrics"]["sellout_time_s"]
        assert fast["mean"] is not None and slow["mean"] is not None
        assert fast["mean"] <= slow["ci_high"]
        # And pay latency with 4x the workers is not worse either.
        p95 = [rows[(w, humans)]["metrics"]["latency_p95_s.pay"] for w in (2, 8)]
        assert p95[1]["mean"] <= p95[0]["ci_high"]


@pytest.mark.slow
def test_breached_thresholds_exit_1_naming_the_points(swept: tuple[Path, Any]) -> None:
    out, res = swept
    assert res.exit_code == 1, res.output
    assert "thresholds breached at 2 point(s)" in res.output
    assert "point-000 (service.workers=2, humans.count=500)" in res.output
    assert "point-001 (service.workers=2, humans.count=1000)" in res.output
    assert "point-002 (" not in res.output and "point-003 (" not in res.output
    breached = {r["folder"]: r["breached"] for r in _doc(out)["results"]}
    assert breached["point-000"] == ["throughput_peak_orders_per_s >= 45"]
    assert breached["point-003"] == []


@pytest.mark.slow
def test_sweep_chart_and_report(swept: tuple[Path, Any]) -> None:
    out, _ = swept
    png = out / "charts" / "sweep_metrics.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 1
    assert 'href="point-003/report.html"' in page
    assert 'href="compare/report.html"' in page
    assert "throughput_peak_orders_per_s &gt;= 45" in page  # the breach is shown on its row


# ---------------------------------------------------------------- failure paths


def _failing_after(n: int, exc: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    """The (n+1)-th replication raises ``exc``; the first n run for real."""
    real = sim_runner.replication_outcome
    calls = []

    def flaky(scenario: Scenario, seed: int, replication: int) -> Outcome:
        calls.append(replication)
        if len(calls) > n:
            raise exc
        return real(scenario, seed, replication)

    monkeypatch.setattr(sim_runner, "replication_outcome", flaky)


def test_failed_job_marks_the_sweep_failed_and_exits_1(
    smoke_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_after(1, OversellError("books do not balance"), monkeypatch)
    out = tmp_path / "s"
    res = cli.invoke(
        app,
        [
            "sweep",
            str(smoke_path),
            "--vary",
            "service.workers=4,8",
            "--replications",
            "1",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 1 and "books do not balance" in res.output
    assert "error: the run failed: books do not balance" in res.output
    assert f"`flashsale report --partial {out}`" in res.output
    doc = _doc(out)
    assert doc["status"] == "failed" and "books do not balance" in doc["error"]
    # point-000's tables are whole, its report was never written: the failure at
    # point-001 stopped the sweep, so it is incomplete (not failed) in phase report
    assert [(p["status"], p["phase"]) for p in doc["points"]] == [
        ("incomplete", "report"),
        ("failed", "run"),
    ]
    first = RunFolder.load(out / "point-000").manifest
    assert first["error"] == (
        "report: not written, the sweep stopped (OversellError: books do not balance)"
    )


def test_ctrl_c_marks_the_sweep_and_unfinished_points_incomplete(
    smoke_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_after(3, KeyboardInterrupt(), monkeypatch)
    axes = parse_vary(["service.workers=4,8"], str(smoke_path))
    points = plan_sweep(smoke_path, axes, [], seed=None)
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(smoke_path, points, axes, replications=2, workers=1, folder=out)
    doc = _doc(out)
    assert doc["status"] == "incomplete" and "Ctrl-C" in doc["error"]
    assert [(p["status"], p["phase"], p["replications_done"]) for p in doc["points"]] == [
        ("incomplete", "report", 2),
        ("incomplete", "run", 1),
    ]
    assert RunFolder.load(out / "point-001").manifest["replications_done"] == [0]

    # `flashsale report` on the sweep: not whole, so only when asked, and then it
    # reports the whole point and says which one it left out
    res = cli.invoke(app, ["report", str(out)])
    assert res.exit_code == 1, res.output
    assert "1 of 2 points are not whole" in res.output and "point-001" in res.output
    res = cli.invoke(app, ["report", "--partial", str(out)])
    assert res.exit_code == 0, res.output
    assert RunFolder.load(out / "point-000").status == "complete"
    assert (out / "point-000" / "report.html").exists()
    doc = _doc(out)
    assert doc["status"] == "incomplete"  # a partial report does not finish the sweep
    assert doc["partial"] == {"left_out": ["point-001"]}
    assert [p["status"] for p in doc["points"]] == ["complete", "incomplete"]
    page = (out / "report.html").read_text()
    assert "Partial report" in page and "left out: point-001" in page


def test_dask_scheduler_without_the_extra_exits_2(
    smoke_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    res = cli.invoke(
        app,
        [
            "sweep",
            str(smoke_path),
            "--vary",
            "service.workers=4,8",
            "--dask-scheduler",
            "tcp://127.0.0.1:1",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert res.exit_code == 2
    assert "flashsale[cluster]" in res.output
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------- Dask cluster


@pytest.mark.slow
def test_jobs_on_a_local_dask_cluster_match_local_runs(smoke_path: Path, tmp_path: Path) -> None:
    import distributed  # the test extras pull in flashsale[cluster]: this runs in CI

    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        out = tmp_path / "s"
        res = cli.invoke(
            app,
            [
                "sweep",
                str(smoke_path),
                "--vary",
                "service.workers=4",
                "--replications",
                "2",
                "--dask-scheduler",
                cluster.scheduler_address,
                "--out",
                str(out),
            ],
        )
    assert res.exit_code == 0, res.output
    assert _doc(out)["status"] == "complete"
    run = RunFolder.load(out / "point-000")
    assert run.scenario.service.workers == 4
    for r in (0, 1):
        remote = run.load_replication(r)
        local = sim_runner.replication_outcome(run.scenario, run.manifest["seed"], r)
        for name, col in local.journeys.items():
            np.testing.assert_array_equal(remote.journeys[name], col, err_msg=name)


def test_point_settings_are_json_even_for_times_and_tables(smoke_path: Path) -> None:
    axes = parse_vary(
        ["sale.opens_at=09:00:00,10:30:00", 'humans.patience_s={dist = "constant", value = 5}'],
        str(smoke_path),
    )
    points = plan_sweep(smoke_path, axes, [], seed=None)
    assert [p.scenario.sale.opens_at.isoformat() for p in points] == ["09:00:00", "10:30:00"]
    assert json.loads(json.dumps(points[1].values())) == {
        "sale.opens_at": "10:30:00",
        "humans.patience_s": {"dist": "constant", "value": 5},
    }


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux's; workers seen in /proc")
def test_a_killed_sweep_leaves_no_worker_and_an_honest_sweep_json(tmp_path: Path) -> None:
    """SIGKILL once point-000 has all its tables: the workers die with the sweep,
    sweep.json already says how far point-000 got, and `flashsale report` tells the
    sweep was killed and reports on what is whole."""
    poco = Path(__file__).resolve().parents[1] / "scenarios" / "poco_m3.toml"
    out = tmp_path / "s"
    proc = start(
        "sweep",
        str(poco),
        "--vary",
        "service.workers=32,48",
        "--replications",
        "2",
        "--workers",
        "2",
        "--out",
        str(out),
    )

    def first_point_written() -> bool:
        try:
            return bool(_doc(out)["points"][0]["replications_done"] == 2)
        except (FileNotFoundError, ValueError):  # not yet, or being replaced
            return False

    wait_until("point-000's tables", first_point_written)
    workers = children(proc.pid)
    proc.kill()
    proc.communicate()
    wait_until("the workers died with the sweep", lambda: all(dead(p) for p in workers))
    doc = _doc(out)
    assert doc["status"] == "running"  # nobody left to say otherwise...
    assert (doc["points"][0]["phase"], doc["points"][0]["replications_done"]) == ("report", 2)
    res = cli.invoke(app, ["report", str(out)])  # ...but the reader can tell
    assert res.exit_code == 1, res.output
    assert f"(pid {proc.pid}) is gone: killed" in res.output and "point-001" in res.output
    res = cli.invoke(app, ["report", "--partial", str(out)])
    assert res.exit_code == 0, res.output
    doc = _doc(out)
    assert doc["status"] == "incomplete" and "killed" in doc["error"]
    assert doc["points"][0]["status"] == "complete"
    assert (out / "point-000" / "report.html").exists()


def test_sweep_json_records_its_command_with_secrets_redacted(
    smoke_path: Path, tmp_path: Path
) -> None:
    axes = parse_vary(["humans.count=50"], str(smoke_path))
    points = plan_sweep(smoke_path, axes, [], seed=None)
    out = tmp_path / "sweep"
    argv = ["flashsale", "sweep", str(smoke_path), "--admin-token", "s3cret-value"]
    run_sweep(smoke_path, points, axes, replications=1, workers=1, folder=out, argv=argv)
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["command"][:4] == argv[:4] and doc["command"][4] != "s3cret-value"
    assert "s3cret-value" not in (out / "sweep.json").read_text()
