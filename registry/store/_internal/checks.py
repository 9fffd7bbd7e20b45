"""Argument checks shared by the repositories.

SQLite does not enforce VARCHAR lengths and PostgreSQL refuses NUL in text:
checking here makes both back ends accept and refuse exactly the same values.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from registry.store.errors import InvalidArgument


def text(field: str, value: object, max_len: int, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{field} must be a string, got {type(value).__name__}")
    if not value and not empty_ok:
        raise InvalidArgument(f"{field} must not be empty")
    if len(value) > max_len:
        raise InvalidArgument(f"{field} is {len(value)} characters long; at most {max_len} allowed")
    if "\x00" in value:
        raise InvalidArgument(f"{field} contains a NUL character")
    return value


def optional_text(field: str, value: object, max_len: int) -> str | None:
    return None if value is None else text(field, value, max_len, empty_ok=True)


def one_of(field: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidArgument(f"{field} must be one of {', '.join(allowed)}; got {value!r}")
    assert isinstance(value, str)
    return value


def integer(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{field} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidArgument(f"{field} must be between {low} and {high}; got {value}")
    return value


def aware(field: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidArgument(f"{field} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(
            f"{field} has no time zone",
            hint="pass timezone-aware datetimes, e.g. datetime.now(UTC)",
        )
    return value


_HEX_DIGITS = "0123456789abcdef"


def hex_digest(field: str, value: object, length: int = 64) -> str:
    if (
        not isinstance(value, str)
        or len(value) != length
        # Nothing left once every lowercase hex digit is stripped (one C loop).
        or value.strip(_HEX_DIGITS)
    ):
        raise InvalidArgument(f"{field} must be {length} lowercase hex characters")
    return value


def json_value(field: str, value: Any) -> Any:
    """A JSON-safe deep copy of ``value``: string keys, finite numbers, no NUL.

    The copy holds plain ``dict``, ``list``, ``str``, ``int``, ``float``,
    ``bool`` and ``None`` only (tuples become lists, subclasses such as enums
    their plain values), exactly what a JSON round trip would give back.
    ``-0.0`` becomes ``0.0`` because PostgreSQL's numeric has no negative zero;
    what is stored then reads back identical on every back end (the audit hash
    depends on that).
    """
    try:
        return _clean(field, value)
    except RecursionError as error:
        raise InvalidArgument(f"{field} is nested too deeply to store") from error


def _clean(field: str, value: Any) -> Any:
    kind = type(value)
    # The plain types first: most values are.
    if kind is str:
        if "\x00" in value:
            raise InvalidArgument(f"{field} contains a NUL character")
        return value
    if kind is int or kind is bool or value is None:
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(f"{field} has a non-string key {key!r}")
            if "\x00" in key:
                raise InvalidArgument(f"{field} has a key containing a NUL character")
            # The plain members here, as above, without a call each.
            member = type(item)
            if member is str:
                if "\x00" in item:
                    raise InvalidArgument(f"{field} contains a NUL character")
                out[key] = item
            elif member is int or member is bool or item is None:
                out[key] = item
            else:
                out[key] = _clean(field, item)
        return out
    if isinstance(value, list | tuple):
        return [_clean(field, item) for item in value]
    if isinstance(value, str):
        plain = str.__str__(value)
        if "\x00" in plain:
            raise InvalidArgument(f"{field} contains a NUL character")
        return plain
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"{field} contains a non-finite number")
        return 0.0 if value == 0 else float(value)
    if isinstance(value, int):  # bool has no subclasses; an int subclass (IntEnum) is its value
        return int(value)
    raise InvalidArgument(f"{field} contains a {type(value).__name__}, which is not JSON")


def json_object(field: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field} must be a JSON object (dict), got {type(value).__name__}")
    result: dict[str, Any] = json_value(field, value)
    return result
