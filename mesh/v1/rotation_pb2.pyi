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

class RotationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROTATION_STATE_UNSPECIFIED: _ClassVar[RotationState]
    ROTATION_STATE_PENDING: _ClassVar[RotationState]
    ROTATION_STATE_ROTATED: _ClassVar[RotationState]
    ROTATION_STATE_FAILED: _ClassVar[RotationState]
ROTATION_STATE_UNSPECIFIED: RotationState
ROTATION_STATE_PENDING: RotationState
ROTATION_STATE_ROTATED: RotationState
ROTATION_STATE_FAILED: RotationState

class RotateKeyRequest(_message.Message):
    __slots__ = ("key_history",)
    KEY_HISTORY_FIELD_NUMBER: _ClassVar[int]
    key_history: str
    def __init__(self, key_history: _Optional[str] = ...) -> None: ...

class RotateKeyResponse(_message.Message):
    __slots__ = ("current_key", "rotated", "key_history")
    CURRENT_KEY_FIELD_NUMBER: _ClassVar[int]
    ROTATED_FIELD_NUMBER: _ClassVar[int]
    KEY_HISTORY_FIELD_NUMBER: _ClassVar[int]
    current_key: _types_pb2.KeyInfo
    rotated: bool
    key_history: str
    def __init__(self, current_key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ..., rotated: _Optional[bool] = ..., key_history: _Optional[str] = ...) -> None: ...

class MarkKeyCompromisedRequest(_message.Message):
    __slots__ = ("did", "kid", "compromised_at", "reason")
    DID_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    COMPROMISED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    did: str
    kid: str
    compromised_at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, did: _Optional[str] = ..., kid: _Optional[str] = ..., compromised_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class RequestRotationRequest(_message.Message):
    __slots__ = ("did", "reason")
    DID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    did: str
    reason: str
    def __init__(self, did: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RequestRotationAllRequest(_message.Message):
    __slots__ = ("older_than_seconds", "reason")
    OLDER_THAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    older_than_seconds: int
    reason: str
    def __init__(self, older_than_seconds: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class RotationCampaign(_message.Message):
    __slots__ = ("id", "requested", "requested_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    requested: int
    requested_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., requested: _Optional[int] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetRotationStatusRequest(_message.Message):
    __slots__ = ("campaign_id", "include_agents")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_AGENTS_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    include_agents: bool
    def __init__(self, campaign_id: _Optional[str] = ..., include_agents: _Optional[bool] = ...) -> None: ...

class AgentRotation(_message.Message):
    __slots__ = ("did", "state", "requested_kid", "current_kid", "detail")
    DID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_KID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_KID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    did: str
    state: RotationState
    requested_kid: str
    current_kid: str
    detail: str
    def __init__(self, did: _Optional[str] = ..., state: _Optional[_Union[RotationState, str]] = ..., requested_kid: _Optional[str] = ..., current_kid: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class RotationStatus(_message.Message):
    __slots__ = ("campaign_id", "requested", "rotated", "pending", "failed", "agents")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    ROTATED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    requested: int
    rotated: int
    pending: int
    failed: int
    agents: _containers.RepeatedCompositeFieldContainer[AgentRotation]
    def __init__(self, campaign_id: _Optional[str] = ..., requested: _Optional[int] = ..., rotated: _Optional[int] = ..., pending: _Optional[int] = ..., failed: _Optional[int] = ..., agents: _Optional[_Iterable[_Union[AgentRotation, _Mapping]]] = ...) -> None: ...

class RotateCARequest(_message.Message):
    __slots__ = ("activate", "force")
    ACTIVATE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    activate: bool
    force: bool
    def __init__(self, activate: _Optional[bool] = ..., force: _Optional[bool] = ...) -> None: ...

class GetCAStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Authority(_message.Message):
    __slots__ = ("kind", "id", "state", "not_before", "not_after")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    state: str
    not_before: _timestamp_pb2.Timestamp
    not_after: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., state: _Optional[str] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CAStatus(_message.Message):
    __slots__ = ("authorities", "sequence", "next_change_at", "next_change", "changes")
    AUTHORITIES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_CHANGE_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_CHANGE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    authorities: _containers.RepeatedCompositeFieldContainer[Authority]
    sequence: int
    next_change_at: _timestamp_pb2.Timestamp
    next_change: str
    changes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, authorities: _Optional[_Iterable[_Union[Authority, _Mapping]]] = ..., sequence: _Optional[int] = ..., next_change_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_change: _Optional[str] = ..., changes: _Optional[_Iterable[str]] = ...) -> None: ...
