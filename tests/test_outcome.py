"""The Outcome contract: typed tables, Parquet round trip, refusal of bad tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from flashsale.outcome import (
    JOURNEYS,
    OUTCOME_SCHEMA,
    REQUESTS,
    RESULT,
    STEP,
    TIMELINE,
    Outcome,
    OutcomeError,
    TableBuilder,
    TableSchema,
    load_outcome,
    save_outcome,
)


def _random_table(schema: TableSchema, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for c in schema.columns:
        if c.labels is not None:
            cols[c.name] = rng.integers(0, len(c.labels), n).astype(c.dtype)
        elif c.name == "channel":
            cols[c.name] = rng.integers(0, 2, n).astype(c.dtype)
        elif c.dtype == "float64":
            x = rng.normal(0, 100, n)
            x[rng.random(n) < 0.2] = np.nan  # "never happened"
            cols[c.name] = x
        else:
            cols[c.name] = rng.integers(0, 1000, n).astype(c.dtype)
    return cols


def _outcome(n: int = 500, seed: int = 0) -> Outcome:
    rng = np.random.default_rng(seed)
    return Outcome.from_columns(
        _random_table(JOURNEYS, n, rng),
        _random_table(REQUESTS, 3 * n, rng),
        _random_table(TIMELINE, 60, rng),
        ("Lazada", "Mi.com"),
    )


def _equal(a: Outcome, b: Outcome) -> None:
    assert a.channels == b.channels
    for name in ("journeys", "requests", "timeline"):
        ta, tb = a.table(name), b.table(name)
        assert list(ta) == list(tb)
        for col in ta:
            assert ta[col].dtype == tb[col].dtype, col
            np.testing.assert_array_equal(ta[col], tb[col])  # NaN == NaN here


def test_round_trip_keeps_values_dtypes_and_labels(tmp_path: Path) -> None:
    out = _outcome()
    save_outcome(out, tmp_path)
    _equal(out, load_outcome(tmp_path))
    table = pq.read_table(tmp_path / "journeys.parquet")
    assert table.schema.metadata[b"flashsale.schema"] == OUTCOME_SCHEMA.encode()
    # labels travel with the data: a pandas/DuckDB user sees words, not codes
    assert set(table.column("result").combine_chunks().dictionary.to_pylist()) == set(RESULT)


def test_empty_tables_round_trip(tmp_path: Path) -> None:
    out = _outcome(n=0)
    save_outcome(out, tmp_path)
    _equal(out, load_outcome(tmp_path))


def test_wrong_dtype_missing_column_and_bad_code_are_refused() -> None:
    rng = np.random.default_rng(1)
    j = _random_table(JOURNEYS, 5, rng)
    r = _random_table(REQUESTS, 5, rng)
    t = _random_table(TIMELINE, 5, rng)
    with pytest.raises(OutcomeError, match="journeys.units: dtype must be int32, got int64"):
        Outcome.from_columns({**j, "units": j["units"].astype("int64")}, r, t, ("a", "b"))
    with pytest.raises(OutcomeError, match=r"missing columns \['units'\]"):
        Outcome.from_columns({k: v for k, v in j.items() if k != "units"}, r, t, ("a", "b"))
    bad = j["result"].copy()
    bad[0] = len(RESULT)
    with pytest.raises(OutcomeError, match="journeys.result: code 8 out of range"):
        Outcome.from_columns({**j, "result": bad}, r, t, ("a", "b"))
    with pytest.raises(OutcomeError, match="only 1 channels"):
        Outcome.from_columns(j, r, t, ("a",))


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    save_outcome(_outcome(10), tmp_path)
    path = tmp_path / "timeline.parquet"
    table = pq.read_table(path)
    pq.write_table(
        table.replace_schema_metadata({b"flashsale.schema": b"flashsale.outcome/0"}), path
    )
    with pytest.raises(OutcomeError, match="flashsale.outcome/0"):
        load_outcome(tmp_path)


def test_missing_table_names_the_file(tmp_path: Path) -> None:
    save_outcome(_outcome(10), tmp_path)
    (tmp_path / "requests.parquet").unlink()
    with pytest.raises(OutcomeError, match="requests.parquet: missing"):
        load_outcome(tmp_path)


def test_builder_grows_and_matches_the_rows_appended() -> None:
    b = TableBuilder(TIMELINE, capacity=4)
    for i in range(100):
        b.append(
            t=float(i),
            stock_left=100 - i,
            reserved=0,
            sold_human=1,
            sold_bot=0,
            arrivals=i,
            in_flight=0,
            queue=0,
            errors=0,
        )
    b.extend({c: np.zeros(3, dtype=TIMELINE.column(c).dtype) for c in TIMELINE.names})
    cols = b.columns()
    assert len(b) == 103
    assert cols["stock_left"][:100].tolist() == [100 - i for i in range(100)]
    assert cols["stock_left"].dtype == np.int64
    assert cols["t"][100:].tolist() == [0.0, 0.0, 0.0]


def test_a_requests_table_written_before_login_was_a_step_reads_back(tmp_path: Path) -> None:
    """Step labels are only appended: a table whose dictionary stops at ``order`` (written
    before the ``login`` step existed) keeps its codes; a relabelled one is refused."""
    import pyarrow as pa

    out = _outcome()
    out.requests["step"] %= STEP.index("order") + 1  # no login requests in an old table
    save_outcome(out, tmp_path)
    path = tmp_path / "requests.parquet"
    table = pq.read_table(path)
    i = table.column_names.index("step")
    codes = table.column("step").combine_chunks().indices
    old = pa.DictionaryArray.from_arrays(codes, pa.array(list(STEP[: STEP.index("login")])))
    pq.write_table(table.set_column(i, "step", old), path)
    _equal(out, load_outcome(tmp_path))
    swapped = ["cart", "view", *STEP[2 : STEP.index("login")]]
    pq.write_table(
        table.set_column(i, "step", pa.DictionaryArray.from_arrays(codes, swapped)), path
    )
    with pytest.raises(OutcomeError, match="step labels"):
        load_outcome(tmp_path)
