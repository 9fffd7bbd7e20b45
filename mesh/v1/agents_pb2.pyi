import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mesh.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResolveDIDRequest(_message.Message):
    __slots__ = ("did",)
    DID_FIELD_NUMBER: _ClassVar[int]
    did: str
    def __init__(self, did: _Optional[str] = ...) -> None: ...

class ResolveDIDResponse(_message.Message):
    __slots__ = ("agent", "keys", "key_history", "resolved_at")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    KEY_HISTORY_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    agent: _types_pb2.Agent
    keys: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyInfo]
    key_history: str
    resolved_at: _timestamp_pb2.Timestamp
    def __init__(self, agent: _Optional[_Union[_types_pb2.Agent, _Mapping]] = ..., keys: _Optional[_Iterable[_Union[_types_pb2.KeyInfo, _Mapping]]] = ..., key_history: _Optional[str] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("did",)
    DID_FIELD_NUMBER: _ClassVar[int]
    did: str
    def __init__(self, did: _Optional[str] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "status")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    status: _types_pb2.AgentStatus
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[_Union[_types_pb2.AgentStatus, str]] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents", "next_page_token")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[_types_pb2.Agent]
    next_page_token: str
    def __init__(self, agents: _Optional[_Iterable[_Union[_types_pb2.Agent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RevokeAgentRequest(_message.Message):
    __slots__ = ("did", "reason")
    DID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    did: str
    reason: str
    def __init__(self, did: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TerminateAgentRequest(_message.Message):
    __slots__ = ("did", "reason")
    DID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    did: str
    reason: str
    def __init__(self, did: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
