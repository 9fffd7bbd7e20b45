"""CA rotation: the schedule applied to the CA, and operator-driven rotation.

:meth:`CARotator.tick` runs from the registry's scheduler: it asks
:func:`registry.ca.schedule.plan` what is due and does it. :meth:`CARotator.rotate`
is ``mesh ca rotate``: prepare the next authorities now, and with ``activate``
make them sign (refused until they have been published for the propagation
delay, unless forced). Every change to the authority set bumps the bundle
sequence, rewrites ``bundle.pem``, appends a ``bundle.changed`` event (agents
and peers pick up the new bundle from it without a restart) and an audit
entry, then calls ``on_change`` (the server re-reads its TLS trust anchors).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from registry.ca.authority import AuthorityState
from registry.ca.certificate_authority import CertificateAuthority
from registry.ca.schedule import (
    Action,
    ActionKind,
    SchedulePolicy,
    next_change,
    plan,
    propagated,
    published_at,
)
from registry.events.types import BUNDLE_CHANGED
from registry.status import precondition


@dataclass(frozen=True)
class AuthorityView:
    kind: str
    id: str
    state: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class CAStatusView:
    authorities: tuple[AuthorityView, ...]
    sequence: int
    next_change: tuple[datetime, str] | None
    changes: tuple[str, ...] = ()


class CARotator:
    def __init__(
        self,
        ca: CertificateAuthority,
        store: Any,
        policy: SchedulePolicy,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.ca = ca
        self.store = store
        self.policy = policy
        self._on_change = on_change
        # One rotation at a time in this process (the CA also refuses a concurrent writer).
        self._lock = threading.Lock()

    # -- scheduled -------------------------------------------------------------------------

    def tick(self) -> list[str]:
        """Do whatever the schedule says is due now; return what was done."""
        with self._lock:
            now = self.ca.now()
            actions = plan(self.ca.x509_authorities, self.ca.jwt_authorities, now, self.policy)
            done = [self._apply(action) for action in actions]
            done = [d for d in done if d]
            if done:
                self._announce(done, actor="registry:ca-schedule")
            return done

    # -- operator-driven -------------------------------------------------------------------

    def rotate(self, *, activate: bool, force: bool, actor: str) -> CAStatusView:
        """Prepare the next authorities (if none is prepared); with ``activate``, activate them.

        Activation before the propagation delay is refused (FAILED_PRECONDITION,
        saying when it will be allowed) unless ``force``; any prepare done by this
        call is kept and announced either way.
        """
        with self._lock:
            changes: list[str] = []
            notes: list[str] = []
            for family, prepared in self._prepared():
                if prepared is None:
                    action = Action(ActionKind.PREPARE, family, None, f"requested by {actor}")
                    changes.append(self._apply(action))
                else:
                    notes.append(
                        f"{family} {prepared.id} already prepared (published "
                        f"{published_at(prepared).isoformat()})"
                    )
            if activate or force:
                now = self.ca.now()
                pending = [(f, p) for f, p in self._prepared() if p is not None]
                blocked = [(f, p) for f, p in pending if not propagated(p, now, self.policy)]
                if blocked and not force:
                    if changes:
                        self._announce(changes, actor)
                    family, prepared = blocked[0]
                    ready = published_at(prepared) + self.policy.propagation
                    raise precondition(
                        f"the prepared {family} authority {prepared.id} is in the bundle only "
                        f"since {published_at(prepared).isoformat()}; agents may not have it "
                        f"before {ready.isoformat()} (the propagation delay). Activate then, "
                        "or force it now and accept failed handshakes with peers that have "
                        "not refreshed their bundle yet"
                    )
                for family, prepared in pending:
                    action = Action(ActionKind.ACTIVATE, family, prepared.id, f"by {actor}")
                    changes.append(self._apply(action))
            if changes:
                self._announce(changes, actor)
            return self._status(tuple(changes + notes))

    def _prepared(self) -> list[tuple[str, Any]]:
        return [
            (family, next((a for a in auths if a.state is AuthorityState.PREPARED), None))
            for family, auths in self._families()
        ]

    def status(self) -> CAStatusView:
        return self._status(())

    # -- internals -------------------------------------------------------------------------

    def _families(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [("x509", self.ca.x509_authorities), ("jwt", self.ca.jwt_authorities)]

    def _apply(self, action: Action) -> str:
        if action.kind is ActionKind.PREPARE:
            if action.family == "x509":
                new_id = self.ca.prepare_x509_authority().id
            else:
                new_id = self.ca.prepare_jwt_authority().kid
            return f"prepare {action.family} {new_id}: {action.reason}"
        if action.kind is ActionKind.ACTIVATE:
            assert action.authority_id is not None
            if action.family == "x509":
                self.ca.activate_x509_authority(action.authority_id)
            else:
                self.ca.activate_jwt_authority(action.authority_id)
            return f"activate {action.family} {action.authority_id}: {action.reason}"
        # PRUNE: the CA drops every expired retired authority of both families at once.
        if self.ca.prune_expired():
            return f"prune {action.family} {action.authority_id}: {action.reason}"
        return ""

    def _announce(self, changes: list[str], actor: str) -> None:
        sequence = self.ca.sequence
        authorities = [
            {"kind": a.kind, "id": a.id, "state": a.state}
            for a in self._status(()).authorities
        ]
        with self.store.transaction() as tx:
            tx.events.append(
                BUNDLE_CHANGED,
                None,
                {"sequence": sequence, "changes": changes, "authorities": authorities},
            )
            tx.audit.append(
                actor, "ca.rotate", "ca", {"sequence": sequence, "changes": changes}
            )
        if self._on_change is not None:
            self._on_change()

    def _status(self, changes: tuple[str, ...]) -> CAStatusView:
        views = tuple(
            AuthorityView(kind, a.id, a.state.value, a.not_before, a.not_after)
            for kind, authorities in self._families()
            for a in authorities
        )
        return CAStatusView(
            authorities=views,
            sequence=self.ca.sequence,
            next_change=next_change(self._families(), self.policy),
            changes=changes,
        )


__all__ = ["AuthorityView", "CARotator", "CAStatusView"]
