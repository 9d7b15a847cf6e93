"""`flashsale export waiting-room`: a scenario's room as a Cloudflare Waiting Room event.

The reference is Cloudflare's API documentation, not our code: the request body's
schema below is written from it (field names, types, ranges, the rules its prose
states), and the mapping of scenarios/waiting_room.toml is worked out by hand.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, model_validator
from typer.testing import CliRunner

from flashsale.cli import app

from .conftest import SCENARIOS

WAITING_ROOM = str(SCENARIOS / "waiting_room.toml")
START = "2021-01-26T10:00:00+07:00"  # 10:00 WIB, as the Poco M3 sale opened

_Users = Annotated[int, Field(ge=200, le=2_147_483_647)]


def _instant(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text)
    assert t.tzinfo is not None, f"{text}: an ISO 8601 timestamp needs its offset"
    return t


class CloudflareEvent(BaseModel):
    """The body of POST /zones/{zone_id}/waiting_rooms/{waiting_room_id}/events, from
    https://developers.cloudflare.com/api/resources/waiting_rooms/subresources/events/methods/create/
    (the schema ``waitingroom_query_event``): no other field, each of its type and range;
    queueing methods as the waiting room's reference lists them."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    event_start_time: str
    event_end_time: str
    description: str = ""
    custom_page_html: str | None = None
    disable_session_renewal: bool | None = None
    new_users_per_minute: _Users | None = None
    total_active_users: _Users | None = None
    prequeue_start_time: str | None = None
    queueing_method: Literal["fifo", "random", "passthrough", "reject"] | None = None
    session_duration: Annotated[int, Field(ge=1, le=30)] | None = None
    shuffle_at_event_start: bool = False
    suspended: bool = False
    turnstile_action: Literal["log", "infinite_queue"] | None = None
    turnstile_mode: (
        Literal["off", "invisible", "visible_non_interactive", "visible_managed"] | None
    ) = None

    @model_validator(mode="after")
    def _the_rules_the_docs_state(self) -> CloudflareEvent:
        start, end = _instant(self.event_start_time), _instant(self.event_end_time)
        assert end - start >= dt.timedelta(minutes=1), "start at least one minute before end"
        if self.prequeue_start_time is not None:
            pre = _instant(self.prequeue_start_time)
            assert start - pre >= dt.timedelta(minutes=5), "pre-queue 5 minutes before start"
        assert not self.shuffle_at_event_start or self.prequeue_start_time is not None
        # "This can only be set if the event's total_active_users property is also set"
        assert (self.new_users_per_minute is None) == (self.total_active_users is None)
        return self


def _export(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, ["export", "waiting-room", *args])
    return res.exit_code, res.stdout, res.stderr


def test_waiting_room_toml_maps_field_by_field() -> None:
    """By hand: 10:00 at UTC+7 is 03:00Z; the window of 900 s closes it at 03:15Z; the
    900 s pre-queue opens at 02:45Z and is shuffled at the start; fifo; 12,000 new
    users a minute; 6,000 active; 300 s sessions are 5 minutes, not renewed."""
    code, out, err = _export(WAITING_ROOM, "--format", "cloudflare", "--start", START)
    assert code == 0, err
    body = json.loads(out)
    assert body == {
        "name": "waiting_room",
        "description": "Poco M3 crowd behind a waiting room with a randomised pre-queue",
        "event_start_time": "2021-01-26T03:00:00.000Z",
        "event_end_time": "2021-01-26T03:15:00.000Z",
        "prequeue_start_time": "2021-01-26T02:45:00.000Z",
        "shuffle_at_event_start": True,
        "queueing_method": "fifo",
        "new_users_per_minute": 12000,
        "total_active_users": 6000,
        "session_duration": 5,
        "disable_session_renewal": True,
        "suspended": False,
    }
    CloudflareEvent.model_validate(body)
    # stderr says what does not carry over, both ways, naming this scenario's extras
    assert "The simulation models, the event cannot express:" in err
    assert "Cloudflare does, the simulation does not model:" in err
    assert "defenses.account_limit (1 unit per account)" in err
    assert "5,000 bot accounts" in err
    assert "Cf-Waiting-Room-Command: revoke" in err
    assert "passthrough and reject" in err and "Turnstile" in err


@pytest.mark.parametrize(
    ("overrides", "body"),
    [
        (  # no pre-queue: nothing to shuffle; random order; the boundary values
            [
                "defenses.waiting_room.prequeue_s=0",
                "defenses.waiting_room.order='random'",
                "defenses.waiting_room.new_users_per_min=200",
                "defenses.waiting_room.max_active=200",
                "defenses.waiting_room.session_s=1800",
                "sale.window_s=60",
            ],
            {
                "prequeue_start_time": None,
                "shuffle_at_event_start": False,
                "queueing_method": "random",
                "new_users_per_minute": 200,
                "total_active_users": 200,
                "session_duration": 30,
                "event_end_time": "2021-01-26T03:01:00.000Z",
            },
        ),
        (  # the shortest pre-queue and session the product takes
            ["defenses.waiting_room.prequeue_s=300", "defenses.waiting_room.session_s=60"],
            {"prequeue_start_time": "2021-01-26T02:55:00.000Z", "session_duration": 1},
        ),
    ],
)
def test_limits_the_product_takes_are_exported(
    overrides: list[str], body: dict[str, object]
) -> None:
    sets = [a for o in overrides for a in ("--set", o)]
    code, out, err = _export(WAITING_ROOM, "--start", START, *sets)
    assert code == 0, err
    got = json.loads(out)
    assert {k: got[k] for k in body} == body
    CloudflareEvent.model_validate(got)


