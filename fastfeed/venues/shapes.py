"""Helpers every adapter's error text uses: the JSON name of what was found."""

from __future__ import annotations

__all__ = ["json_kind"]


def json_kind(value: object) -> str:
    """The JSON name of a value's type, for error text (an int shows its value)."""
    if value is None:
        return "null or missing"
    if type(value) is bool:
        return "bool"
    if type(value) is int:
        return f"int {value}"
    return {dict: "object", list: "array", str: "str", float: "float"}.get(type(value), "other")
