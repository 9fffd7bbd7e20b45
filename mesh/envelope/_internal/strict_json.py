"""A JSON object reader that refuses what could make one message mean two things.

Duplicate member names (parsers disagree on which wins), NaN and Infinity (not
JSON), non-UTF-8 input (``json.loads`` would guess UTF-16/32) and anything but
an object at the top level are refused with ``ValueError``.
"""

from __future__ import annotations

import json
from typing import Any


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {key[:40]!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_object(data: bytes | str, what: str) -> dict[str, Any]:
    """Parse ``data`` as one JSON object; raise ``ValueError`` naming ``what`` on failure."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def dump_compact(value: dict[str, Any]) -> str:
    """Compact JSON in the caller's member order (ASCII only, no whitespace)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)
