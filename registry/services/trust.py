"""TrustService: ReportSignals, GetTrustReport, Recompute, GrantRing.

ReportSignals stores the report and marks the agent dirty; the scheduler (or a
manual Recompute) turns it into a score. Reports are idempotent by (reporter,
report_id): the SHA-256 of the deterministic request bytes tells a retry from
a reused id. Every value is range-checked and named in the error.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from mesh.v1 import events_pb2, trust_pb2, trust_pb2_grpc
from registry.events import types as event_types
from registry.events.state import to_wire
from registry.interceptor import current_principal
from registry.scoring import Recomputer, current_state
from registry.services import _validate as check
from registry.services._runtime import STATUS_TO_PB, Runtime, timestamp
from registry.status import already_exists, invalid, not_found, precondition
from trust.factors import describe

REPORT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_VIOLATIONS = 100
MAX_VIOLATION_REASON_BYTES = 1024
#: How far in the future a reporter's clock may be.
MAX_CLOCK_SKEW = timedelta(minutes=5)
#: Older observations are refused: they would only fade to the prior anyway.
MAX_SIGNAL_AGE = timedelta(days=30)
MAX_RECOMPUTE_DIDS = 1000
DEFAULT_HISTORY = 20
MAX_HISTORY = 1000
#: How long a manual Recompute waits for a scheduled run in progress.
RECOMPUTE_WAIT_SECONDS = 60.0

_SEVERITIES = {
    trust_pb2.SEVERITY_LOW: "low",
    trust_pb2.SEVERITY_MEDIUM: "medium",
    trust_pb2.SEVERITY_HIGH: "high",
    trust_pb2.SEVERITY_CRITICAL: "critical",
}


def _when(field: str, ts: Timestamp, now: datetime) -> datetime:
    if ts.seconds == 0 and ts.nanos == 0:
        raise invalid(field, "is required (when the value was observed)")
    if not (0 <= ts.nanos < 1_000_000_000) or not (0 < ts.seconds < 253402300800):
        raise invalid(field, "is not a valid timestamp")
    at = ts.ToDatetime(UTC)
    if at > now + MAX_CLOCK_SKEW:
        raise invalid(
            field,
            f"is {at.isoformat()}, in the future (registry time {now.isoformat()}); "
            "check the reporter's clock",
        )
    if at < now - MAX_SIGNAL_AGE:
        raise invalid(field, f"is older than {MAX_SIGNAL_AGE.days} days; report recent values")
    return at


def _fraction(
    field: str, signal: trust_pb2.FractionSignal, now: datetime
) -> tuple[float, datetime]:
    value = signal.value
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise invalid(f"{field}.value", f"must be a fraction in [0, 1], got {value!r}")
    return value, _when(f"{field}.observed_at", signal.observed_at, now)


class TrustService(trust_pb2_grpc.TrustServiceServicer):
    def __init__(self, runtime: Runtime, recomputer: Recomputer) -> None:
        self._rt = runtime
        self._recomputer = recomputer

    # -- ReportSignals --------------------------------------------------------------

    async def ReportSignals(
        self, request: trust_pb2.ReportSignalsRequest, context: Any
    ) -> trust_pb2.ReportSignalsResponse:
        from registry.store.repos.trust import SignalRow

        principal = current_principal()
        if not REPORT_ID.match(request.report_id):
            raise invalid("report_id", "must be 1-128 characters of letters, digits and ._:-")
        did = str(check.did("agent_did", request.agent_did))
        if principal.did and principal.did == did:
            raise invalid("agent_did", "an agent can never report on itself")
        now = datetime.now(UTC)
        signals: list[SignalRow] = []
        for name in ("success_rate", "error_budget_remaining", "audit_log_completeness"):
            if request.HasField(name):
                value, at = _fraction(name, getattr(request, name), now)
                signals.append(SignalRow(name, at, value=value))
        if len(request.violations) > MAX_VIOLATIONS:
            raise invalid("violations", f"at most {MAX_VIOLATIONS} per report")
        for i, v in enumerate(request.violations):
            field = f"violations[{i}]"
            severity = _SEVERITIES.get(v.severity)
            if severity is None:
                raise invalid(f"{field}.severity", "must be LOW, MEDIUM, HIGH or CRITICAL")
            reason = check.printable(
                f"{field}.reason", v.reason, MAX_VIOLATION_REASON_BYTES, required=True
            )
            at = _when(f"{field}.occurred_at", v.occurred_at, now)
            signals.append(SignalRow("violation", at, severity=severity, reason=reason))
        if not signals:
            raise invalid(
                "report",
                "carries no signal; set success_rate, error_budget_remaining, "
                "audit_log_completeness or violations",
            )
        digest = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
        reporter = principal.spiffe_id
        duplicate, accepted = await self._rt.run(
            self._record, reporter, request.report_id, did, digest, signals
        )
        return trust_pb2.ReportSignalsResponse(duplicate=duplicate, accepted_at=timestamp(accepted))

    def _record(
        self, reporter: str, report_id: str, did: str, digest: str, signals: list[Any]
    ) -> tuple[bool, datetime]:
        with self._rt.store.transaction() as tx:
            known = tx.trust.report_digest(reporter, report_id)
            if known is not None:
                if known != digest:
                    raise already_exists(
                        f"report_id {report_id!r} was already used by this reporter for other "
                        "signals; use a new report_id for a new report"
                    )
                return True, tx.now
            agent = tx.agents.find(did)
            if agent is None:
                raise not_found(f"agent_did: {did} is not registered here")
            if agent.status != "active":
                raise precondition(
                    f"agent {did} is {agent.status}: its score is pinned to 0, reports change "
                    "nothing"
                )
            tx.trust.record_report(
                reporter=reporter, report_id=report_id, agent_did=did, digest=digest,
                signals=signals,
            )
            return False, tx.now

    # -- GetTrustReport -------------------------------------------------------------

    async def GetTrustReport(
        self, request: trust_pb2.GetTrustReportRequest, context: Any
    ) -> trust_pb2.TrustReport:
        did = str(check.did("did", request.did))
        limit = request.history_limit or DEFAULT_HISTORY
        if limit > MAX_HISTORY:
            raise invalid("history_limit", f"at most {MAX_HISTORY}")
        return await self._rt.run(self._report, did, limit)

    def _report(self, did: str, limit: int) -> trust_pb2.TrustReport:
        with self._rt.store.read() as view:
            agent = view.agents.find(did)
            if agent is None:
                raise not_found(f"did: {did} is not registered here")
            state = current_state(view, did)
            trust = view.trust.state(did)
            history = view.trust.history(did, limit=limit)
        report = trust_pb2.TrustReport(
            did=did,
            status=STATUS_TO_PB.get(agent.status, 0),
            has_score=state["score"] is not None,
            score=state["score"] or 0,
            tier=state["tier"],
            effective_ring=state["effective_ring"],
            granted_ring=agent.granted_ring,
        )
        if trust is not None:
            report.ring_reason = trust.ring_reason or ""
            for f in trust.breakdown or []:
                inputs = f.get("inputs") or {}
                report.factors.append(
                    trust_pb2.FactorBreakdown(
                        name=f["name"],
                        value=f["value"],
                        weight=f["weight"],
                        points=f["points"],
                        why=_why(f["name"], inputs),
                        inputs_json=json.dumps(inputs, sort_keys=True),
                    )
                )
            if trust.computed_at is not None:
                report.computed_at.CopyFrom(timestamp(trust.computed_at))
            if trust.next_due_at is not None:
                report.next_due_at.CopyFrom(timestamp(trust.next_due_at))
            if trust.candidate_ring is not None and trust.candidate_since is not None:
                report.promotion_pending = True
                report.pending_ring = trust.candidate_ring
                report.pending_since.CopyFrom(timestamp(trust.candidate_since))
        for h in history:
            report.history.append(
                trust_pb2.ScorePoint(
                    at=timestamp(h.computed_at),
                    score=h.score,
                    tier=h.tier,
                    effective_ring=h.effective_ring,
                )
            )
        return report

    # -- Recompute ------------------------------------------------------------------

    async def Recompute(
        self, request: trust_pb2.RecomputeRequest, context: Any
    ) -> trust_pb2.RecomputeResponse:
        if len(request.dids) > MAX_RECOMPUTE_DIDS:
            raise invalid("dids", f"at most {MAX_RECOMPUTE_DIDS}; use all=true for everyone")
        dids = [str(check.did(f"dids[{i}]", d)) for i, d in enumerate(request.dids)] or None
        if dids is not None and request.all:
            raise invalid("all", "give either dids or all=true, not both")
        result = await self._rt.run(
            self._recomputer.run,
            dids=dids,
            everything=request.all,
            wait=RECOMPUTE_WAIT_SECONDS,
        )
        if result.skipped:
            raise precondition(
                "another recompute has been running for over a minute; try again shortly"
            )
        return trust_pb2.RecomputeResponse(
            examined=result.examined,
            changed=result.changed,
            events=result.events,
            last_sequence=result.last_sequence,
        )

    # -- GrantRing ------------------------------------------------------------------

    async def GrantRing(
        self, request: trust_pb2.GrantRingRequest, context: Any
    ) -> trust_pb2.GrantRingResponse:
        did = str(check.did("did", request.did))
        if request.ring > 3:
            raise invalid("ring", f"must be 0 (kernel) .. 3 (sandbox), got {request.ring}")
        reason = check.printable("reason", request.reason, check.MAX_REASON_BYTES)
        actor = current_principal().actor
        state = await self._rt.run(self._grant, did, int(request.ring), reason, actor)
        return trust_pb2.GrantRingResponse(state=state)

    def _grant(self, did: str, ring: int, reason: str, actor: str) -> events_pb2.AgentState:
        with self._rt.store.transaction() as tx:
            agent = tx.agents.find(did)
            if agent is None:
                raise not_found(f"did: {did} is not registered here")
            if agent.status != "active":
                raise precondition(f"agent {did} is {agent.status}; it stays in the sandbox")
            old = agent.granted_ring
            if old != ring:
                tx.agents.set_granted_ring(did, ring)
                tx.audit.append(
                    actor, "ring.grant", did, {"old": old, "new": ring, "reason": reason}
                )
                trust = tx.trust.state(did)
                if trust is None or trust.score is None:
                    # Not scored yet: the grant alone is the ring subscribers know.
                    state = current_state(tx, did)
                    if state["effective_ring"] != old:
                        tx.events.append(
                            event_types.RING_CHANGED,
                            did,
                            {"old": old, "new": ring, "reason": reason, "state": dict(state)},
                        )
        # Apply the grant through the ring rules now (demotion at once, promotion
        # with hysteresis); that run writes the ring event if the ring moved.
        self._recomputer.run(dids=[did], wait=RECOMPUTE_WAIT_SECONDS)
        with self._rt.store.read() as view:
            return to_wire(did, dict(current_state(view, did)))


def _why(name: str, inputs: dict[str, Any]) -> str:
    pairs = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in inputs.items())
    try:
        return describe(name, pairs)
    except Exception:  # an older breakdown the current wording cannot render
        return ""
