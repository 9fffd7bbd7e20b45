"""Structured logs (structlog): JSON for machines, console for people.

Never log key material, CSRs, proofs or token secrets: log identifiers
(DIDs, SPIFFE IDs, kids, token ids, serials) only. :func:`redact` drops any
field whose name says it is secret, as a last line of defence.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_WORDS = ("key", "secret", "token", "password", "passphrase", "proof", "csr", "seed")
# Field names that contain a secret word but hold identifiers only.
_ALLOWED = frozenset({"kid", "token_id", "public_key_kid"})


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in list(event):
        if name in _ALLOWED or name == "event":
            continue
        lowered = name.lower()
        if any(word in lowered for word in _SECRET_WORDS):
            event[name] = "[redacted]"
    return event


def configure(log_format: str = "console", level: str = "info") -> None:
    numeric = logging.getLevelName(level.upper())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    if log_format == "json":
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=False)]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
