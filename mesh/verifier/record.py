"""What the peer verifier holds per sender: keys with their tenure, and the agent's status.

Built from one ``ResolveDID`` answer. The keys come from the signed key history,
checked from the inception key alone (:mod:`mesh.keyhistory`): the registry's
database is not the root of trust. The registry adds what only it knows: the
agent's status and when a key was reported compromised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mesh.client.types import AgentStatus, Resolution
from mesh.did import DID
from mesh.ed25519 import is_acceptable_public_key
from mesh.errors import KeyHistoryError, MeshError
from mesh.keyhistory import KeyHistory
from mesh.keys import key_id


class ResolutionError(MeshError):
    """The registry's answer for a DID cannot be trusted (bad history, keys that do not match)."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key of a sender: valid from ``valid_from``; rotated out at ``rotated_at``.

    Every time is cut to the whole second (:func:`whole_second`), the resolution
    of a message's issued-at: a key incepted at 12:00:00.7 signs messages issued
    at 12:00:00, and a key rotated out or compromised at 12:00:00.3 must not
    pass a message issued "at 12:00:00" that may have been signed after it.
    """

    public_key: bytes
    valid_from: datetime
    rotated_at: datetime | None
    compromised_at: datetime | None

    @classmethod
    def of(
        cls,
        public_key: bytes,
        valid_from: datetime,
        rotated_at: datetime | None,
        compromised_at: datetime | None,
    ) -> KeyRecord:
        return cls(
            public_key,
            whole_second(valid_from),
            whole_second(rotated_at) if rotated_at is not None else None,
            whole_second(compromised_at) if compromised_at is not None else None,
        )


def whole_second(at: datetime) -> datetime:
    """``at`` without its fraction of a second (the resolution of issued-at)."""
    return at.replace(microsecond=0)


@dataclass(slots=True)
class SenderRecord:
    """A sender as cached. Mutable only under the verifier's lock."""

    did: str
    status: AgentStatus
    keys: dict[str, KeyRecord]
    current_kid: str
    history_length: int
    # Clock seconds when the registry answered.
    fetched_at: float
    # Something changed (an event): fetch again before the next answer that depends on it.
    dirty: bool = False
    # A key was reported compromised but we do not know which or since when yet:
    # refuse everything from this sender until a fetch succeeds.
    suspended: bool = False

    @property
    def active(self) -> bool:
        return self.status is AgentStatus.ACTIVE


def record_from_resolution(did: str, resolution: Resolution, fetched_at: float) -> SenderRecord:
    """Check ``resolution`` (the answer for ``did``) and turn it into a :class:`SenderRecord`."""
    if resolution.agent.did != did:
        raise ResolutionError(
            f"asked the registry for {did}, it answered for {resolution.agent.did}",
            hint="the registry is misbehaving; check --registry",
        )
    compromised: dict[str, datetime | None] = {
        k.kid: k.compromised_at for k in resolution.keys if k.compromised_at
    }
    if resolution.key_history:
        keys, current = _from_history(did, resolution.key_history, compromised)
        length = len(keys)
    else:
        keys, current = _inception_only(did, resolution)
        length = 1
    return SenderRecord(
        did=did,
        status=resolution.agent.status,
        keys=keys,
        current_kid=current,
        history_length=length,
        fetched_at=fetched_at,
    )


def _from_history(
    did: str, text: str, compromised: dict[str, datetime | None]
) -> tuple[dict[str, KeyRecord], str]:
    try:
        history = KeyHistory.from_json(text)
    except KeyHistoryError as exc:
        raise ResolutionError(
            f"the key history the registry holds for {did} does not verify: {exc}",
            hint="treat the identity as compromised; an operator must investigate",
        ) from None
    if str(history.did) != did:
        raise ResolutionError(f"the key history for {did} is the history of {history.did}")
    keys = {
        p.kid: KeyRecord.of(p.public_key, p.valid_from, p.rotated_at, compromised.get(p.kid))
        for p in history.periods
    }
    return keys, history.current.kid


def _inception_only(did: str, resolution: Resolution) -> tuple[dict[str, KeyRecord], str]:
    # No signed history was registered: only the inception key, which founds the DID,
    # can be checked without trusting the registry's database.
    inception = next((k for k in resolution.keys if k.index == 0), None)
    if inception is None or inception.valid_from is None:
        raise ResolutionError(f"the registry sent no inception key for {did}")
    public_key = inception.public_key
    if not is_acceptable_public_key(public_key) or key_id(public_key) != inception.kid:
        raise ResolutionError(f"the inception key the registry sent for {did} is not valid")
    if not DID.parse(did).matches_key(public_key):
        raise ResolutionError(f"{did} is not derived from the inception key the registry sent")
    record = KeyRecord.of(
        public_key, inception.valid_from, inception.rotated_at, inception.compromised_at
    )
    return {inception.kid: record}, inception.kid
