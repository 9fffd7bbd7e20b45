import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mesh.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_AGENT_REGISTERED: _ClassVar[EventType]
    EVENT_TYPE_KEY_ROTATED: _ClassVar[EventType]
    EVENT_TYPE_AGENT_REVOKED: _ClassVar[EventType]
    EVENT_TYPE_AGENT_TERMINATED: _ClassVar[EventType]
    EVENT_TYPE_SCORE_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_TIER_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_RING_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_BUNDLE_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_KEY_COMPROMISED: _ClassVar[EventType]
    EVENT_TYPE_ROTATION_REQUESTED: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_AGENT_REGISTERED: EventType
EVENT_TYPE_KEY_ROTATED: EventType
EVENT_TYPE_AGENT_REVOKED: EventType
EVENT_TYPE_AGENT_TERMINATED: EventType
EVENT_TYPE_SCORE_CHANGED: EventType
EVENT_TYPE_TIER_CHANGED: EventType
EVENT_TYPE_RING_CHANGED: EventType
EVENT_TYPE_BUNDLE_CHANGED: EventType
EVENT_TYPE_KEY_COMPROMISED: EventType
EVENT_TYPE_ROTATION_REQUESTED: EventType

class AgentState(_message.Message):
    __slots__ = ("did", "status", "effective_ring", "granted_ring", "score", "has_score", "tier", "current_kid")
    DID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_RING_FIELD_NUMBER: _ClassVar[int]
    GRANTED_RING_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    HAS_SCORE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    CURRENT_KID_FIELD_NUMBER: _ClassVar[int]
    did: str
    status: _types_pb2.AgentStatus
    effective_ring: int
    granted_ring: int
    score: int
    has_score: bool
    tier: str
    current_kid: str
    def __init__(self, did: _Optional[str] = ..., status: _Optional[_Union[_types_pb2.AgentStatus, str]] = ..., effective_ring: _Optional[int] = ..., granted_ring: _Optional[int] = ..., score: _Optional[int] = ..., has_score: _Optional[bool] = ..., tier: _Optional[str] = ..., current_kid: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("sequence", "type", "agent_did", "at", "state", "details_json")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AGENT_DID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    type: EventType
    agent_did: str
    at: _timestamp_pb2.Timestamp
    state: AgentState
    details_json: str
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., agent_did: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[AgentState, _Mapping]] = ..., details_json: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("from_sequence", "agent_dids", "types", "batch_snapshot")
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AGENT_DIDS_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    from_sequence: int
    agent_dids: _containers.RepeatedScalarFieldContainer[str]
    types: _containers.RepeatedScalarFieldContainer[EventType]
    batch_snapshot: bool
    def __init__(self, from_sequence: _Optional[int] = ..., agent_dids: _Optional[_Iterable[str]] = ..., types: _Optional[_Iterable[_Union[EventType, str]]] = ..., batch_snapshot: _Optional[bool] = ...) -> None: ...

class SnapshotBatch(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[AgentState]
    def __init__(self, states: _Optional[_Iterable[_Union[AgentState, _Mapping]]] = ...) -> None: ...

class SnapshotDone(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("snapshot", "snapshot_done", "event", "snapshot_batch")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_DONE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_BATCH_FIELD_NUMBER: _ClassVar[int]
    snapshot: AgentState
    snapshot_done: SnapshotDone
    event: Event
    snapshot_batch: SnapshotBatch
    def __init__(self, snapshot: _Optional[_Union[AgentState, _Mapping]] = ..., snapshot_done: _Optional[_Union[SnapshotDone, _Mapping]] = ..., event: _Optional[_Union[Event, _Mapping]] = ..., snapshot_batch: _Optional[_Union[SnapshotBatch, _Mapping]] = ...) -> None: ...
