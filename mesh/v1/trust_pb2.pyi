import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mesh.v1 import events_pb2 as _events_pb2
from mesh.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_LOW: _ClassVar[Severity]
    SEVERITY_MEDIUM: _ClassVar[Severity]
    SEVERITY_HIGH: _ClassVar[Severity]
    SEVERITY_CRITICAL: _ClassVar[Severity]
SEVERITY_UNSPECIFIED: Severity
SEVERITY_LOW: Severity
SEVERITY_MEDIUM: Severity
SEVERITY_HIGH: Severity
SEVERITY_CRITICAL: Severity

class FractionSignal(_message.Message):
    __slots__ = ("value", "observed_at")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    value: float
    observed_at: _timestamp_pb2.Timestamp
    def __init__(self, value: _Optional[float] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ViolationSignal(_message.Message):
    __slots__ = ("severity", "occurred_at", "reason")
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    severity: Severity
    occurred_at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, severity: _Optional[_Union[Severity, str]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ReportSignalsRequest(_message.Message):
    __slots__ = ("report_id", "agent_did", "success_rate", "error_budget_remaining", "audit_log_completeness", "violations")
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_DID_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_BUDGET_REMAINING_FIELD_NUMBER: _ClassVar[int]
    AUDIT_LOG_COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    agent_did: str
    success_rate: FractionSignal
    error_budget_remaining: FractionSignal
    audit_log_completeness: FractionSignal
    violations: _containers.RepeatedCompositeFieldContainer[ViolationSignal]
    def __init__(self, report_id: _Optional[str] = ..., agent_did: _Optional[str] = ..., success_rate: _Optional[_Union[FractionSignal, _Mapping]] = ..., error_budget_remaining: _Optional[_Union[FractionSignal, _Mapping]] = ..., audit_log_completeness: _Optional[_Union[FractionSignal, _Mapping]] = ..., violations: _Optional[_Iterable[_Union[ViolationSignal, _Mapping]]] = ...) -> None: ...

class ReportSignalsResponse(_message.Message):
    __slots__ = ("duplicate", "accepted_at")
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    accepted_at: _timestamp_pb2.Timestamp
    def __init__(self, duplicate: _Optional[bool] = ..., accepted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetTrustReportRequest(_message.Message):
    __slots__ = ("did", "history_limit")
    DID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    did: str
    history_limit: int
    def __init__(self, did: _Optional[str] = ..., history_limit: _Optional[int] = ...) -> None: ...

class FactorBreakdown(_message.Message):
    __slots__ = ("name", "value", "weight", "points", "why", "inputs_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    INPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    weight: float
    points: float
    why: str
    inputs_json: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., weight: _Optional[float] = ..., points: _Optional[float] = ..., why: _Optional[str] = ..., inputs_json: _Optional[str] = ...) -> None: ...

class ScorePoint(_message.Message):
    __slots__ = ("at", "score", "tier", "effective_ring")
    AT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_RING_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    score: int
    tier: str
    effective_ring: int
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., score: _Optional[int] = ..., tier: _Optional[str] = ..., effective_ring: _Optional[int] = ...) -> None: ...

class TrustReport(_message.Message):
    __slots__ = ("did", "status", "has_score", "score", "tier", "effective_ring", "granted_ring", "ring_reason", "factors", "computed_at", "next_due_at", "promotion_pending", "pending_ring", "pending_since", "history")
    DID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HAS_SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_RING_FIELD_NUMBER: _ClassVar[int]
    GRANTED_RING_FIELD_NUMBER: _ClassVar[int]
    RING_REASON_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_AT_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_PENDING_FIELD_NUMBER: _ClassVar[int]
    PENDING_RING_FIELD_NUMBER: _ClassVar[int]
    PENDING_SINCE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    did: str
    status: _types_pb2.AgentStatus
    has_score: bool
    score: int
    tier: str
    effective_ring: int
    granted_ring: int
    ring_reason: str
    factors: _containers.RepeatedCompositeFieldContainer[FactorBreakdown]
    computed_at: _timestamp_pb2.Timestamp
    next_due_at: _timestamp_pb2.Timestamp
    promotion_pending: bool
    pending_ring: int
    pending_since: _timestamp_pb2.Timestamp
    history: _containers.RepeatedCompositeFieldContainer[ScorePoint]
    def __init__(self, did: _Optional[str] = ..., status: _Optional[_Union[_types_pb2.AgentStatus, str]] = ..., has_score: _Optional[bool] = ..., score: _Optional[int] = ..., tier: _Optional[str] = ..., effective_ring: _Optional[int] = ..., granted_ring: _Optional[int] = ..., ring_reason: _Optional[str] = ..., factors: _Optional[_Iterable[_Union[FactorBreakdown, _Mapping]]] = ..., computed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., promotion_pending: _Optional[bool] = ..., pending_ring: _Optional[int] = ..., pending_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., history: _Optional[_Iterable[_Union[ScorePoint, _Mapping]]] = ...) -> None: ...

class RecomputeRequest(_message.Message):
    __slots__ = ("dids", "all")
    DIDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    dids: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    def __init__(self, dids: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ...) -> None: ...

class RecomputeResponse(_message.Message):
    __slots__ = ("examined", "changed", "events", "last_sequence")
    EXAMINED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    examined: int
    changed: int
    events: int
    last_sequence: int
    def __init__(self, examined: _Optional[int] = ..., changed: _Optional[int] = ..., events: _Optional[int] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class GrantRingRequest(_message.Message):
    __slots__ = ("did", "ring", "reason")
    DID_FIELD_NUMBER: _ClassVar[int]
    RING_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    did: str
    ring: int
    reason: str
    def __init__(self, did: _Optional[str] = ..., ring: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class GrantRingResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _events_pb2.AgentState
    def __init__(self, state: _Optional[_Union[_events_pb2.AgentState, _Mapping]] = ...) -> None: ...
