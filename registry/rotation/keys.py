"""Identity key rotation in the store: each operation is one transaction with its events.

* :func:`rotate_key` — accept an agent's key history extended by rotation
  entries (signed by the current and the next key, checked from the inception
  key). The previous key is marked rotated at the entry's time, the new key
  stored, the history replaced, a ``agent.key_rotated`` event appended and the
  agent's trust marked for recompute (its credential age starts over).
* :func:`mark_compromised` — ``compromised_at`` on a key and an
  ``agent.key_compromised`` event (verifiers refuse its signatures from then).
* :func:`request_rotation` — ``agent.rotation_requested`` events for one
  agent or every agent whose key is older than a cutoff, in one transaction,
  so a campaign is a contiguous range of event sequences: its id.
* :func:`campaign_status` — per agent of a campaign: rotated (a newer key
  than the one it had), pending, or failed (no longer active).

Errors are :class:`registry.status.RpcError` with the precise status.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, func, select

from mesh.errors import KeyHistoryError
from mesh.keyhistory import KeyHistory, Rotation
from registry.events.types import KEY_COMPROMISED, KEY_ROTATED, ROTATION_REQUESTED
from registry.rotation.policy import MAX_FUTURE_SKEW
from registry.scoring.state import current_state, state_payload
from registry.status import denied, invalid, not_found, precondition
from registry.store.errors import AlreadyExists
from registry.store.records import AgentKeyRecord
from registry.store.schema import Agent, AgentKey, Event

MAX_KEY_HISTORY_CHARS = 1_000_000
_A = cast(Table, Agent.__table__)
_K = cast(Table, AgentKey.__table__)
_E = cast(Table, Event.__table__)


@dataclass(frozen=True)
class RotateResult:
    current: AgentKeyRecord
    rotated: bool
    history_json: str


@dataclass(frozen=True)
class Campaign:
    id: str
    requested: int
    requested_at: datetime


@dataclass(frozen=True)
class AgentRotation:
    did: str
    state: str  # "pending" | "rotated" | "failed"
    requested_kid: str
    current_kid: str
    detail: str = ""


@dataclass(frozen=True)
class CampaignStatus:
    id: str
    agents: tuple[AgentRotation, ...]

    def count(self, state: str) -> int:
        return sum(1 for a in self.agents if a.state == state)


# -- RotateKey ------------------------------------------------------------------------------


def parse_history(text: str) -> KeyHistory:
    """Parse and verify a submitted history (CPU only: call it outside any transaction)."""
    if not text:
        raise invalid("key_history", "is required: the agent's whole key history, extended")
    if len(text) > MAX_KEY_HISTORY_CHARS:
        raise invalid("key_history", f"is over {MAX_KEY_HISTORY_CHARS} characters")
    try:
        return KeyHistory.from_json(text)
    except KeyHistoryError as exc:
        raise invalid("key_history", str(exc)) from None


def rotate_key(
    store: Any,
    history: KeyHistory,
    text: str,
    *,
    caller_did: str | None,
    caller_serial: str | None,
    actor: str,
) -> RotateResult:
    """Apply the rotations ``history`` adds to what the registry holds for its DID.

    ``caller_did``/``caller_serial``: the agent calling over mTLS (its DID and
    its SVID's serial), or None for a call authenticated only by the history's
    signatures (the public listener).
    """
    did = str(history.did)
    if caller_did is not None and caller_did != did:
        raise denied(f"an agent may rotate only its own key ({caller_did}), not {did}")
    with store.transaction() as tx:
        now: datetime = tx.now
        agent = tx.agents.find(did)
        if agent is None:
            raise not_found(f"did: {did} is not registered here")
        if agent.status != "active":
            raise precondition(
                f"agent {did} is {agent.status}; a revoked identity cannot rotate "
                "(generate a new key and ask an operator for a join token)"
            )
        keys: list[AgentKeyRecord] = tx.keys.list_for_agent(did)
        stored_text = tx.keys.history(did)
        _check_extends(did, history, keys, stored_text)
        if len(history) == len(keys):
            if stored_text is None:
                tx.keys.put_history(did, text)
            return RotateResult(keys[-1], False, text)
        new_entries = [e for e in history.entries[len(keys) :] if isinstance(e, Rotation)]
        previous = keys[-1]
        for entry in new_entries:
            _check_entry(tx, entry, previous, now, caller_serial)
            tx.keys.mark_rotated(previous.kid, at=entry.at)
            try:
                previous = tx.keys.add(
                    did=did,
                    index=entry.index,
                    kid=entry.kid,
                    public_key=entry.public_key,
                    valid_from=entry.at,
                )
            except AlreadyExists:
                raise precondition(
                    f"key {entry.kid} is already registered (by this or another agent); "
                    "generate a fresh key for every rotation"
                ) from None
        tx.keys.put_history(did, text)
        tx.trust.mark_dirty([did])
        first = new_entries[0]
        tx.events.append(
            KEY_ROTATED,
            did,
            {
                "did": did,
                "kid": previous.kid,
                "previous_kid": first.previous_kid,
                "index": previous.index,
                "rotated_at": first.at.isoformat(),
                "state": dict(_state_after(tx, agent, previous.kid)),
            },
        )
        tx.audit.append(
            actor,
            "agent.key_rotate",
            did,
            {
                "previous_kid": first.previous_kid,
                "kid": previous.kid,
                "index": previous.index,
                "at": first.at.isoformat(),
            },
        )
        return RotateResult(previous, True, text)


def _state_after(tx: Any, agent: Any, current_kid: str) -> Any:
    """The agent's state payload after a rotation (what current_state reads, without
    reading back the agent and key rows this transaction already holds)."""
    trust = tx.trust.state(agent.did)
    return state_payload(
        status=agent.status,
        granted_ring=agent.granted_ring,
        current_kid=current_kid,
        score=trust.score if trust is not None else None,
        tier=trust.tier if trust is not None else None,
        effective_ring=trust.effective_ring
        if trust is not None and trust.score is not None
        else None,
    )


def _check_extends(
    did: str, history: KeyHistory, keys: Sequence[AgentKeyRecord], stored_text: str | None
) -> None:
    if not keys:
        raise precondition(f"agent {did} has no key on record; re-register it")
    if len(history) < len(keys):
        raise precondition(
            f"the registry holds {len(keys)} keys for {did}, the history sent has "
            f"{len(history)}; load the agent's current key history and rotate from it"
        )
    for period, key in zip(history.periods, keys, strict=False):
        if period.kid != key.kid:
            raise precondition(
                f"key_history: entry {period.index} is kid {period.kid}, the registry holds "
                f"{key.kid}; the history must extend the one the registry holds "
                "(two different rotations from one key: treat the identity as compromised)"
            )
    if stored_text is not None:
        # The stored copy was verified when it was accepted: compare entries, no signatures.
        try:
            stored_entries = json.loads(stored_text)["entries"]
        except (ValueError, KeyError, TypeError):
            return  # the key rows above agree; the stored copy is replaced by a verified one
        sent = [entry.to_json_obj() for entry in history.entries[: len(stored_entries)]]
        if stored_entries != sent:
            raise precondition(
                "key_history does not extend the history the registry holds for "
                f"{did}; load the agent's current key history and rotate from it"
            )


def _check_entry(
    tx: Any, entry: Rotation, previous: AgentKeyRecord, now: datetime, caller_serial: str | None
) -> None:
    if entry.at > now + MAX_FUTURE_SKEW:
        raise invalid(
            "key_history",
            f"rotation {entry.index} is dated {entry.at.isoformat()}, more than "
            f"{MAX_FUTURE_SKEW} after the registry's clock ({now.isoformat()}); check the "
            "agent's clock",
        )
    compromised = previous.compromised_at
    if compromised is None or entry.at < compromised:
        return
    # The one signature by a compromised key still accepted: the rotation away from it, from
    # the agent itself over mTLS with an SVID issued before the compromise (after it, the
    # compromised key can get no SVID, so whoever stole it cannot present one).
    issued = _svid_issued_at(tx, caller_serial)
    if issued is None or issued >= compromised:
        raise precondition(
            f"key {previous.kid} was marked compromised as of {compromised.isoformat()}; a "
            "rotation away from it is accepted only from the agent over mTLS with an "
            "X.509-SVID issued before then. Otherwise an operator must revoke the agent and "
            "enroll a new identity (mesh agent revoke; mesh token create)"
        )


def _svid_issued_at(tx: Any, serial: str | None) -> datetime | None:
    if not serial:
        return None
    record = tx.svids.find(serial)
    return None if record is None else cast(datetime, record.issued_at)


# -- compromise -----------------------------------------------------------------------------


def mark_compromised(
    store: Any,
    did: str,
    kid: str | None,
    at: datetime | None,
    *,
    reason: str,
    actor: str,
) -> AgentKeyRecord:
    with store.transaction() as tx:
        now: datetime = tx.now
        if at is not None and at > now + MAX_FUTURE_SKEW:
            raise invalid(
                "compromised_at",
                f"is more than {MAX_FUTURE_SKEW} in the future; leave it unset for now",
            )
        if tx.agents.find(did) is None:
            raise not_found(f"did: {did} is not registered here")
        if kid:
            key = tx.keys.find_by_kid(kid)
            if key is None or key.did != did:
                raise not_found(f"kid: {did} has no key {kid}")
        else:
            key = tx.keys.current(did)
            if key is None:
                raise precondition(f"agent {did} has no key on record")
        when = at or now
        if key.valid_from > when:
            # Nothing was signed with the key before it existed: the compromise starts with it.
            when = key.valid_from
        updated: AgentKeyRecord = tx.keys.mark_compromised(key.kid, at=when)
        if updated.compromised_at is not None and updated.compromised_at != when:
            when = updated.compromised_at  # an earlier report wins
        tx.trust.mark_dirty([did])
        tx.events.append(
            KEY_COMPROMISED,
            did,
            {
                "did": did,
                "kid": key.kid,
                "compromised_at": when.isoformat(),
                "reason": reason,
                "by": actor,
                "state": dict(current_state(tx, did)),
            },
        )
        tx.audit.append(
            actor,
            "agent.key_compromised",
            did,
            {"kid": key.kid, "compromised_at": when.isoformat(), "reason": reason},
        )
        return updated


# -- rotation requests ----------------------------------------------------------------------


def _due_agents(view: Any, cutoff: datetime | None) -> list[tuple[str, str]]:
    """(did, current kid) of every active agent whose current key is older than ``cutoff``."""
    newest = (
        select(_K.c.did, func.max(_K.c.key_index).label("key_index"))
        .group_by(_K.c.did)
        .subquery("newest")
    )
    query = (
        select(_K.c.did, _K.c.kid)
        .join(newest, and_(_K.c.did == newest.c.did, _K.c.key_index == newest.c.key_index))
        .join(_A, _A.c.did == _K.c.did)
        .where(_A.c.status == "active")
        .order_by(_K.c.did)
    )
    if cutoff is not None:
        query = query.where(_K.c.valid_from <= cutoff)
    return [(str(r[0]), str(r[1])) for r in view.unit.execute(query)]


def request_rotation(
    store: Any,
    *,
    did: str | None,
    older_than: timedelta | None,
    reason: str,
    actor: str,
) -> Campaign:
    """Ask ``did`` (or every active agent with a key older than ``older_than``) to rotate."""
    with store.transaction() as tx:
        now: datetime = tx.now
        if did is not None:
            agent = tx.agents.find(did)
            if agent is None:
                raise not_found(f"did: {did} is not registered here")
            if agent.status != "active":
                raise precondition(f"agent {did} is {agent.status}; it cannot rotate")
            key = tx.keys.current(did)
            if key is None:
                raise precondition(f"agent {did} has no key on record")
            targets = [(did, key.kid)]
        else:
            cutoff = now - older_than if older_than else None
            targets = _due_agents(tx, cutoff)
        if not targets:
            return Campaign("", 0, now)
        events = [
            (
                ROTATION_REQUESTED,
                target,
                {
                    "did": target,
                    "kid": kid,
                    "reason": reason,
                    "by": actor,
                    "requested_at": now.isoformat(),
                },
            )
            for target, kid in targets
        ]
        # One allocation of sequence numbers: the campaign is the range first..last.
        last = int(tx.trust.append_events(events))
        first = last - len(events) + 1
        tx.audit.append(
            actor,
            "agent.rotation_request",
            did or "*",
            {
                "agents": len(targets),
                "older_than_seconds": int(older_than.total_seconds()) if older_than else 0,
                "reason": reason,
                "events": f"{first}-{last}",
            },
        )
        return Campaign(f"{first}-{last}", len(targets), now)


def parse_campaign_id(text: str) -> tuple[int, int]:
    first_text, sep, last_text = text.partition("-")
    if not sep or not first_text.isdigit() or not last_text.isdigit():
        raise invalid("campaign_id", f"{text[:40]!r} is not a campaign id (FIRST-LAST)")
    if len(first_text) > 19 or len(last_text) > 19:
        raise invalid("campaign_id", f"{text[:40]!r} is not a campaign id (FIRST-LAST)")
    first, last = int(first_text), int(last_text)
    if not 0 < first <= last < 2**63 or last - first >= 10_000_000:
        raise invalid("campaign_id", f"{text[:40]!r} is not a campaign id (FIRST-LAST)")
    return first, last


def campaign_status(store: Any, campaign_id: str) -> CampaignStatus:
    """Per agent of the campaign: its key then and now, and its status — one query."""
    first, last = parse_campaign_id(campaign_id)
    newest = (
        select(_K.c.did, func.max(_K.c.key_index).label("key_index"))
        .group_by(_K.c.did)
        .subquery("newest")
    )
    current = (
        select(_K.c.did, _K.c.kid)
        .join(newest, and_(_K.c.did == newest.c.did, _K.c.key_index == newest.c.key_index))
        .subquery("current_key")
    )
    query = (
        select(_E.c.agent_did, _E.c.payload, _A.c.status, current.c.kid)
        .join(_A, _A.c.did == _E.c.agent_did)
        .outerjoin(current, current.c.did == _E.c.agent_did)
        .where(_E.c.seq.between(first, last), _E.c.type == ROTATION_REQUESTED)
        .order_by(_E.c.seq)
    )
    with store.read() as view:
        rows = list(view.unit.execute(query))
    if not rows:
        raise not_found(
            f"campaign_id: no rotation requests in events {first}-{last} (unknown id, or "
            "pruned after the event retention)"
        )
    agents = []
    for did, payload, status, now_kid in rows:
        asked = str((payload or {}).get("kid", ""))
        now_kid = str(now_kid or "")
        if now_kid and now_kid != asked:
            agents.append(AgentRotation(did, "rotated", asked, now_kid))
        elif status != "active":
            agents.append(AgentRotation(did, "failed", asked, now_kid, f"agent is {status}"))
        else:
            agents.append(AgentRotation(did, "pending", asked, now_kid))
    return CampaignStatus(campaign_id, tuple(agents))


__all__ = [
    "AgentRotation",
    "Campaign",
    "CampaignStatus",
    "RotateResult",
    "campaign_status",
    "mark_compromised",
    "parse_campaign_id",
    "parse_history",
    "request_rotation",
    "rotate_key",
]
