"""The results folder of one run and its manifest.json.

``results/<UTC timestamp>-<scenario>-<engine>/`` (or ``--out DIR``) holds::

    manifest.json          what ran, with what, and whether it finished
    scenario.toml          the resolved scenario: `flashsale simulate <run>/scenario.toml`
                           re-runs exactly this sale (e.g. a replay's scaled-down one)
    rep-000/journeys.parquet, requests.parquet, timeline.parquet
    rep-001/...

The manifest is written first with status ``running`` and rewritten atomically
at the end: ``complete``, ``failed`` (with the error) or ``incomplete``
(interrupted). Tables are written under a temporary name and renamed, so a
half-written table never looks complete.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from flashsale.outcome import OUTCOME_SCHEMA, Outcome, load_outcome, save_outcome
from flashsale.scenario import SCHEMA_VERSION, Scenario, parse_scenario, scenario_hash

__all__ = [
    "MANIFEST_SCHEMA",
    "RunError",
    "RunFolder",
    "Terminated",
    "default_run_dir",
    "interruption",
    "new_results_dir",
    "open_run",
    "write_json_atomic",
    "write_text_atomic",
]

MANIFEST_SCHEMA = "flashsale.manifest/1"


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job, ``kill``), raised where Ctrl-C would be: Python's
    default for SIGTERM is to die on the spot, which would leave a run folder
    ``running`` for ever; this way it ends ``incomplete`` like an interrupted run."""


def interruption(e: KeyboardInterrupt) -> str:
    """The manifest's error text for an interrupted run: which signal stopped it."""
    return "interrupted (SIGTERM)" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"


_PACKAGES = ("flashsale", "numpy", "simpy", "pydantic", "pyarrow", "locust", "matplotlib")


class RunError(ValueError):
    """A results folder that cannot be read or written as asked."""


def write_text_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 text under a temporary name, then rename: a reader (another
    process, a browser reloading a report) never sees half a file."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def default_run_dir(scenario: Scenario, engine: str, root: Path = Path("results")) -> Path:
    """``results/<UTC timestamp>-<scenario>-<engine>``, unique even within one second."""
    return new_results_dir(f"{scenario.name}-{engine}", root)


def new_results_dir(label: str, root: Path = Path("results")) -> Path:
    """``results/<UTC timestamp>-<label>`` that does not exist yet (suffix -2, -3...)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = root / f"{stamp}-{label}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


@dataclass
class RunFolder:
    """An open or finished run folder: its manifest and replications."""

    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def scenario(self) -> Scenario:
        return parse_scenario(self.manifest["scenario"], str(self.path / "manifest.json"))

    @property
    def status(self) -> str:
        return str(self.manifest.get("status"))

    def rep_dir(self, replication: int) -> Path:
        return self.path / f"rep-{replication:03d}"

    def save_replication(self, replication: int, outcome: Outcome) -> None:
        save_outcome(outcome, self.rep_dir(replication))
        self.manifest.setdefault("replications_done", []).append(replication)
        self.manifest["replications_done"].sort()
        self._write()

    def replications(self) -> list[int]:
        return sorted(
            int(p.name[4:])
            for p in self.path.glob("rep-[0-9][0-9][0-9]")
            if (p / "timeline.parquet").exists()
        )

    def load_replication(self, replication: int) -> Outcome:
        return load_outcome(self.rep_dir(replication))

    def _write(self) -> None:
        write_json_atomic(self.path / "manifest.json", self.manifest)

    def update(self, **fields: Any) -> None:
        """Record extra facts (e.g. a replay's audit) in the manifest, atomically."""
        self.manifest.update(fields)
        self._write()

    @classmethod
    def load(cls, path: str | Path) -> RunFolder:
        p = Path(path)
        try:
            manifest = json.loads((p / "manifest.json").read_text())
        except FileNotFoundError:
            raise RunError(f"{p}: not a run folder (no manifest.json)") from None
        except json.JSONDecodeError as e:
            raise RunError(f"{p / 'manifest.json'}: invalid JSON: {e}") from None
        if manifest.get("schema") != MANIFEST_SCHEMA:
            raise RunError(
                f"{p / 'manifest.json'}: schema {manifest.get('schema')!r}, "
                f"this build reads {MANIFEST_SCHEMA!r}"
            )
        return cls(p, manifest)


@contextmanager
def open_run(
    scenario: Scenario,
    engine: str,
    *,
    out: Path | None = None,
    seed: int,
    replications: int,
    argv: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Iterator[RunFolder]:
    """Create a run folder and keep its manifest honest whatever happens inside.

    On normal exit the status becomes ``complete``; on Ctrl-C or SIGTERM ``incomplete``; on
    any other exception ``failed`` with the error text. The exception propagates.
    """
    path = out if out is not None else default_run_dir(scenario, engine)
    if path.exists() and any(path.iterdir()):
        raise RunError(f"{path}: output folder exists and is not empty; choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    run = RunFolder(
        path,
        {
            "schema": MANIFEST_SCHEMA,
            "outcome_schema": OUTCOME_SCHEMA,
            "scenario_schema": SCHEMA_VERSION,
            "scenario_name": scenario.name,
            "scenario_hash": scenario_hash(scenario),
            "engine": engine,
            "seed": seed,
            "replications": replications,
            "replications_done": [],
            "command": argv if argv is not None else sys.argv,
            "versions": _versions(),
            "started_at": _now(),
            "finished_at": None,
            "status": "running",
            "error": None,
            **(extra or {}),
            "scenario": scenario.to_toml_dict(),
        },
    )
    run._write()
    (path / "scenario.toml").write_text(scenario.to_toml())
    try:
        yield run
    except KeyboardInterrupt as e:
        run.update(status="incomplete", error=interruption(e), finished_at=_now())
        raise
    except BaseException as e:
        run.update(status="failed", error=f"{type(e).__name__}: {e}", finished_at=_now())
        raise
    run.update(status="complete", finished_at=_now())
