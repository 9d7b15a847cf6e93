"""The parts of a latency in the requests table (outcome schema 2): reading
``Server-Timing``, old tables, and a replay of the reference service recording what
it reports."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from flashsale.outcome import (
    OUTCOME_SCHEMA,
    REQUESTS,
    STEP,
    Outcome,
    OutcomeError,
    load_outcome,
    save_outcome,
)
from flashsale.replay.recorder import Recorder, latency_parts, server_timing
from flashsale.sim.engine import simulate

from .conftest import ROOT, scenario_with

PARTS = ("queue_wait", "service_time", "gateway_time")
NAN = math.nan


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("queue;dur=12.3, service;dur=4.5, gateway;dur=1000.0", {"queue": 12.3, "service": 4.5, "gateway": 1000.0}),  # noqa: E501
        ('cache;desc="hit", db;dur=53, queue;dur="7"', {"cache": NAN, "db": 53.0, "queue": 7.0}),
        ("queue", {"queue": NAN}),  # no dur
        ("queue;desc=wait", {"queue": NAN}),
        ("queue;dur=abc, service;dur=-1, gateway;dur=1e999", {"queue": NAN, "service": NAN, "gateway": NAN}),  # noqa: E501
        ("queue;dur=1_0", {"queue": NAN}),  # Python would read 10
        ("QUEUE;DUR=3;desc=x", {"queue": 3.0}),
        ("queue;dur=1, queue;dur=2", {"queue": 1.0}),  # the first counts
        ("queue;dur=5;dur=6", {"queue": 5.0}),
        (" ;;; ,,, ", {}),
        ("", {}),
        ("\x00\xff;dur=1", {"\x00\xff": 1.0}),
    ],
)  # fmt: skip
def test_server_timing_reads_what_it_can_and_never_raises(
    header: str, expected: dict[str, float]
) -> None:
    got = server_timing(header)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == value or (math.isnan(got[name]) and math.isnan(value)), name


def test_latency_parts_are_seconds_and_nan_when_not_reported() -> None:
    assert latency_parts("queue;dur=250, service;dur=4, gateway;dur=1000") == (0.25, 0.004, 1.0)
    assert all(math.isnan(x) for x in latency_parts(""))
    q, s, g = latency_parts("service;dur=2, other;dur=9")
    assert math.isnan(q) and s == 0.002 and math.isnan(g)
    assert server_timing("queue;dur=1, " * 10_000)["queue"] == 1.0  # a huge header is cut


def test_the_recorder_keeps_the_parts_and_nan_without_a_header() -> None:
    rec = Recorder(t0_epoch=100.0)
    base: dict[str, Any] = {
        "journey": 0,
        "account": 0,
        "step": "pay",
        "intended": 0.0,
        "sent_epoch": 100.0,
    }
    rec.request(**base, latency_s=1.2, status=201, server_timing="queue;dur=100, gateway;dur=1000")
    rec.request(**base, latency_s=0.1, status=201)
    cols = rec.requests.columns()
    np.testing.assert_array_equal(cols["queue_wait"], [0.1, NAN])
    assert np.isnan(cols["service_time"]).all()
    np.testing.assert_array_equal(cols["gateway_time"], [1.0, NAN])


def _tiny_outcome() -> Outcome:
    sc = scenario_with(
        {
            "schema_version": 1,
            "name": "tiny",
            "sale": {"units": 3},
            "humans": {"count": 20},
            "service": {"workers": 1, "payment": {"gateway_s": 0.2}},
        }
    )
    outcome: Outcome = simulate(sc).outcome
    return outcome


def test_a_version_1_table_still_loads_with_the_parts_unknown(tmp_path: Path) -> None:
    out = _tiny_outcome()
    assert OUTCOME_SCHEMA == "flashsale.outcome/2"
    save_outcome(out, tmp_path)
    assert not np.isnan(load_outcome(tmp_path).requests["service_time"]).all()
    for name in ("journeys", "requests", "timeline"):  # as a version 1 build wrote them
        path = tmp_path / f"{name}.parquet"
        table = pq.read_table(path)
        table = table.drop_columns([c for c in PARTS if c in table.column_names])
        meta = {**table.schema.metadata, b"flashsale.schema": b"flashsale.outcome/1"}
        pq.write_table(table.replace_schema_metadata(meta), path)
    old = load_outcome(tmp_path)
    for col in REQUESTS.names:
        if col in PARTS:
            assert np.isnan(old.requests[col]).all() and old.requests[col].dtype == np.float64
        else:
            np.testing.assert_array_equal(old.requests[col], out.requests[col])
    np.testing.assert_array_equal(old.journeys["result"], out.journeys["result"])


def test_an_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    save_outcome(_tiny_outcome(), tmp_path)
    path = tmp_path / "requests.parquet"
    table = pq.read_table(path)
    meta = {**table.schema.metadata, b"flashsale.schema": b"flashsale.outcome/3"}
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(OutcomeError, match="flashsale.outcome/3"):
        load_outcome(tmp_path)


def test_a_version_2_table_missing_a_part_is_refused(tmp_path: Path) -> None:
    save_outcome(_tiny_outcome(), tmp_path)
    path = tmp_path / "requests.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["gateway_time"]), path)
    with pytest.raises(OutcomeError, match="gateway_time"):
        load_outcome(tmp_path)


@pytest.mark.slow
def test_a_replay_of_the_reference_service_records_its_server_timing(tmp_path: Path) -> None:
    """smoke at 0.2 (6 s window), payments in a pool of two workers behind a 50 ms
    gateway: every answer from a worker has its queue wait and service time, a paid
    payment its gateway time too (at least the gateway's 50 ms), and the parts of an
    answer never add up to more than the latency the client measured."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "flashsale"), "replay",
            str(ROOT / "scenarios" / "smoke.toml"), "--scale", "0.2",
            "--set", "sale.window_s=6", "--set", "humans.arrivals.early_window_s=2",
            "--set", "humans.arrivals.decay_s=2", "--set", "service.payment.gateway_s=0.05",
            "--set", 'service.pools.payments.steps=["pay"]',
            "--set", "service.pools.payments.workers=2",
            "--out", str(out),
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rq = load_outcome(out / "rep-000").requests
    status, latency = rq["status"], rq["latency"]
    worked = (status > 0) & ~np.isin(status, [499, 503])  # a worker took them
    assert worked.sum() > 100
    assert not np.isnan(rq["queue_wait"][worked]).any()
    assert not np.isnan(rq["service_time"][worked]).any()
    assert np.isnan(rq["service_time"][status == 0]).all()
    pay = rq["step"] == STEP.index("pay")
    paid = pay & (status == 201)
    assert paid.any() and (rq["gateway_time"][paid] >= 0.045).all()
    assert np.isnan(rq["gateway_time"][~pay]).all()
    parts = np.nansum(np.stack([rq[c] for c in PARTS]), axis=0)
    reported = ~np.isnan(rq["queue_wait"])
    assert (parts[reported] <= latency[reported] + 1e-6).all()
    assert (parts[paid] > 0.9 * 0.05).all()
