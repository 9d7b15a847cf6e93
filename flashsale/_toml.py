"""A small TOML writer for resolved scenarios (tomllib reads TOML; nothing in the
standard library writes it). Tables become [sections], distributions stay inline,
lists of tables become [[arrays]]; the output reads back to the same data.
"""

from __future__ import annotations

import json

__all__ = ["dumps"]


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def dumps(data: dict[str, object], prefix: str = "") -> str:
    """Tables as [sections], distributions inline, lists of tables as [[...]]."""
    scalars, tables, arrays = [], [], []
    for k, v in data.items():
        if isinstance(v, dict) and v and "dist" not in v:
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((k, v))
        else:
            scalars.append(f"{_key(k)} = {_toml_value(v)}")
    out = "\n".join(scalars)
    for k, v in tables:
        name = f"{prefix}{_key(k)}"
        body = dumps(v, f"{name}.")
        out += f"\n\n[{name}]\n{body}" if not body.startswith("\n") else f"\n\n[{name}]{body}"
    for k, items in arrays:
        for item in items:
            out += f"\n\n[[{prefix}{_key(k)}]]\n{dumps(item).strip()}"
    return out.strip("\n") + ("\n" if not prefix else "")
