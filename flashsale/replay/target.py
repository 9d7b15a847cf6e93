"""Where a replay sends traffic, and the safety rule that keeps it on loopback by default.

Staging is a configuration change, never a code change: the base URL and the
target protocol (flashsale.protocol: each step's request and answer map, the
identities, the reset and the audit) come from the scenario's ``[target]``
table or from a target config file (a TOML file with its own ``[target]``
table, which replaces the scenario's). A relative ``accounts_file`` is read
from the folder of the file that names it. :func:`check_protocol` refuses, up
front, what would only fail once traffic flows: an unset secret, an accounts
file that does not cover the accounts replayed, a defense the protocol has no
step for.

Safety: traffic to a host that is not loopback is sent only when the
configuration names that URL as ``target.base_url`` *and* the operator passes
``--allow-remote``. A URL typed on the command line alone is never enough, and
``--set target.base_url=URL`` is the command line too: a scenario override that
names a host that is not loopback is refused as the scenario loads, whatever
the command (:func:`refuse_command_line_url`).
"""

from __future__ import annotations

import csv
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from flashsale.protocol import Target, step_names, url_problem
from flashsale.replay.custom import Steps, handles, load_steps
from flashsale.scenario import (
    Scenario,
    ScenarioError,
    apply_overrides,
    files_from,
    parse_scenario,
)

__all__ = [
    "TargetError",
    "apply_target_config",
    "check_protocol",
    "check_target",
    "is_loopback",
    "load_accounts",
    "load_custom",
    "refuse_command_line_url",
    "replayed_accounts",
    "scenario_overrides",
]

MAX_ACCOUNTS_BYTES = 64 << 20
"""Largest accounts file read (64 MiB: a million accounts with a few fields each)."""


class TargetError(ValueError):
    """A target the replay refuses to use (a user error: exit 2)."""


def scenario_overrides(overrides: list[str] | None, target_config: Path | None) -> list[str]:
    """The ``--set`` overrides for the scenario file itself: with a target config, its
    ``target.*`` ones are left for :func:`apply_target_config` (they change the config's
    table, not the scenario's, which the config replaces)."""
    if target_config is None:
        return list(overrides or [])
    return [o for o in overrides or [] if not o.strip().startswith("target.")]


