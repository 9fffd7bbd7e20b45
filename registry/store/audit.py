"""The hash chain of the audit trail, and its verification.

Row ``n`` stores ``hash_n = SHA-256(canonical(row_n fields, prev_hash = hash_{n-1}))``
with ``hash_0`` = 64 zeros. The canonical encoding is compact JSON with
sorted keys, UTF-8, no NaN/Infinity, the timestamp as
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, microseconds) and a version field, so
anyone can recompute a hash from an export of the table with nothing but a
JSON library and SHA-256.

Changing, inserting or deleting any row breaks the chain at that seq.
Removing the newest rows *and* lowering the counter together is invisible to
the chain alone: anchor the head (``seq``, ``hash``) outside the database,
e.g. in logs or a monitoring system, to detect that too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from registry.store.records import AuditRecord, AuditVerification
from registry.store.schema import AUDIT_COUNTER

if TYPE_CHECKING:
    from registry.store.engine import Store

GENESIS_HASH = "0" * 64
CANONICAL_VERSION = 1


# One encoder for every entry (``json.dumps`` with these options builds a new one
# per call); ``encode`` gives exactly what ``json.dumps`` gives with them.
_CANONICAL_JSON = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_time(at: datetime) -> str:
    """``at`` as the canonical encoding spells it: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
    prev_hash: str,
) -> bytes:
    return _canonical(seq, canonical_time(at), actor, action, subject, details, prev_hash)


def _canonical(
    seq: int,
    at: str,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
    prev_hash: str,
) -> bytes:
    doc = {
        "v": CANONICAL_VERSION,
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
        "prev_hash": prev_hash,
    }
    return _CANONICAL_JSON.encode(doc).encode("utf-8")


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    data = canonical_bytes(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        details=details,
        prev_hash=prev_hash,
    )
    return hashlib.sha256(data).hexdigest()


def chain_hashes(
    first_seq: int,
    at: datetime,
    entries: Sequence[tuple[str, str, str, dict[str, Any]]],
    prev_hash: str,
) -> list[str]:
    """The hashes of consecutive entries ``(actor, action, subject, details)``
    numbered from ``first_seq``, all written at ``at``, chained after
    ``prev_hash``: each one what :func:`entry_hash` gives for its row."""
    when = canonical_time(at)
    sha256 = hashlib.sha256
    hashes = []
    for i, (actor, action, subject, details) in enumerate(entries):
        prev_hash = sha256(
            _canonical(first_seq + i, when, actor, action, subject, details, prev_hash)
        ).hexdigest()
        hashes.append(prev_hash)
    return hashes


def record_hash(record: AuditRecord) -> str:
    """The hash ``record`` should carry, recomputed from its fields."""
    return entry_hash(
        seq=record.seq,
        at=record.at,
        actor=record.actor,
        action=record.action,
        subject=record.subject,
        details=record.details,
        prev_hash=record.prev_hash,
    )


def verify_audit_chain(store: Store, *, batch_size: int = 1000) -> AuditVerification:
    """Walk the whole audit trail: ``(ok, first_bad_seq, count)``.

    ``first_bad_seq`` is the first seq whose row is missing, altered, or does
    not link to its predecessor; ``count`` is how many rows verified before it
    (all of them when ``ok``). Rows appended while this runs are verified too.
    """
    from registry.store._internal import sequence

    with store.read() as view:
        # Read the counter first: every number it has handed out belongs to a
        # committed row (the same transaction wrote both).
        head = sequence.current_value(view.unit, AUDIT_COUNTER)
        expected, prev, count = 1, GENESIS_HASH, 0
        while True:
            rows = view.audit.rows(after_seq=expected - 1, limit=batch_size)
            if not rows:
                break
            for row in rows:
                if row.seq != expected:
                    return AuditVerification(False, expected, count)
                if row.prev_hash != prev or record_hash(row) != row.hash:
                    return AuditVerification(False, row.seq, count)
                prev, expected, count = row.hash, expected + 1, count + 1
        if count < head:
            # Rows at the end were deleted: the first missing one is bad.
            return AuditVerification(False, count + 1, count)
        return AuditVerification(True, None, count)
