"""Secrets stay out of manifest.json's ``command`` (issue 13): plain Locust given
``--admin-token`` (as the README's example does) wrote the token there verbatim."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from flashsale.runs import REDACTED, open_run, redact_command
from flashsale.scenario import load_scenario

LOCUST = ["locust", "-f", "flashsale/replay/locustfile.py", "--headless"]


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (["--admin-token", "s3cret"], ["--admin-token", REDACTED]),
        (["--admin-token=s3cret"], [f"--admin-token={REDACTED}"]),
        (["--admin-tok", "s3cret"], ["--admin-tok", REDACTED]),  # argparse takes a prefix
        (
            ["--api-key", "k", "--db-password=p"],
            ["--api-key", REDACTED, f"--db-password={REDACTED}"],
        ),
        (
            ["--db", "postgresql://u:pw@127.0.0.1:5432/test?schema=s"],
            ["--db", f"postgresql://u:{REDACTED}@127.0.0.1:5432/test?schema=s"],
        ),
        (["-H", "Authorization: Bearer abc.def"], ["-H", f"Authorization: Bearer {REDACTED}"]),
        (["--admin-token"], ["--admin-token"]),  # no value to hide
    ],
)
def test_secrets_are_redacted(given: list[str], kept: list[str]) -> None:
    assert redact_command([*LOCUST, *given]) == [*LOCUST, *kept]


def test_the_rest_of_the_command_is_kept() -> None:
    argv = [
        *LOCUST,
        "--host",
        "http://127.0.0.1:8000",
        "--scenario",
        "smoke.toml",
        "--scale",
        "0.5",
        "--db",
        "postgresql://postgres@127.0.0.1:5432/test",
    ]
    assert redact_command(argv) == argv


def test_the_manifest_keeps_no_admin_token(
    smoke_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_run records sys.argv when not given a command (plain Locust's case)."""
    monkeypatch.setattr(sys, "argv", [*LOCUST, "--admin-token", "s3cret"])
    out = tmp_path / "run"
    with open_run(load_scenario(smoke_path), "replay", out=out, seed=1, replications=1):
        pass
    text = (out / "manifest.json").read_text()
    assert "s3cret" not in text
    assert json.loads(text)["command"][-2:] == ["--admin-token", REDACTED]
