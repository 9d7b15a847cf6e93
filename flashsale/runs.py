"""The results folder of one run and its manifest.json.

``results/<UTC timestamp>-<scenario>-<engine>/`` (or ``--out DIR``) holds::

    manifest.json          what ran, with what, and whether it finished
    scenario.toml          the resolved scenario: `flashsale simulate <run>/scenario.toml`
                           re-runs exactly this sale (e.g. a replay's scaled-down one)
    rep-000/journeys.parquet, requests.parquet, timeline.parquet
    rep-001/...

The manifest is written first with status ``running`` and rewritten atomically
at the end: ``complete``, ``failed`` (with the error) or ``incomplete``
(interrupted). A run is ``complete`` only when everything it promises is written:
its tables *and* its metrics, charts and report (``phase`` says which part was
under way when a run stopped). Tables are written under a temporary name and
renamed, so a half-written table never looks complete, and a write that fails
leaves no temporary file behind. The manifest also records the process that
wrote it (``pid``, ``host``): a run killed outright (SIGKILL) cannot rewrite its
status, but a reader can tell that its ``running`` process is gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from flashsale.outcome import OUTCOME_SCHEMA, Outcome, load_outcome, save_outcome
from flashsale.scenario import SCHEMA_VERSION, Scenario, parse_scenario, scenario_hash

__all__ = [
    "MANIFEST_SCHEMA",
    "REDACTED",
    "IncompleteRun",
    "RunError",
    "RunFolder",
    "Terminated",
    "default_run_dir",
    "interruption",
    "mark_stopped",
    "new_results_dir",
    "open_run",
    "prepare_output_dir",
    "process_gone",
    "redact_command",
    "remove_if_empty",
    "remove_partials",
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


REDACTED = "***"
"""What :func:`redact_command` puts in place of a secret."""

_SECRET_OPTION = re.compile(r"--[\w-]*(token|password|passwd|secret|api-?key)[\w-]*", re.I)
_SECRET_OPTIONS = ("--admin-token",)  # argparse (plain Locust) takes any unique prefix
_URL_PASSWORD = re.compile(r"(://[^/@:\s]*):[^/@\s]*@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)\S+")


def _secret_option(name: str) -> bool:
    return bool(_SECRET_OPTION.fullmatch(name)) or any(
        len(name) >= 5 and known.startswith(name) for known in _SECRET_OPTIONS
    )


def redact_command(argv: Sequence[str]) -> list[str]:
    """``argv`` as the manifest may keep it: the values of secret options (``--admin-token
    T``, ``--admin-token=T``, any ``--*token*``, ``--*password*``, ``--*secret*``), URL
    passwords (``postgresql://u:pw@h``) and bearer tokens become ``***``. A manifest is
    shared with its results; the admin token plain Locust was given was written there
    verbatim (issue 13)."""
    out: list[str] = []
    hide_next = False
    for arg in map(str, argv):
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if arg.startswith("--") and _secret_option(name):
            out.append(f"{name}={REDACTED}" if eq else arg)
            hide_next = not eq
            continue
        out.append(_BEARER.sub(rf"\1{REDACTED}", _URL_PASSWORD.sub(rf"\1:{REDACTED}@", arg)))
    return out


_PACKAGES = ("flashsale", "numpy", "simpy", "pydantic", "pyarrow", "locust", "matplotlib")


class RunError(ValueError):
    """A results folder that cannot be read or written as asked (bad input: exit 2)."""


class IncompleteRun(Exception):
    """A run folder that does not hold everything its run promised (some replications,
    or a part such as a replay's audit, were never written): reporting on it as if it
    were whole would pass a fraction of a run off as the run."""


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 text under a temporary name, then rename: a reader (another
    process, a browser reloading a report) never sees half a file, and a failed
    write (a full disk) leaves neither half a file nor the temporary one."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:  # a failed write names no file
            e.filename = str(path)
        raise
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


def prepare_output_dir(path: Path) -> Path:
    """Create ``path`` for a command's output, or refuse it with a RunError naming it.

    The one guard every output folder goes through (``--out`` or a default one): a
    file, a non-empty folder or a place that cannot be created or written is one
    line and exit 2 before anything runs, never a traceback halfway through a run.
    """
    if path.is_symlink() or path.exists():
        if not path.is_dir():
            raise RunError(f"{path}: exists and is not a folder; choose another --out")
        try:
            if any(path.iterdir()):
                raise RunError(
                    f"{path}: output folder exists and is not empty; choose another --out"
                )
        except OSError as e:
            raise RunError(f"{path}: cannot read the output folder: {_reason(e)}") from None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{path}: cannot create the output folder: {_reason(e)}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunError(f"{path}: the output folder is not writable; choose another --out")
    return path


def remove_partials(folder: Path) -> None:
    """Delete the temporary files (``.NAME.partial``, ``.NAME.partial.png``, a staging
    folder ``.NAME.partial/``) that a write cut short left in ``folder``: what a failed
    run leaves must be its real files."""
    with contextlib.suppress(OSError):
        for tmp in folder.rglob(".*.partial*"):
            with contextlib.suppress(OSError):
                if tmp.is_dir() and not tmp.is_symlink():  # a staging folder
                    shutil.rmtree(tmp)
                else:
                    tmp.unlink()


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` and its empty subfolders (``charts/``) if no file is left: what
    a command that made its output folder leaves when it fails before writing anything."""
    for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir() and not sub.is_symlink():
            with contextlib.suppress(OSError):
                sub.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def process_gone(doc: dict[str, Any]) -> int | None:
    """The pid of the process that wrote ``doc`` (a manifest or sweep.json) as
    ``running`` when that process no longer exists on this host: it was killed
    outright and never closed its run. None otherwise (or when it cannot be told)."""
    pid, host = doc.get("pid"), doc.get("host")
    if doc.get("status") != "running" or not isinstance(pid, int) or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    except OSError:  # exists, owned by someone else
        return None
    return None


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

    def missing(self) -> list[int]:
        """Replications the run was asked for whose tables are not in the folder."""
        asked = self.manifest.get("replications")
        n = asked if isinstance(asked, int) else 0
        return sorted(set(range(n)) - set(self.replications()))

    @property
    def whole(self) -> bool:
        """Every table and every other part the run promised is written: the run
        finished (``complete``), or stopped only while writing its report (which
        ``flashsale report`` can write again from the tables)."""
        finished = self.status == "complete" or self.manifest.get("phase") == "report"
        return finished and not self.missing()

    def describe_state(self) -> str:
        """What the folder holds, for a message: replications written of those asked,
        the status and its error, and whether its process was killed."""
        reps, asked = self.replications(), self.manifest.get("replications")
        text = f"{len(reps)} of {asked} replications written, status {self.status}"
        if self.manifest.get("error"):
            text += f" ({self.manifest['error']})"
        pid = process_gone(self.manifest)
        if pid is not None:
            text += f", but its process (pid {pid}) is gone: killed"
        return text

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
            manifest = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            for kind in ("sweep", "search"):
                if (p / f"{kind}.json").is_file():
                    raise RunError(
                        f"{p}: a {kind} folder, not a run folder; its runs are {p}/point-NNN"
                    ) from None
            raise RunError(f"{p}: not a run folder (no manifest.json)") from None
        except NotADirectoryError:
            raise RunError(
                f"{p}: not a run folder but a file; give the folder that holds manifest.json"
            ) from None
        except OSError as e:
            raise RunError(f"{p / 'manifest.json'}: cannot read: {_reason(e)}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunError(f"{p / 'manifest.json'}: invalid JSON: {e}") from None
        if not isinstance(manifest, dict):
            raise RunError(f"{p / 'manifest.json'}: not a run manifest (a JSON object)")
        if manifest.get("schema") != MANIFEST_SCHEMA:
            raise RunError(
                f"{p / 'manifest.json'}: schema {manifest.get('schema')!r}, "
                f"this build reads {MANIFEST_SCHEMA!r}"
            )
        return cls(p, manifest)


def mark_stopped(run: RunFolder, e: BaseException, phase: str | None = None) -> None:
    """Record in ``run``'s manifest that ``e`` stopped it: ``incomplete`` for Ctrl-C or
    SIGTERM, ``failed`` with the error text otherwise; ``phase`` names the part of the
    run that was under way (e.g. ``report``)."""
    prefix = f"{phase}: " if phase else ""
    # A manifest that cannot be rewritten (the disk that broke the run is full) must
    # not hide the error that stopped the run.
    with contextlib.suppress(OSError):
        if isinstance(e, KeyboardInterrupt):
            run.update(status="incomplete", error=prefix + interruption(e), finished_at=_now())
        else:
            error = f"{prefix}{type(e).__name__}: {e}"
            run.update(status="failed", error=error, finished_at=_now())


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
    report_follows: bool = False,
) -> Iterator[RunFolder]:
    """Create a run folder and keep its manifest honest whatever happens inside.

    On normal exit the status becomes ``complete`` (with ``report_follows``, it stays
    ``running`` in phase ``report``: :func:`flashsale.postrun.finish_run` completes it
    once the report is written); on Ctrl-C or SIGTERM ``incomplete``; on any other
    exception ``failed`` with the error text. The exception propagates. A bad output
    folder raises RunError before anything is written.
    """
    path = prepare_output_dir(out if out is not None else default_run_dir(scenario, engine))
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
            "command": redact_command(argv if argv is not None else sys.argv),
            "versions": _versions(),
            "started_at": _now(),
            "finished_at": None,
            "status": "running",
            "phase": "run",
            "error": None,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            **(extra or {}),
            "scenario": scenario.to_toml_dict(),
        },
    )
    run._write()
    write_text_atomic(path / "scenario.toml", scenario.to_toml())
    try:
        yield run
    except BaseException as e:
        mark_stopped(run, e)
        raise
    if report_follows:
        run.update(phase="report", finished_at=_now())
    else:
        run.update(status="complete", finished_at=_now())
