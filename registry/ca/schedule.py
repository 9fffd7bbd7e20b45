"""When the CA rotates: a pure function of the authorities and the time.

Each family (X.509 and JWT) follows the same lifecycle, timed from the ACTIVE
authority's lifetime ``L`` (as SPIRE does):

* at ``prepare_at * L`` (default 1/2) a new authority is PREPARED: it is in
  the trust bundle from that moment, so every peer learns it long before it
  signs anything;
* at ``activate_at * L`` (default 5/6), and once the prepared authority has
  been published for at least ``propagation`` (default: one X.509-SVID
  lifetime, within which every agent renews and so receives the new bundle),
  it becomes ACTIVE and the old one RETIRED;
* a RETIRED authority stays in the bundle until its certificate expires. Every
  SVID it signed is capped at its ``notAfter``, so nothing it signed outlives
  it, and ``(1 - activate_at) * L`` is far longer than any SVID;
* then it is PRUNED.

If the active authority is about to expire (less than ``propagation`` left)
a prepared one is activated even if it is younger than the propagation delay:
an expired CA signs nothing anyone accepts.

Nothing here reads the clock or touches a file: :func:`plan` returns actions,
:func:`next_change` says when the next one is due.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from registry.ca.authority import CA_BACKDATE, AuthorityState
from registry.ca.errors import CAStateError

DEFAULT_PREPARE_AT = 0.5
DEFAULT_ACTIVATE_AT = 5 / 6
DEFAULT_PROPAGATION = timedelta(hours=1)


class Authority(Protocol):
    """What the schedule reads of an X.509 or JWT authority."""

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> AuthorityState: ...

    @property
    def not_before(self) -> datetime: ...

    @property
    def not_after(self) -> datetime: ...


class ActionKind(enum.StrEnum):
    PREPARE = "prepare"
    ACTIVATE = "activate"
    PRUNE = "prune"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    family: str  # "x509" | "jwt"
    authority_id: str | None
    reason: str

    def describe(self) -> str:
        target = f" {self.authority_id}" if self.authority_id else ""
        return f"{self.kind.value} {self.family}{target}: {self.reason}"


@dataclass(frozen=True)
class SchedulePolicy:
    prepare_at: float = DEFAULT_PREPARE_AT
    activate_at: float = DEFAULT_ACTIVATE_AT
    propagation: timedelta = DEFAULT_PROPAGATION

    def __post_init__(self) -> None:
        if not 0.0 < self.prepare_at < self.activate_at < 1.0:
            raise CAStateError(
                f"CA schedule: need 0 < prepare_at ({self.prepare_at}) < activate_at "
                f"({self.activate_at}) < 1",
                hint="the defaults are 1/2 and 5/6 of the CA lifetime",
            )
        if self.propagation < timedelta(0):
            raise CAStateError("CA schedule: the propagation delay must not be negative")

    def check_lifetime(self, ca_ttl: timedelta) -> None:
        """Refuse a CA lifetime too short for the schedule to publish before it signs."""
        window = ca_ttl * (self.activate_at - self.prepare_at)
        if window < self.propagation:
            raise CAStateError(
                f"a CA lifetime of {ca_ttl} leaves {window} between preparing and activating "
                f"the next CA, less than the propagation delay {self.propagation}",
                hint="lengthen the CA lifetime or shorten the X.509-SVID lifetime",
            )


def published_at(authority: Authority) -> datetime:
    """When an authority entered the bundle (its certificate is backdated by CA_BACKDATE)."""
    return authority.not_before + CA_BACKDATE


def _lifetime(authority: Authority) -> timedelta:
    return authority.not_after - published_at(authority)


def _find(authorities: Sequence[Authority], state: AuthorityState) -> Authority | None:
    for authority in authorities:
        if authority.state is state:
            return authority
    return None


def prepare_time(active: Authority, policy: SchedulePolicy) -> datetime:
    return published_at(active) + _lifetime(active) * policy.prepare_at


def activation_time(active: Authority, prepared: Authority, policy: SchedulePolicy) -> datetime:
    """When ``prepared`` replaces ``active``: at the activation fraction, once propagated,
    and at the latest when the active authority has ``propagation`` left."""
    due = max(
        published_at(active) + _lifetime(active) * policy.activate_at,
        published_at(prepared) + policy.propagation,
    )
    return min(due, active.not_after - policy.propagation)


def plan_family(
    family: str, authorities: Sequence[Authority], now: datetime, policy: SchedulePolicy
) -> list[Action]:
    """The actions due at ``now`` for one family of authorities."""
    actions: list[Action] = []
    active = _find(authorities, AuthorityState.ACTIVE)
    prepared = _find(authorities, AuthorityState.PREPARED)
    for authority in authorities:
        if authority.state is AuthorityState.RETIRED and authority.not_after <= now:
            actions.append(
                Action(ActionKind.PRUNE, family, authority.id, "retired and expired")
            )
    if active is None:
        if prepared is not None:
            actions.append(
                Action(ActionKind.ACTIVATE, family, prepared.id, "no authority is active")
            )
        return actions
    if prepared is None:
        if now >= prepare_time(active, policy):
            actions.append(
                Action(
                    ActionKind.PREPARE,
                    family,
                    None,
                    f"the active authority {active.id} is past "
                    f"{policy.prepare_at:.0%} of its lifetime",
                )
            )
        return actions
    if now >= activation_time(active, prepared, policy):
        if now >= active.not_after - policy.propagation:
            reason = f"the active authority {active.id} expires at {active.not_after}"
        else:
            reason = (
                f"the active authority {active.id} is past {policy.activate_at:.0%} of its "
                f"lifetime and {prepared.id} has been published for {policy.propagation}"
            )
        actions.append(Action(ActionKind.ACTIVATE, family, prepared.id, reason))
    return actions


def plan(
    x509: Sequence[Authority],
    jwt: Sequence[Authority],
    now: datetime,
    policy: SchedulePolicy,
) -> list[Action]:
    """Every action due at ``now``: prunes, then prepares and activations, per family."""
    return plan_family("x509", x509, now, policy) + plan_family("jwt", jwt, now, policy)


def next_change(
    families: Iterable[tuple[str, Sequence[Authority]]], policy: SchedulePolicy
) -> tuple[datetime, str] | None:
    """When the schedule next acts, and what it will do (None: nothing is ever due)."""
    candidates: list[tuple[datetime, str]] = []
    for family, authorities in families:
        active = _find(authorities, AuthorityState.ACTIVE)
        prepared = _find(authorities, AuthorityState.PREPARED)
        for authority in authorities:
            if authority.state is AuthorityState.RETIRED:
                candidates.append((authority.not_after, f"prune {family} {authority.id}"))
        if active is None:
            continue
        if prepared is None:
            candidates.append((prepare_time(active, policy), f"prepare the next {family} CA"))
        else:
            candidates.append(
                (activation_time(active, prepared, policy), f"activate {family} {prepared.id}")
            )
    return min(candidates, default=None)


def propagated(prepared: Authority, now: datetime, policy: SchedulePolicy) -> bool:
    """True when ``prepared`` has been in the bundle for the propagation delay."""
    return now >= published_at(prepared) + policy.propagation


__all__ = [
    "DEFAULT_ACTIVATE_AT",
    "DEFAULT_PREPARE_AT",
    "DEFAULT_PROPAGATION",
    "Action",
    "ActionKind",
    "Authority",
    "SchedulePolicy",
    "activation_time",
    "next_change",
    "plan",
    "plan_family",
    "prepare_time",
    "propagated",
    "published_at",
]
