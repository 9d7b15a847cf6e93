"""Every package in the source tree is listed in pyproject.toml, so `pip install .` ships it."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from .conftest import ROOT


def test_every_source_package_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {
        ".".join(Path(folder).relative_to(ROOT).parts)
        for folder, _, files in os.walk(ROOT / "flashsale", followlinks=True)
        if "__init__.py" in files
    }
    assert "flashsale.sim" in on_disk, "flashsale/sim (a link to sim/) is followed"
    assert on_disk <= listed, f"packages missing from pyproject.toml: {sorted(on_disk - listed)}"


def test_no_bare_sim_module_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "sim" not in config["packages"]
    assert (ROOT / "flashsale" / "sim").resolve() == (ROOT / "sim").resolve()
