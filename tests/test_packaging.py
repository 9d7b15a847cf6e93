"""Every package in the source tree is listed in pyproject.toml, so `pip install .` ships it."""

from __future__ import annotations

import tomllib

from .conftest import ROOT


def test_every_source_package_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    on_disk = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if "__pycache__" not in rel.parts:
                on_disk.add(".".join((name, *rel.parts)))
    assert on_disk <= listed, f"packages missing from pyproject.toml: {sorted(on_disk - listed)}"


def test_no_bare_sim_module_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "sim" not in config["packages"]
    assert config["package-dir"]["flashsale.sim"] == "sim"
