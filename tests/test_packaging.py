"""The package carries what its commands need: every source package is listed in
pyproject.toml, sim/ is installed as flashsale.sim (package-dir, no symlink, no bare
`sim`), and the locustfile `flashsale replay` runs is inside the package."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from flashsale.commands.replay import LOCUSTFILE

from .conftest import ROOT

CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
PACKAGE_DIRS = {"flashsale": ROOT / "flashsale", "flashsale.sim": ROOT / "sim"}
"""Where each installed package's files live in the checkout (package-dir)."""


def _source_packages() -> set[str]:
    found = set()
    for name, top in PACKAGE_DIRS.items():
        for folder, _, files in os.walk(top):
            if "__init__.py" in files or Path(folder) == top:
                rel = Path(folder).relative_to(top).parts
                found.add(".".join((name, *rel)))
    return found


def test_every_source_package_is_installed() -> None:
    assert CONFIG["package-dir"] == {"flashsale.sim": "sim"}
    on_disk = _source_packages()
    assert "flashsale.sim" in on_disk and "flashsale.replay" in on_disk
    listed = set(CONFIG["packages"])
    assert on_disk <= listed, f"packages missing from pyproject.toml: {sorted(on_disk - listed)}"
    assert listed <= on_disk, f"packages listed but not on disk: {sorted(listed - on_disk)}"


def test_no_bare_sim_module_and_no_symlink() -> None:
    assert "sim" not in CONFIG["packages"]
    link = ROOT / "flashsale" / "sim"
    assert not link.exists() and not link.is_symlink()
    links = [
        p
        for top in ("flashsale", "sim", "locustfiles")
        for p in (ROOT / top).rglob("*")
        if p.is_symlink()
    ]
    assert not links, f"symlinks are text files where symlinks are off: {links}"


def test_the_engine_is_loaded_once_under_its_installed_name() -> None:
    """From the checkout's root, where sim/ is importable as `sim` too, the commands
    load the engine only as flashsale.sim: one OversellError class, not two."""
    code = (
        "import sys, flashsale.commands.simulate, flashsale.commands.sweep, flashsale.sweep\n"
        "import flashsale.sim.engine, flashsale.sim.stock\n"
        "print(flashsale.sim.__file__)\n"
        "print(sorted(m for m in sys.modules if m == 'sim' or m.startswith('sim.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    where, bare = out.stdout.splitlines()
    assert Path(where).resolve() == (ROOT / "sim" / "__init__.py").resolve()
    assert bare == "[]"


def test_replay_runs_the_locustfile_inside_the_package() -> None:
    assert LOCUSTFILE.resolve().parent == (ROOT / "flashsale" / "replay").resolve()
    assert LOCUSTFILE.is_file()
    # the user-facing example takes its classes from the package's locustfile
    tree = ast.parse((ROOT / "locustfiles" / "flashsale.py").read_text())
    sources = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "flashsale.replay.locustfile" in sources


@pytest.mark.parametrize(
    "locustfile", [LOCUSTFILE, ROOT / "locustfiles" / "flashsale.py"], ids=["package", "example"]
)
def test_locust_finds_the_users_and_the_shape(locustfile: Path, tmp_path: Path) -> None:
    """Loaded the way `locust -f` loads it (its folder first on sys.path), from a
    folder outside the checkout."""
    code = (
        "import sys\n"
        "from locust.util.load_locustfile import load_locustfile\n"
        "users, shapes = load_locustfile(sys.argv[1])\n"
        "print(sorted(users), [type(s).__name__ for s in shapes])\n"
        "print(sorted(m for m in sys.modules if m in ('session', 'target', 'scale', 'sim')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(locustfile)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    classes, shadowed = out.stdout.splitlines()[-2:]
    assert classes == "['SalePacer'] ['ScenarioReplay']"
    assert shadowed == "[]"


def test_the_wheel_holds_what_the_commands_need(tmp_path: Path) -> None:
    """Built offline from a copy of the sources: flashsale/sim from sim/, the
    locustfile, py.typed; no top-level sim/ or locustfiles/."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("flashsale", "sim"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("flashsale-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names}
    assert tops == {"flashsale", next(t for t in tops if t.endswith(".dist-info"))}, tops
    engine = {f"flashsale/sim/{p.name}" for p in (ROOT / "sim").glob("*.py")}
    assert engine <= names, sorted(engine - names)
    assert {"flashsale/replay/locustfile.py", "flashsale/replay/locust_app.py"} <= names
    assert "flashsale/py.typed" in names
