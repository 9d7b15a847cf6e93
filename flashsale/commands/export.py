"""``flashsale export``: a simulated plan as a real product's configuration.

``flashsale export waiting-room SCENARIO --format cloudflare --start TIMESTAMP
[--name NAME] [--out FILE]`` prints (or writes) the JSON body of a Cloudflare
Waiting Room event (flashsale.export_waiting_room) and lists on stderr what the
simulation models that the event cannot express, and what the product does that
the simulation does not model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flashsale._cli_utils import SetOption, fail, guarded, load_or_exit

__all__ = ["export_app"]

FORMATS = ("cloudflare",)
"""Products a waiting room can be exported to."""

export_app = typer.Typer(
    name="export",
    help="Export a scenario's plan as a real product's configuration.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def waiting_room(
    scenario: Annotated[Path, typer.Argument(help="Scenario file with a waiting room on.")],
    format_: Annotated[
        str, typer.Option("--format", help=f"Product: {', '.join(FORMATS)}.")
    ] = "cloudflare",
    start: Annotated[
        str | None,
        typer.Option(
            help="The sale's opening with its UTC offset, e.g. 2021-01-26T10:00:00+07:00 "
            "(required: a scenario has a local date and time but no time zone).",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Event name; default: the scenario's name.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the JSON to this file instead of stdout.")
    ] = None,
    set_: SetOption = None,
) -> None:
    """The scenario's [defenses.waiting_room] as a Cloudflare Waiting Room event (JSON body
    of POST /zones/{zone_id}/waiting_rooms/{waiting_room_id}/events).

    Exit 0 written, 2 bad input: the waiting room off, a value the product cannot take
    (it is refused, never rounded), a bad --start, --name, --format or --out.
    """
    from flashsale.export_waiting_room import (
        CLOUDFLARE_DOCS,
        ExportError,
        cloudflare_event,
        parse_start,
    )
    from flashsale.runs import write_text_atomic

    if format_ not in FORMATS:
        fail(f"--format: {format_!r} is not a product flashsale exports to; known: cloudflare")
    sc = load_or_exit(scenario, set_)
    if start is None:
        day = sc.sale.date.isoformat() if sc.sale.date is not None else "YYYY-MM-DD"
        fail(
            "--start is required: the sale's opening with its UTC offset, e.g. "
            f"--start {day}T{sc.sale.opens_at.isoformat()}+07:00 ({scenario} gives no "
            "time zone)"
        )
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        fail(f"--out: {out}: {'is a folder' if out.is_dir() else 'its folder does not exist'}")
    try:
        event = cloudflare_event(sc, parse_start(start), source=str(scenario), name=name)
    except ExportError as e:
        fail(str(e))
    text = json.dumps(event.body, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_text_atomic(out, text)
        typer.echo(f"wrote {out}")
    b = event.body
    say = [
        f"Cloudflare Waiting Room event {b['name']!r}: {b['event_start_time']} (the "
        f"opening, {start}) to {b['event_end_time']}"
        + (f", pre-queue from {b['prequeue_start_time']}" if b["prequeue_start_time"] else ""),
        "POST it to https://api.cloudflare.com/client/v4/zones/{zone_id}/waiting_rooms/"
        "{waiting_room_id}/events (Waiting Room Advanced); the event overrides the room's "
        f"settings while it lasts. Fields: {CLOUDFLARE_DOCS}",
        "The simulation models, the event cannot express:",
        *(f"  - {n}" for n in event.not_exported),
        "Cloudflare does, the simulation does not model:",
        *(f"  - {n}" for n in event.not_simulated),
    ]
    for line in say:
        typer.echo(line, err=True)


export_app.command("waiting-room")(guarded(waiting_room))
