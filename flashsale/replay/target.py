"""Where a replay sends traffic, and the safety rule that keeps it on loopback by default.

Staging is a configuration change, never a code change: the base URL, the
endpoint paths, headers and auth come from the scenario's ``[target]`` table or
from a target config file (a TOML file with its own ``[target]`` table, which
replaces the scenario's).

Safety: traffic to a host that is not loopback is sent only when the
configuration names that URL as ``target.base_url`` *and* the operator passes
``--allow-remote``. A URL typed on the command line alone is never enough, and
``--set target.base_url=URL`` is the command line too: a scenario override that
names a host that is not loopback is refused as the scenario loads, whatever
the command (:func:`refuse_command_line_url`).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from flashsale.scenario import Scenario, ScenarioError, parse_scenario

__all__ = [
    "TargetError",
    "apply_target_config",
    "check_target",
    "is_loopback",
    "refuse_command_line_url",
]


class TargetError(ValueError):
    """A target the replay refuses to use (a user error: exit 2)."""


def apply_target_config(scenario: Scenario, path: Path) -> Scenario:
    """The scenario with its ``[target]`` replaced by the one in ``path``, validated alike."""
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
    try:
        return parse_scenario(merged, str(path))
    except ScenarioError as e:
        raise TargetError(str(e)) from None


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


def check_target(url: str, scenario: Scenario, allow_remote: bool, source: str) -> str:
    """Return ``url`` (without a trailing slash) if the replay may send traffic there.

    ``source`` names where the configuration came from, for the error message.
    """
    if not url.startswith(("http://", "https://")) or not _hostname(url):
        raise TargetError(f"target {url!r}: expected an http(s) URL like http://127.0.0.1:8000")
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
