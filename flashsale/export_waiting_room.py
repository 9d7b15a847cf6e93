"""A scenario's waiting room as a Cloudflare Waiting Room *event*: the JSON body of
``POST /zones/{zone_id}/waiting_rooms/{waiting_room_id}/events``.

An event overrides an existing waiting room's settings for a period of time (Waiting
Room Advanced subscription); the body carries the sale's opening and close, the
pre-queue and the room's settings. Field names, units, required fields and limits
are Cloudflare's public API documentation's (checked 2026-11-30):

- https://developers.cloudflare.com/api/resources/waiting_rooms/subresources/events/methods/create/
  (the fields; ``name``, ``event_start_time`` and ``event_end_time`` required; the
  start at least one minute before the end; the pre-queue at least five minutes
  before the start; ``new_users_per_minute`` and ``total_active_users`` integers from
  200 to 2,147,483,647, each settable only with the other; ``session_duration``
  whole minutes from 1 to 30; ``name`` letters, digits, ``-`` and ``_`` only);
- https://developers.cloudflare.com/api/resources/waiting_rooms/methods/create/
  (``queueing_method``: fifo, random, passthrough or reject; ``session_duration`` is
  the lifetime in minutes of the cookie an admitted user gets; ``disable_session_renewal``);
- https://developers.cloudflare.com/waiting-room/additional-options/create-events/
  (``shuffle_at_event_start`` shuffles the pre-queue at the event's start);
- https://developers.cloudflare.com/waiting-room/how-to/control-user-session/
  (renewal on every request; revoking a session with the origin's
  ``Cf-Waiting-Room-Command: revoke`` header once ``enabled_origin_commands``
  includes ``revoke``).

The mapping from ``[defenses.waiting_room]`` (flashsale.defenses.waiting_room):
``order`` -> ``queueing_method``; ``new_users_per_min`` -> ``new_users_per_minute``;
``max_active`` -> ``total_active_users``; ``session_s`` / 60 -> ``session_duration``;
the opening minus ``prequeue_s`` -> ``prequeue_start_time``, with
``shuffle_at_event_start`` (the simulation shuffles its pre-queue at the opening);
the opening and the opening plus ``sale.window_s`` -> ``event_start_time`` and
``event_end_time``; ``disable_session_renewal`` true (a simulated session lasts
``session_s`` from admission, whatever the buyer does). A value the product cannot
take exactly (a session of 90 s, 150.5 new users a minute, 100 active users) is
refused, never rounded: the plan would no longer be the one simulated.

The scenario says the sale's local day and time (``sale.date``, ``sale.opens_at``)
but no time zone, so the caller gives the opening as an instant (``--start``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from flashsale.scenario import Scenario

__all__ = [
    "CLOUDFLARE_DOCS",
    "CLOUDFLARE_LIMITS",
    "ExportError",
    "WaitingRoomEvent",
    "cloudflare_event",
    "parse_start",
]

CLOUDFLARE_DOCS = (
    "https://developers.cloudflare.com/api/resources/waiting_rooms/subresources/events/"
    "methods/create/"
)
"""The API reference of the request body :func:`cloudflare_event` writes."""

CLOUDFLARE_LIMITS: dict[str, tuple[int, int]] = {
    "new_users_per_minute": (200, 2_147_483_647),
    "total_active_users": (200, 2_147_483_647),
    "session_duration": (1, 30),  # minutes
}
"""Inclusive integer ranges of the event's numeric fields (CLOUDFLARE_DOCS)."""

MIN_EVENT_S = 60.0
"""``event_start_time`` must be at least one minute before ``event_end_time``."""
MIN_PREQUEUE_S = 300.0
"""``prequeue_start_time`` must be at least five minutes before ``event_start_time``."""
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
"""An event name: letters, digits, hyphens and underscores only."""


class ExportError(ValueError):
    """A scenario value or an option the product cannot take; the message names the
    field or option, the value and what is allowed."""


@dataclass(frozen=True)
class WaitingRoomEvent:
    """An exported event: the request ``body`` (JSON-ready, Cloudflare's field names)
    and ``notes``: what the simulation models that the event cannot express
    (``not_exported``) and what the product does that the simulation does not model
    (``not_simulated``), one sentence each."""

    body: dict[str, Any]
    not_exported: list[str] = field(default_factory=list)
    not_simulated: list[str] = field(default_factory=list)


