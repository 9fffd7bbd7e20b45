"""Trust calls: report signals (reporters), trust reports, recompute and ring grants
(operators), and a resuming event stream (operators, enforcers, an agent for itself).

Reporter and enforcer credentials are directories written by
``mesh principal create --kind reporter|enforcer --out DIR``:
``DIR/<kind>.pem``, ``DIR/<kind>.key`` and ``DIR/bundle.pem``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped]

from mesh.client.channel import (
    DEFAULT_REGISTRY,
    DEFAULT_TIMEOUT,
    RegistryChannel,
    RetryPolicy,
    TLSConfig,
    mtls_addresses,
    parse_addresses,
)
from mesh.client.errors import CredentialError, from_rpc_error
from mesh.errors import MeshError
from mesh.v1 import events_pb2, events_pb2_grpc, trust_pb2, trust_pb2_grpc, types_pb2

SEVERITIES = ("low", "medium", "high", "critical")
_SEVERITY_PB = {
    "low": trust_pb2.SEVERITY_LOW,
    "medium": trust_pb2.SEVERITY_MEDIUM,
    "high": trust_pb2.SEVERITY_HIGH,
    "critical": trust_pb2.SEVERITY_CRITICAL,
}
_STATUS = {
    types_pb2.AGENT_STATUS_ACTIVE: "active",
    types_pb2.AGENT_STATUS_REVOKED: "revoked",
    types_pb2.AGENT_STATUS_TERMINATED: "terminated",
}


def credential_tls(directory: str | os.PathLike[str], kind: str) -> TLSConfig:
    """The TLS configuration of a reporter or enforcer credential directory."""
    root = Path(directory)
    cert, key, bundle = root / f"{kind}.pem", root / f"{kind}.key", root / "bundle.pem"
    if not cert.exists() or not key.exists():
        raise CredentialError(
            f"no {kind} credential in {root} ({cert.name}, {key.name})",
            hint=f"an operator creates one: `mesh principal create --kind {kind} --name NAME "
            f"--out {root}`",
        )
    return TLSConfig.from_files(bundle, cert, key)


def _ts(at: datetime) -> Timestamp:
    if at.tzinfo is None:
        raise MeshError("signal times must be timezone-aware", hint="e.g. datetime.now(UTC)")
    out = Timestamp()
    out.FromDatetime(at.astimezone(UTC))
    return out


def _dt(ts: Timestamp) -> datetime | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    at: datetime = ts.ToDatetime(UTC)
    return at


@dataclass(frozen=True)
class ViolationReport:
    severity: str
    reason: str
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class Factor:
    name: str
    value: float
    weight: float
    points: float
    why: str
    inputs: dict[str, Any]


@dataclass(frozen=True)
class ScorePoint:
    at: datetime | None
    score: int
    tier: str
    effective_ring: int


@dataclass(frozen=True)
class TrustReport:
    did: str
    status: str
    score: int | None
    tier: str
    effective_ring: int
    granted_ring: int
    ring_reason: str
    computed_at: datetime | None
    next_due_at: datetime | None
    pending_ring: int | None
    pending_since: datetime | None
    factors: list[Factor] = field(default_factory=list)
    history: list[ScorePoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, list):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return {k: plain(v) for k, v in asdict(self).items()}

    @classmethod
    def from_pb(cls, pb: trust_pb2.TrustReport) -> TrustReport:
        return cls(
            did=pb.did,
            status=_STATUS.get(pb.status, "unspecified"),
            score=pb.score if pb.has_score else None,
            tier=pb.tier,
            effective_ring=pb.effective_ring,
            granted_ring=pb.granted_ring,
            ring_reason=pb.ring_reason,
            computed_at=_dt(pb.computed_at),
            next_due_at=_dt(pb.next_due_at),
            pending_ring=pb.pending_ring if pb.promotion_pending else None,
            pending_since=_dt(pb.pending_since) if pb.promotion_pending else None,
            factors=[
                Factor(
                    f.name, f.value, f.weight, f.points, f.why, json.loads(f.inputs_json or "{}")
                )
                for f in pb.factors
            ],
            history=[
                ScorePoint(_dt(h.at), h.score, h.tier, h.effective_ring) for h in pb.history
            ],
        )


class TrustClient:
    """TrustService calls over mTLS with whichever credential ``tls`` holds."""

    def __init__(
        self,
        registry: str | Sequence[str] = DEFAULT_REGISTRY,
        *,
        tls: TLSConfig,
        mtls_registry: str | Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.addresses = (
            parse_addresses(mtls_registry) if mtls_registry else mtls_addresses(registry)
        )
        self.tls = tls
        self.timeout = timeout
        self._channel = RegistryChannel(
            self.addresses, tls, timeout=timeout, retry=retry or RetryPolicy()
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> TrustClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any) -> Any:
        timeout = self.timeout

        def op(ch: grpc.Channel) -> Any:
            return getattr(trust_pb2_grpc.TrustServiceStub(ch), method)(request, timeout=timeout)

        return self._channel.call(op)

    def report_signals(
        self,
        agent_did: str,
        *,
        report_id: str,
        success_rate: float | None = None,
        error_budget_remaining: float | None = None,
        audit_log_completeness: float | None = None,
        violations: Sequence[ViolationReport] = (),
        observed_at: datetime | None = None,
    ) -> bool:
        """Report signals on ``agent_did``; True when the registry already had this report."""
        at = observed_at or datetime.now(UTC)
        request = trust_pb2.ReportSignalsRequest(report_id=report_id, agent_did=agent_did)
        for name, value in (
            ("success_rate", success_rate),
            ("error_budget_remaining", error_budget_remaining),
            ("audit_log_completeness", audit_log_completeness),
        ):
            if value is not None:
                getattr(request, name).CopyFrom(
                    trust_pb2.FractionSignal(value=value, observed_at=_ts(at))
                )
        for v in violations:
            if v.severity not in _SEVERITY_PB:
                raise MeshError(
                    f"unknown severity {v.severity!r}", hint="use " + ", ".join(SEVERITIES)
                )
            request.violations.append(
                trust_pb2.ViolationSignal(
                    severity=_SEVERITY_PB[v.severity],
                    occurred_at=_ts(v.occurred_at or at),
                    reason=v.reason,
                )
            )
        return bool(self._call("ReportSignals", request).duplicate)

    def trust_report(self, did: str, *, history: int = 20) -> TrustReport:
        pb = self._call(
            "GetTrustReport", trust_pb2.GetTrustReportRequest(did=did, history_limit=history)
        )
        return TrustReport.from_pb(pb)

    def recompute(self, dids: Sequence[str] = (), *, everything: bool = False) -> dict[str, int]:
        r = self._call("Recompute", trust_pb2.RecomputeRequest(dids=list(dids), all=everything))
        return {
            "examined": r.examined,
            "changed": r.changed,
            "events": r.events,
            "last_sequence": r.last_sequence,
        }

    def grant_ring(self, did: str, ring: int, reason: str = "") -> events_pb2.AgentState:
        r = self._call("GrantRing", trust_pb2.GrantRingRequest(did=did, ring=ring, reason=reason))
        return r.state  # type: ignore[no-any-return]

    def watch(
        self,
        from_sequence: int = 0,
        *,
        agent_dids: Sequence[str] = (),
        types: Sequence[int] = (),
    ) -> Iterator[events_pb2.WatchResponse]:
        """Every Watch item from ``from_sequence``, resuming after disconnects from the
        last event received (OUT_OF_RANGE -- pruned -- is raised: start again from 0)."""
        position = from_sequence
        attempt = 0
        while True:
            address = self.addresses[attempt % len(self.addresses)]
            channel = grpc.secure_channel(address, self.tls.credentials(), self.tls.options())
            try:
                stub = events_pb2_grpc.EventServiceStub(channel)
                stream = stub.Watch(
                    events_pb2.WatchRequest(
                        from_sequence=position,
                        agent_dids=list(agent_dids),
                        types=list(types),  # type: ignore[arg-type]
                    )
                )
                for item in stream:
                    attempt = 0
                    kind = item.WhichOneof("item")
                    if kind == "event":
                        position = item.event.sequence
                    elif kind == "snapshot_done":
                        position = item.snapshot_done.sequence
                    yield item
                return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt >= 10 * len(
                    self.addresses
                ):
                    raise from_rpc_error(exc, self.addresses) from None
                attempt += 1
                time.sleep(min(5.0, 0.1 * attempt))
            finally:
                channel.close()
