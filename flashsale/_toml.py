"""TOML out for resolved scenarios, written with tomlkit (tomllib reads TOML; nothing in
the standard library writes it). Tables become [sections], distributions stay inline
tables, lists of tables become [[arrays]]; tomlkit quotes every key that is not bare
(``"X-Café"``), escapes every string, and keeps a sub-table of an array's table under
that table. ``tests/test_toml.py`` reads every built-in scenario back from its output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomlkit
from tomlkit.items import AoT, InlineTable, Item, Table

__all__ = ["dumps"]


def dumps(data: Mapping[str, Any]) -> str:
    """``data`` as a TOML document that ``tomllib.loads`` reads back to equal data."""
    doc = tomlkit.document()
    _fill(doc, data)
    return doc.as_string()


def _fill(container: Any, data: Mapping[str, Any]) -> None:
    """Values first, then [tables], then [[arrays of tables]] (the order TOML needs)."""
    values, tables, arrays = [], [], []
    for k, v in data.items():
        if not isinstance(k, str):
            raise TypeError(f"cannot write a {type(k).__name__} key as TOML")
        if _is_table(v):
            tables.append((k, v))
        elif _is_array_of_tables(v):
            arrays.append((k, v))
        else:
            values.append((k, v))
    for k, v in values:
        container.add(k, _value(v))
    for k, v in tables:
        container.add(k, _table(v))
    for k, items in arrays:
        aot = AoT([])
        for item in items:
            aot.append(_table(item))
        container.add(k, aot)


def _is_table(v: object) -> bool:
    """A non-empty table that is not a distribution (those stay inline)."""
    return isinstance(v, Mapping) and bool(v) and "dist" not in v


def _is_array_of_tables(v: object) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _table(data: Mapping[str, Any]) -> Table:
    table = tomlkit.table()
    _fill(table, data)
    return table


def _value(v: object) -> Item:
    """One value, inline: a table as {k = v, ...}, a list as [...]."""
    if isinstance(v, Mapping):
        inline: InlineTable = tomlkit.inline_table()
        for k, x in v.items():
            if not isinstance(k, str):
                raise TypeError(f"cannot write a {type(k).__name__} key as TOML")
            inline.append(k, _value(x))
        return inline
    if isinstance(v, list | tuple):
        array = tomlkit.array()
        array.extend(_value(x) for x in v)
        return array
    if isinstance(v, bool | int | float | str):
        return tomlkit.item(v)
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _toml_value(v: object) -> str:
    """One value as a TOML literal, e.g. for ``--set PATH=VALUE``."""
    return _value(v).as_string()