def parse_start(text: str) -> dt.datetime:
    """``--start``: the sale's opening as an ISO 8601 timestamp with its UTC offset
    (``2021-01-26T10:00:00+07:00``). Raises ExportError without an offset or when
    the text is no timestamp."""
    try:
        start = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ExportError(
            f"--start: {text!r} is not an ISO 8601 timestamp (like 2021-01-26T10:00:00+07:00)"
        ) from None
    if start.tzinfo is None or start.utcoffset() is None:
        raise ExportError(
            f"--start: {text!r} has no UTC offset; add the sale's, e.g. {text}+07:00 "
            "(a waiting room runs on absolute time)"
        )
    return start


def _timestamp(t: dt.datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as the API reference's examples
    (``2021-09-28T15:30:00.000Z``)."""
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _whole(value: float, product_field: str, what: str, refuse: str) -> int:
    """``value`` as the integer ``product_field`` takes, within its range; else
    ExportError, ``refuse`` (which names the scenario's field and value) first."""
    lo, hi = CLOUDFLARE_LIMITS[product_field]
    if not (float(value).is_integer() and lo <= value <= hi):
        raise ExportError(
            f"{refuse} cannot be exported: Cloudflare's {product_field} takes a whole "
            f"number of {what} from {lo:,} to {hi:,}"
        )
    return int(value)


def _check_opening(scenario: Scenario, start: dt.datetime, source: str) -> None:
    """``start`` must be the scenario's own opening where the scenario states it."""
    sale = scenario.sale
    if sale.date is not None and start.date() != sale.date:
        raise ExportError(
            f"--start: {start.isoformat()} is on {start.date()}, but {source} says "
            f"sale.date = {sale.date}"
        )
    if "opens_at" in sale.model_fields_set and start.timetz().replace(tzinfo=None) != sale.opens_at:
        raise ExportError(
            f"--start: {start.isoformat()} opens at {start.time()}, but {source} says "
            f"sale.opens_at = {sale.opens_at}"
        )


def cloudflare_event(
    scenario: Scenario, start: dt.datetime, *, source: str, name: str | None = None
) -> WaitingRoomEvent:
    """The Cloudflare Waiting Room event for ``scenario``'s waiting room, opening at
    ``start`` (aware datetime; :func:`parse_start`). ``name`` defaults to the
    scenario's; ``source`` (the scenario's file) prefixes messages.

    Raises ExportError when the waiting room is off, when a value cannot be
    expressed exactly (``session_s`` not a whole number of minutes or over 30 of
    them; ``new_users_per_min`` or ``max_active`` not a whole number from 200 to
    2,147,483,647; ``prequeue_s`` between 0 and 5 minutes; ``sale.window_s`` under a
    minute), when the name has characters the product refuses, and when ``start``
    contradicts the scenario's ``sale.date`` or ``sale.opens_at``.
    """
    room = scenario.defenses.waiting_room
    if not room.enabled:
        raise ExportError(
            f"{source}: defenses.waiting_room.enabled is false: there is no waiting room "
            "to export (turn it on with --set defenses.waiting_room.enabled=true)"
        )
    if start.tzinfo is None:
        raise ExportError("--start: the opening needs a UTC offset")
    _check_opening(scenario, start, source)
    event_name = name if name is not None else scenario.name
    if not _NAME.match(event_name):
        where = "--name" if name is not None else f"{source}: name"
        raise ExportError(
            f"{where}: {event_name!r} cannot name a Cloudflare event: letters, digits, "
            "'-' and '_' only (give another with --name)"
        )
    if scenario.sale.window_s < MIN_EVENT_S:
        raise ExportError(
            f"{source}: sale.window_s: {scenario.sale.window_s:,.10g} s cannot be exported: a "
            "Cloudflare event starts at least one minute before it ends"
        )
    if 0 < room.prequeue_s < MIN_PREQUEUE_S:
        raise ExportError(
            f"{source}: defenses.waiting_room.prequeue_s: {room.prequeue_s:,.10g} s cannot be "
            "exported: Cloudflare's pre-queue starts at least 5 minutes (300 s) before "
            "the event, or not at all (0)"
        )
    room_field = f"{source}: defenses.waiting_room"
    session = _whole(
        room.session_s / 60,
        "session_duration",
        "minutes",
        f"{room_field}.session_s: {room.session_s:,.10g} s ({room.session_s / 60:,.4g} minutes)",
    )
    body: dict[str, Any] = {
        "name": event_name,
        "description": scenario.description or f"flashsale scenario {scenario.name}",
        "event_start_time": _timestamp(start),
        "event_end_time": _timestamp(start + dt.timedelta(seconds=scenario.sale.window_s)),
        "prequeue_start_time": (
            _timestamp(start - dt.timedelta(seconds=room.prequeue_s)) if room.prequeue_s else None
        ),
        "shuffle_at_event_start": room.prequeue_s > 0,
        "queueing_method": room.order,
        "new_users_per_minute": _whole(
            room.new_users_per_min,
            "new_users_per_minute",
            "users a minute",
            f"{room_field}.new_users_per_min: {room.new_users_per_min:,.10g}",
        ),
        "total_active_users": _whole(
            room.max_active,
            "total_active_users",
            "users",
            f"{room_field}.max_active: {room.max_active:,}",
        ),
        "session_duration": session,
        "disable_session_renewal": True,
        "suspended": False,
    }
    return WaitingRoomEvent(body, _not_exported(scenario), list(_NOT_SIMULATED))


_NOT_SIMULATED = (
    "queueing methods passthrough and reject (the simulation has fifo and random)",
    "session renewal (disable_session_renewal false: a session lasts as long as the user "
    "keeps sending requests); exported as true, as simulated",
    "Turnstile in the room (turnstile_mode, turnstile_action, the infinite queue): not "
    "set, so the event inherits the room's; the simulation's defenses.captcha guards "
    "the cart, not the room",
    "the estimated wait shown to users, custom pages, queue_all, queueing_status_code, "
    "JSON responses, cookies and additional routes: no effect on who buys is modelled",
    "traffic patterns around the world: Cloudflare treats new_users_per_minute and "
    "total_active_users as baselines that a little more or less traffic may pass",
)


def _not_exported(scenario: Scenario) -> list[str]:
    """What the simulation models that the event cannot say, this scenario's first."""
    d = scenario.defenses
    notes = []
    if d.account_limit.enabled:
        units = d.account_limit.max_units
        notes.append(
            f"defenses.account_limit ({units} unit{'s' if units != 1 else ''} per account): "
            "enforce it at the checkout"
        )
    if d.rate_limit.enabled:
        notes.append("defenses.rate_limit: a rate limit at the checkout, not the room")
    if d.captcha.enabled:
        notes.append("defenses.captcha: a CAPTCHA before the cart, not in the room")
    if d.review.enabled:
        notes.append("defenses.review: the post-hoc review of orders")
    if d.resale.enabled:
        notes.append("defenses.resale: the re-sale of cancelled units (a second event)")
    if scenario.bots.accounts:
        notes.append(
            f"bots: each of the {scenario.bots.accounts:,} bot accounts queues once, as one "
            "visitor, like a human; a real bot may hold several places (one per cookie) and "
            "the room cannot tell bots from humans"
        )
    notes.extend(
        [
            "an exact steady flow of new_users_per_min and an exact cap of max_active "
            "(Cloudflare: baselines, approximated across its network)",
            "a session that ends as soon as the buyer's journey ends (paid, sold out, gave "
            "up), freeing its slot: on Cloudflare only when your origin revokes it; set the "
            'room\'s enabled_origin_commands to ["revoke"] and answer a payment with the '
            "header Cf-Waiting-Room-Command: revoke",
            "a buyer still in checkout when its session ends carries on (the session only "
            "held a slot in the room); with disable_session_renewal Cloudflare sends it to "
            "the back of the queue when there is one",
            "visitors who arrive before prequeue_start_time: the simulation shuffles them "
            "into the pre-queue too; Cloudflare handles them with the room's own settings "
            "until the pre-queue starts",
            "after event_end_time the simulated sale is closed to everyone still queued; "
            "Cloudflare lets them in under the room's own settings",
            "waiting visitors in the simulation never leave the queue; real ones close the tab",
        ]
    )
    return notes
