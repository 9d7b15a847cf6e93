"""Scenarios as JSON: what ``flashsale show --json`` prints is a scenario file again.

``validate``, ``show`` and ``simulate`` (every command that loads a scenario) read a
``.json`` file, or any file whose text starts with ``{``, with the limits of a TOML
one (size, nesting, integer digits) and errors in the same one-line form naming the
file: ``invalid JSON: ...``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.scenario import MAX_DEPTH, MAX_FILE_BYTES, ScenarioError, load_scenario

from .conftest import SCENARIOS

runner = CliRunner()


def _show_json(toml: Path, out: Path, *args: str) -> Path:
    r = runner.invoke(app, ["show", str(toml), "--json", *args])
    assert r.exit_code == 0, r.output
    out.write_text(r.stdout)
    return out


def _one_error(r: Any, path: Path, *parts: str) -> str:
    """Exit 2 with exactly one ``error: <path>: ...`` line holding every part."""
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output + r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"error: {path}: "), line
    for part in parts:
        assert part in line, line
    return str(line)


@pytest.mark.parametrize("toml", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_show_json_validates_and_loads_back_as_the_same_scenario(
    toml: Path, tmp_path: Path
) -> None:
    as_json = _show_json(toml, tmp_path / "s.json")
    r = runner.invoke(app, ["validate", str(as_json)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"ok: {as_json} ("), r.stdout
    assert load_scenario(as_json) == load_scenario(toml)
    again = runner.invoke(app, ["show", str(as_json), "--json"])
    assert again.exit_code == 0 and again.stdout == as_json.read_text()


def test_json_is_known_by_its_first_character_whatever_the_suffix(tmp_path: Path) -> None:
    smoke = SCENARIOS / "smoke.toml"
    text = _show_json(smoke, tmp_path / "s.json").read_text()
    for name in ("scenario.txt", "scenario", "scenario.toml"):
        (tmp_path / name).write_text("\n  " + text)
        assert load_scenario(tmp_path / name) == load_scenario(smoke), name


def test_set_overrides_a_json_scenario(tmp_path: Path) -> None:
    as_json = _show_json(SCENARIOS / "smoke.toml", tmp_path / "s.json")
    sc = load_scenario(as_json, ["humans.count=7", "sale.units=3"])
    assert (sc.humans.count, sc.sale.units) == (7, 3)
    r = runner.invoke(app, ["validate", str(as_json), "--set", "humans.count=0.5"])
    _one_error(r, as_json, "humans.count")


def test_a_relative_accounts_file_is_read_from_the_json_files_folder(tmp_path: Path) -> None:
    data = json.loads(_show_json(SCENARIOS / "smoke.toml", tmp_path / "s.json").read_text())
    data["target"]["accounts_file"] = "accounts.csv"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.json").write_text(json.dumps(data))
    sc = load_scenario(tmp_path / "sub" / "t.json")
    assert sc.target.accounts_file == str((tmp_path / "sub" / "accounts.csv").resolve())


def test_a_json_scenario_is_simulated(tmp_path: Path) -> None:
    smoke = SCENARIOS / "smoke.toml"
    as_json = _show_json(smoke, tmp_path / "s.json")
    r = runner.invoke(app, ["simulate", str(as_json), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete", manifest
    assert load_scenario(tmp_path / "run" / "scenario.toml") == load_scenario(smoke)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ('{"name": "x",\n  "sale": }', ("invalid JSON: Expecting value: line 2 column 11",)),
        ('{"name": "x", "name": "y"}', ("invalid JSON: the key 'name' appears twice",)),
        ('{"sale": {"units": 1, "units": 2}}', ("invalid JSON: the key 'units' appears twice",)),
        ("[1, 2]", ("invalid JSON: the top level is list, not an object",)),
        ("  \n", ("invalid JSON: Expecting value",)),
        ('{"seed": ' + "9" * 5000 + "}", ("invalid JSON: an integer of more than 4,300 digits",)),
        (
            '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
            (f"invalid JSON: nested more than {MAX_DEPTH} levels deep",),
        ),
        (
            "{" + '"a": {' * (MAX_DEPTH + 1) + "}" * (MAX_DEPTH + 1) + "}",
            (f"nested more than {MAX_DEPTH} levels deep",),
        ),
    ],
    ids=[
        "syntax",
        "duplicate-key",
        "duplicate-nested-key",
        "not-an-object",
        "empty",
        "huge-integer",
        "deep-for-the-parser",
        "deep-for-the-limit",
    ],
)
def test_bad_json_is_one_error_line_naming_the_file(
    text: str, parts: tuple[str, ...], tmp_path: Path
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    _one_error(runner.invoke(app, ["validate", str(path)]), path, *parts)
    with pytest.raises(ScenarioError):
        load_scenario(path)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('"name": "smoke",', '"name": "smoke", "nmae": "typo",', "nmae: unknown field"),
        ('"units": 200,', '"units": NaN,', "sale.units"),
        ('"window_s": 60.0,', '"window_s": Infinity,', "sale.window_s"),
        ('"window_s": 60.0,', '"window_s": 1e999,', "sale.window_s"),
        ('"units": 200,', '"units": 200.0,', "sale.units"),
        ('"units": 200,', '"units": "200",', "sale.units"),
    ],
)
def test_a_bad_field_in_json_is_named_as_in_toml(
    old: str, new: str, field: str, tmp_path: Path
) -> None:
    text = _show_json(SCENARIOS / "smoke.toml", tmp_path / "s.json").read_text()
    assert old in text
    path = tmp_path / "bad.json"
    path.write_text(text.replace(old, new, 1))
    _one_error(runner.invoke(app, ["validate", str(path)]), path, field)


def test_a_json_file_has_the_size_limit_of_a_toml_one(tmp_path: Path) -> None:
    as_json = _show_json(SCENARIOS / "smoke.toml", tmp_path / "s.json")
    big = tmp_path / "big.json"
    big.write_text(as_json.read_text() + " " * MAX_FILE_BYTES)
    _one_error(runner.invoke(app, ["validate", str(big)]), big, "larger than 1,048,576 bytes")
    binary = tmp_path / "latin1.json"
    binary.write_bytes(b'{"name": "caf\xe9"}')
    _one_error(runner.invoke(app, ["validate", str(binary)]), binary, "not UTF-8")


def test_a_bad_toml_file_is_still_named_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = \n")
    _one_error(runner.invoke(app, ["validate", str(path)]), path, "invalid TOML")