def apply_target_config(
    scenario: Scenario, path: Path, overrides: list[str] | None = None
) -> Scenario:
    """The scenario with its ``[target]`` replaced by the one in ``path``, validated alike;
    the command line's ``--set target.*`` ``overrides`` then apply over it (the file does
    not silently undo them)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise TargetError(f"{path}: cannot read: {e}") from None
    extra = sorted(set(data) - {"target"})
    if "target" not in data or extra:
        raise TargetError(
            f"{path}: a target config holds one [target] table"
            + (f"; unexpected: {', '.join(extra)}" if extra else "; none found")
        )
    merged = scenario.to_toml_dict()
    merged["target"] = data["target"]
    ours = [o for o in overrides or [] if o.strip().startswith("target.")]
    try:
        if ours:
            merged = apply_overrides(merged, ours, str(path))
        return files_from(parse_scenario(merged, str(path)), path.parent)
    except ScenarioError as e:
        raise TargetError(str(e)) from None


def load_accounts(target: Target) -> dict[int, dict[str, str]]:
    """The accounts file's rows by account id (``{user.FIELD}``); empty without one.

    The file is CSV with a header row and an ``account`` column (integer ids as the
    schedule numbers them: humans 0..H-1, then the bot accounts). Raises TargetError
    naming the file and the line for an unreadable file, a missing column, a bad or
    repeated id."""
    if target.accounts_file is None:
        return {}
    path = Path(target.accounts_file)
    where = f"target.accounts_file: {path}"
    try:
        if path.stat().st_size > MAX_ACCOUNTS_BYTES:
            raise TargetError(f"{where}: larger than {MAX_ACCOUNTS_BYTES >> 20} MiB")
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark
    except FileNotFoundError:
        raise TargetError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TargetError(f"{where}: cannot read: {e}") from None
    rows = csv.DictReader(text.splitlines())
    if rows.fieldnames is None or "account" not in rows.fieldnames:
        raise TargetError(f"{where}: needs a header row with an 'account' column")
    out: dict[int, dict[str, str]] = {}
    for row in rows:
        line = rows.line_num
        raw = (row.get("account") or "").strip()
        if not re.fullmatch(r"[0-9]{1,12}", raw):
            raise TargetError(f"{where}: line {line}: account {raw[:40]!r} is not an id (0, 1 ...)")
        if int(raw) in out:
            raise TargetError(f"{where}: line {line}: account {raw} appears twice")
        out[int(raw)] = {k: (v or "") for k, v in row.items() if k and k != "account"}
    return out


def load_custom(target: Target) -> type[Steps] | None:
    """The protocol's Python class (``target.python_class``), or None; TargetError naming
    the field if it cannot be loaded (flashsale.replay.custom.load_steps)."""
    if target.python_class is None:
        return None
    try:
        return load_steps(target.python_class)
    except ValueError as e:
        raise TargetError(f"target.python_class: {e}") from None


def replayed_accounts(scaled: Scenario) -> range:
    """The account ids a replay of ``scaled`` uses: humans 0..H-1, then the bot accounts."""
    return range(scaled.humans.count + scaled.bots.accounts)


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


_DEFENSE_STEPS = {
    "captcha": ("captcha", "captcha_answer"),
    "lottery": ("lottery", "lottery_poll"),
    "waiting_room": ("waiting_room", "waiting_room_poll"),
}


def check_protocol(scenario: Scenario, accounts: Iterable[int], source: str) -> None:
    """Raise TargetError if the replay of ``scenario`` could not speak its target's
    protocol: a defense on without its steps, an ``{env.NAME}`` that is not set, an
    accounts file without a row for one of ``accounts`` (the ids replayed), a
    ``{user.FIELD}`` the file does not have."""
    t = scenario.target
    problems = []
    try:
        custom = load_custom(t)
    except TargetError as e:
        raise TargetError(f"{source}: {e}") from None
    needed = {"cart": True, "pay": True}
    for defense, steps in _DEFENSE_STEPS.items():
        needed |= dict.fromkeys(steps, getattr(scenario.defenses, defense).enabled)
    missing = [s for s, on in needed.items() if on and s not in t.steps and not handles(custom, s)]
    if missing:
        problems.append(
            f"target.steps: the replay needs {', '.join(missing)} (the defenses it has on), "
            "which the protocol neither declares nor has a python_class method for"
        )
    unset = sorted(n for n in t.env_names() if not os.environ.get(n))
    if unset:
        problems.append(
            f"target: {', '.join('{env.' + n + '}' for n in unset)}: environment variable"
            f"{'s' if len(unset) > 1 else ''} {', '.join(unset)} not set or empty (a value "
            "the protocol reads from the environment: a secret, a path)"
        )
    broken = sorted(n for n in t.env_names() if _CONTROL.search(os.environ.get(n, "")))
    if broken:
        problems.append(
            f"target: environment variable {broken[0]} holds a line break or a control "
            "character (it would split a header); its value is not shown"
        )
    fields = {
        n.removeprefix("user.")
        for s in t.steps.values()
        for n in step_names(s, t.headers)
        if n.startswith("user.")
    }
    if fields and t.accounts_file is None:
        problems.append(
            f"target.accounts_file: the protocol uses {{user.{sorted(fields)[0]}}} "
            "but names no accounts file"
        )
    if t.accounts_file is not None and not problems:
        try:
            rows = load_accounts(t)
        except TargetError as e:
            raise TargetError(f"{source}: {e}") from None
        absent = [a for a in accounts if a not in rows]
        if absent:
            problems.append(
                f"target.accounts_file: {t.accounts_file}: no row for account {absent[0]} "
                f"({len(absent):,} of the accounts replayed have none)"
            )
        columns = set(next(iter(rows.values()), {}))
        lacking = sorted(fields - columns)
        if lacking:
            problems.append(
                f"target.accounts_file: {t.accounts_file}: no column {lacking[0]!r} "
                f"(the protocol uses {{user.{lacking[0]}}})"
            )
    if problems:
        raise TargetError("\n".join(f"{source}: {p}" for p in problems))


def is_loopback(url: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``[::1]``: the only hosts tests may touch."""
    host = _hostname(url) or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostname(url: str) -> str | None:
    """The URL's host, or None when it has none or cannot be split ("http://[::1")."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def refuse_command_line_url(url: str, source: str) -> None:
    """Raise ScenarioError if ``url``, given by ``--set target.base_url=...``, is an
    http(s) URL whose host is not loopback. Anything else is left to the schema."""
    if re.match(r"(?i)https?://", url) and _hostname(url) and not is_loopback(url):
        raise ScenarioError(
            f"{source}: --set target.base_url: {url[:100]} is not loopback, and a remote "
            "target given on the command line is refused; name it as base_url in the "
            "scenario's or a --target-config file's [target] table and pass --allow-remote"
        )


def _norm(url: str) -> str:
    return url.rstrip("/").lower()


def resolve_target(
    scenario: Scenario,
    scenario_path: str | Path,
    target_config: Path | None,
    overrides: list[str] | None,
    url: str | None,
    allow_remote: bool,
) -> tuple[Scenario, str, str | None]:
    """What every replaying command does first: ``(scenario, source, base_url)``.

    ``scenario`` gets the ``--target-config`` file's ``[target]`` (and the ``--set
    target.*`` ``overrides``) when one is given; ``source`` is the file whose target is
    in force (error lines name it); ``base_url`` is the command line's ``url``, else
    ``target.base_url``, checked by :func:`check_target` (None: neither names one).
    Raises TargetError.
    """
    source = str(scenario_path)
    if target_config is not None:
        scenario = apply_target_config(scenario, target_config, overrides)
        source = str(target_config)
    base_url = url or scenario.target.base_url
    if base_url is not None:
        base_url = check_target(base_url, scenario, allow_remote, source)
    return scenario, source, base_url


def check_target(url: str, scenario: Scenario, allow_remote: bool, source: str) -> str:
    """Return ``url`` (without a trailing slash) if the replay may send traffic there.

    ``source`` names where the configuration came from, for the error message.
    """
    if url_problem(url) is not None:
        raise TargetError(f"target {url[:200]!r}: {url_problem(url)}")
    if is_loopback(url):
        return url.rstrip("/")
    named = scenario.target.base_url
    if named is None or _norm(named) != _norm(url):
        raise TargetError(
            f"{source}: target.base_url: {url} is not loopback and the configuration does not "
            "name it; put it in the scenario's or the --target-config file's [target] "
            "base_url and pass --allow-remote"
        )
    if not allow_remote:
        raise TargetError(
            f"{source}: target.base_url: {url} is not loopback; pass --allow-remote to send "
            "real traffic there"
        )
    return url.rstrip("/")