def test_the_opening_keeps_its_offset_when_the_scenario_has_a_date(tmp_path: Path) -> None:
    out_file = tmp_path / "event.json"
    code, out, err = _export(
        str(SCENARIOS / "poco_m3_waiting_room.toml"),
        "--start",
        "2021-01-26T10:00:00+07:00",
        "--name",
        "poco-m3",
        "--out",
        str(out_file),
    )
    assert code == 0, err
    assert out == f"wrote {out_file}\n"
    body = json.loads(out_file.read_text())
    assert body["name"] == "poco-m3" and body["event_start_time"] == "2021-01-26T03:00:00.000Z"
    CloudflareEvent.model_validate(body)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [str(SCENARIOS / "poco_m3.toml"), "--start", START],
            "defenses.waiting_room.enabled is false: there is no waiting room to export",
        ),
        (
            [WAITING_ROOM, "--start", START, "--set", "defenses.waiting_room.session_s=90"],
            "defenses.waiting_room.session_s: 90 s (1.5 minutes) cannot be exported: "
            "Cloudflare's session_duration takes a whole number of minutes from 1 to 30",
        ),
        (
            [WAITING_ROOM, "--start", START, "--set", "defenses.waiting_room.session_s=1860"],
            "defenses.waiting_room.session_s: 1,860 s (31 minutes) cannot be exported",
        ),
        (
            [
                WAITING_ROOM,
                "--start",
                START,
                "--set",
                "defenses.waiting_room.new_users_per_min=150",
            ],
            "defenses.waiting_room.new_users_per_min: 150 cannot be exported: Cloudflare's "
            "new_users_per_minute takes a whole number of users a minute from 200 to "
            "2,147,483,647",
        ),
        (
            [
                WAITING_ROOM,
                "--start",
                START,
                "--set",
                "defenses.waiting_room.new_users_per_min=12000.5",
            ],
            "defenses.waiting_room.new_users_per_min: 12,000.5 cannot be exported",
        ),
        (
            [WAITING_ROOM, "--start", START, "--set", "defenses.waiting_room.max_active=199"],
            "defenses.waiting_room.max_active: 199 cannot be exported: Cloudflare's "
            "total_active_users takes a whole number of users from 200 to 2,147,483,647",
        ),
        (
            [WAITING_ROOM, "--start", START, "--set", "defenses.waiting_room.prequeue_s=120"],
            "defenses.waiting_room.prequeue_s: 120 s cannot be exported: Cloudflare's "
            "pre-queue starts at least 5 minutes (300 s) before the event, or not at all (0)",
        ),
        (
            [WAITING_ROOM, "--start", START, "--set", "sale.window_s=30"],
            "sale.window_s: 30 s cannot be exported: a Cloudflare event starts at least one "
            "minute before it ends",
        ),
        (
            [WAITING_ROOM],
            "--start is required: the sale's opening with its UTC offset, e.g. --start "
            "YYYY-MM-DDT10:00:00+07:00",
        ),
        (
            [WAITING_ROOM, "--start", "2021-01-26T10:00:00"],
            "--start: '2021-01-26T10:00:00' has no UTC offset",
        ),
        ([WAITING_ROOM, "--start", "tomorrow"], "--start: 'tomorrow' is not an ISO 8601 timestamp"),
        (
            [str(SCENARIOS / "poco_m3_waiting_room.toml"), "--start", "2021-01-27T10:00:00+07:00"],
            "--start: 2021-01-27T10:00:00+07:00 is on 2021-01-27, but "
            f"{SCENARIOS / 'poco_m3_waiting_room.toml'} says sale.date = 2021-01-26",
        ),
        (
            [str(SCENARIOS / "poco_m3_waiting_room.toml"), "--start", "2021-01-26T09:00:00+07:00"],
            "opens at 09:00:00, but",
        ),
        (
            [WAITING_ROOM, "--start", START, "--name", "poco m3"],
            "--name: 'poco m3' cannot name a Cloudflare event: letters, digits, '-' and '_' only",
        ),
        (
            [WAITING_ROOM, "--start", START, "--set", "name='poco.m3'"],
            "waiting_room.toml: name: 'poco.m3' cannot name a Cloudflare event",
        ),
        ([WAITING_ROOM, "--start", START, "--format", "aws"], "--format: 'aws' is not a product"),
        (
            [WAITING_ROOM, "--start", START, "--out", "/nonexistent-folder/event.json"],
            "--out: /nonexistent-folder/event.json: its folder does not exist",
        ),
    ],
)
def test_what_cannot_be_expressed_is_refused_on_one_line(args: list[str], message: str) -> None:
    code, out, err = _export(*args)
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]


def test_export_loads_no_engine() -> None:
    """Like `validate`, the export reads the scenario only (tests/test_cli_startup.py)."""
    from .test_cli_startup import _modules_after

    seen = _modules_after(
        [
            ["export", "--help"],
            ["export", "waiting-room", "--help"],
            ["export", "waiting-room", WAITING_ROOM, "--start", START],
        ]
    )
    assert all(not mods for mods in seen.values()), seen
