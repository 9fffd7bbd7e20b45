"""TrustService against the real server: reporters, idempotency, ranges, authorisation,
recompute, reports, ring grants; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fixtures_registry import RunningRegistry
from google.protobuf.timestamp_pb2 import Timestamp

from mesh.v1 import agents_pb2, events_pb2, trust_pb2, trust_pb2_grpc, types_pb2
from registry.principals import issue_principal


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def principal(registry: RunningRegistry, kind: str, name: str) -> grpc.Channel:
    cred = issue_principal(registry.ca, registry.store, kind, name)
    return registry.channel(cred.issued.private_key_pem(), cred.issued.chain_pem())


def trust(ch: grpc.Channel) -> trust_pb2_grpc.TrustServiceStub:
    return trust_pb2_grpc.TrustServiceStub(ch)


_counter = iter(range(10**6))


@pytest.fixture(scope="module")
def reporter(any_registry: RunningRegistry) -> grpc.Channel:
    return principal(any_registry, "reporter", f"sre-{next(_counter)}")


def low_report(did: str, report_id: str) -> trust_pb2.ReportSignalsRequest:
    now = datetime.now(UTC)
    return trust_pb2.ReportSignalsRequest(
        report_id=report_id,
        agent_did=did,
        success_rate=trust_pb2.FractionSignal(value=0.1, observed_at=ts(now)),
        error_budget_remaining=trust_pb2.FractionSignal(value=0.0, observed_at=ts(now)),
        violations=[
            trust_pb2.ViolationSignal(
                severity=trust_pb2.SEVERITY_CRITICAL, occurred_at=ts(now), reason="exfiltration"
            )
        ],
    )


def test_report_recompute_demotes_and_reports(
    any_registry: RunningRegistry, reporter: grpc.Channel
) -> None:
    registry = any_registry
    agent = registry.register("trust/demoted")
    ops = trust(registry.operator())
    first = ops.Recompute(trust_pb2.RecomputeRequest(dids=[agent.did]))
    assert first.examined == 1
    before = ops.GetTrustReport(trust_pb2.GetTrustReportRequest(did=agent.did))
    assert before.has_score and before.tier == "medium" and before.effective_ring == 2

    answer = trust(reporter).ReportSignals(low_report(agent.did, "r-1"))
    assert not answer.duplicate
    result = ops.Recompute(trust_pb2.RecomputeRequest(dids=[agent.did]))
    assert result.examined == 1 and result.changed == 1 and result.events == 3

    report = ops.GetTrustReport(trust_pb2.GetTrustReportRequest(did=agent.did))
    assert report.score < 400 and report.tier in ("low", "untrusted")
    assert report.effective_ring == 3 and report.granted_ring == 2
    assert "demoted user -> sandbox" in report.ring_reason
    names = [f.name for f in report.factors]
    assert names == [
        "success_rate",
        "error_budget_remaining",
        "violation_recency",
        "credential_age",
        "audit_log_completeness",
    ]
    success = report.factors[0]
    assert success.value < 0.01 and json.loads(success.inputs_json)["reported"] == 0.1
    assert success.why
    assert abs(sum(f.points for f in report.factors) - report.score) <= 0.5
    assert [h.score for h in report.history] == [report.score, before.score]

    # The agent may read its own report, not another's.
    own = trust(agent.channel()).GetTrustReport(trust_pb2.GetTrustReportRequest(did=agent.did))
    assert own.score == report.score
    other = registry.register("trust/other")
    with pytest.raises(grpc.RpcError) as err:
        trust(other.channel()).GetTrustReport(trust_pb2.GetTrustReportRequest(did=agent.did))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # The events carry the state after the change, in order.
    with registry.store.read() as view:
        events = [e for e in view.events.since(0, limit=10_000) if e.agent_did == agent.did]
    kinds = [e.type for e in events]
    assert kinds[0] == "agent.registered"
    assert kinds[-3:] == ["trust.score_changed", "trust.tier_changed", "trust.ring_changed"]
    assert events[0].payload["state"]["effective_ring"] == 2
    assert events[-1].payload["state"]["effective_ring"] == 3
    assert events[-1].payload["old"] == 2 and events[-1].payload["new"] == 3

    # Nothing changed: a second recompute writes no event.
    again = ops.Recompute(trust_pb2.RecomputeRequest(dids=[agent.did]))
    assert again.events == 0 and again.changed == 0


def test_reports_are_idempotent_by_reporter_and_id(
    any_registry: RunningRegistry, reporter: grpc.Channel
) -> None:
    agent = any_registry.register("trust/idem")
    request = low_report(agent.did, "same-id")
    assert not trust(reporter).ReportSignals(request).duplicate
    assert trust(reporter).ReportSignals(request).duplicate
    changed = low_report(agent.did, "same-id")
    changed.success_rate.value = 0.9
    with pytest.raises(grpc.RpcError) as err:
        trust(reporter).ReportSignals(changed)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # Another reporter may use the same id.
    second = principal(any_registry, "reporter", f"other-{next(_counter)}")
    assert not trust(second).ReportSignals(changed).duplicate


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r.success_rate, "value", 1.5), "success_rate.value"),
        (lambda r: setattr(r.success_rate, "value", -0.1), "success_rate.value"),
        (lambda r: setattr(r.success_rate, "value", float("nan")), "success_rate.value"),
        (lambda r: r.error_budget_remaining.ClearField("observed_at"), "observed_at"),
        (
            lambda r: r.success_rate.observed_at.CopyFrom(
                ts(datetime.now(UTC) + timedelta(hours=1))
            ),
            "in the future",
        ),
        (
            lambda r: r.success_rate.observed_at.CopyFrom(
                ts(datetime.now(UTC) - timedelta(days=40))
            ),
            "older than",
        ),
        (lambda r: setattr(r, "report_id", ""), "report_id"),
        (lambda r: setattr(r, "report_id", "x" * 129), "report_id"),
        (lambda r: setattr(r, "report_id", "bad id"), "report_id"),
        (lambda r: setattr(r, "agent_did", "did:web:example"), "agent_did"),
        (lambda r: setattr(r.violations[0], "severity", 0), "severity"),
        (lambda r: setattr(r.violations[0], "severity", 42), "severity"),
        (lambda r: setattr(r.violations[0], "reason", ""), "reason"),
        (lambda r: setattr(r.violations[0], "reason", "x" * 2000), "reason"),
        (lambda r: setattr(r.violations[0], "reason", "a\x00b"), "reason"),
        (
            lambda r: r.violations.extend([r.violations[0]] * 100),
            "violations",
        ),
        (
            lambda r: [r.ClearField(f) for f in (
                "success_rate", "error_budget_remaining", "violations")],
            "no signal",
        ),
    ],
)
def test_out_of_range_values_are_named(
    any_registry: RunningRegistry, reporter: grpc.Channel, mutate: object, field: str
) -> None:
    from mesh.keys import IdentityKey

    agent_did = str(IdentityKey.generate().did())
    request = low_report(agent_did, f"bad-{next(_counter)}")
    mutate(request)  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as err:
        trust(reporter).ReportSignals(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or "")


def test_unknown_agent_is_not_found(any_registry: RunningRegistry, reporter: grpc.Channel) -> None:
    from mesh.keys import IdentityKey

    did = str(IdentityKey.generate().did())
    with pytest.raises(grpc.RpcError) as err:
        trust(reporter).ReportSignals(low_report(did, "nobody"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_agents_never_report_least_of_all_on_themselves(any_registry: RunningRegistry) -> None:
    agent = any_registry.register("trust/self-reporter")
    other = any_registry.register("trust/victim")
    for target in (agent.did, other.did):
        with pytest.raises(grpc.RpcError) as err:
            trust(agent.channel()).ReportSignals(low_report(target, "self"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Nor can operators or enforcers pose as reporters.
    for ch in (any_registry.operator(), principal(any_registry, "enforcer", f"e{next(_counter)}")):
        with pytest.raises(grpc.RpcError) as err:
            trust(ch).ReportSignals(low_report(agent.did, "x"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Anonymous: no certificate at all.
    with pytest.raises(grpc.RpcError) as err:
        trust(any_registry.anonymous()).ReportSignals(low_report(agent.did, "x"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_revoked_reporter_is_refused(any_registry: RunningRegistry) -> None:
    name = f"gone-{next(_counter)}"
    ch = principal(any_registry, "reporter", name)
    agent = any_registry.register("trust/r")
    trust(ch).ReportSignals(low_report(agent.did, "ok"))
    with any_registry.store.transaction() as tx:
        record = tx.principals.get_by_name("reporter", name)
        tx.principals.revoke(record.id)
    with pytest.raises(grpc.RpcError) as err:
        trust(ch).ReportSignals(low_report(agent.did, "after"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_operator_only_calls(any_registry: RunningRegistry) -> None:
    agent = any_registry.register("trust/ops")
    for request, call in (
        (trust_pb2.RecomputeRequest(), "Recompute"),
        (trust_pb2.GrantRingRequest(did=agent.did, ring=1), "GrantRing"),
    ):
        for ch in (agent.channel(), principal(any_registry, "enforcer", f"e{next(_counter)}")):
            with pytest.raises(grpc.RpcError) as err:
                getattr(trust(ch), call)(request)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_grant_ring_demotes_at_once_and_is_bounded(any_registry: RunningRegistry) -> None:
    agent = any_registry.register("trust/granted")
    ops = trust(any_registry.operator())
    ops.Recompute(trust_pb2.RecomputeRequest(dids=[agent.did]))
    state = ops.GrantRing(trust_pb2.GrantRingRequest(did=agent.did, ring=3, reason="probation"))
    assert state.state.granted_ring == 3 and state.state.effective_ring == 3
    with any_registry.store.read() as view:
        last = [e for e in view.events.since(0, limit=10_000) if e.agent_did == agent.did][-1]
    assert last.type == "trust.ring_changed" and last.payload["new"] == 3
    with pytest.raises(grpc.RpcError) as err:
        ops.GrantRing(trust_pb2.GrantRingRequest(did=agent.did, ring=4))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    from mesh.keys import IdentityKey

    with pytest.raises(grpc.RpcError) as err:
        ops.GrantRing(
            trust_pb2.GrantRingRequest(did=str(IdentityKey.generate().did()), ring=1)
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_terminate_pins_score_to_zero(any_registry: RunningRegistry) -> None:
    agent = any_registry.register("trust/killed")
    ops = trust(any_registry.operator())
    ops.Recompute(trust_pb2.RecomputeRequest(dids=[agent.did]))
    any_registry.agents(any_registry.operator()).TerminateAgent(
        agents_pb2.TerminateAgentRequest(did=agent.did, reason="kill switch")
    )
    with any_registry.store.read() as view:
        last = [e for e in view.events.since(0, limit=10_000) if e.agent_did == agent.did][-1]
    assert last.type == "agent.terminated"
    assert last.payload["state"]["status"] == "terminated"
    assert last.payload["state"]["effective_ring"] == 3
    ops.Recompute(trust_pb2.RecomputeRequest(dids=[agent.did]))
    report = ops.GetTrustReport(trust_pb2.GetTrustReportRequest(did=agent.did))
    assert report.score == 0 and report.effective_ring == 3
    assert report.status == types_pb2.AGENT_STATUS_TERMINATED
    assert events_pb2.EVENT_TYPE_AGENT_TERMINATED  # the wire enum exists for it
