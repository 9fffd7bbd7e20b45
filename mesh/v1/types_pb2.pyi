import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_STATUS_UNSPECIFIED: _ClassVar[AgentStatus]
    AGENT_STATUS_ACTIVE: _ClassVar[AgentStatus]
    AGENT_STATUS_REVOKED: _ClassVar[AgentStatus]
    AGENT_STATUS_TERMINATED: _ClassVar[AgentStatus]
AGENT_STATUS_UNSPECIFIED: AgentStatus
AGENT_STATUS_ACTIVE: AgentStatus
AGENT_STATUS_REVOKED: AgentStatus
AGENT_STATUS_TERMINATED: AgentStatus

class KeyInfo(_message.Message):
    __slots__ = ("kid", "public_key", "index", "valid_from", "rotated_at", "compromised_at")
    KID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    ROTATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPROMISED_AT_FIELD_NUMBER: _ClassVar[int]
    kid: str
    public_key: bytes
    index: int
    valid_from: _timestamp_pb2.Timestamp
    rotated_at: _timestamp_pb2.Timestamp
    compromised_at: _timestamp_pb2.Timestamp
    def __init__(self, kid: _Optional[str] = ..., public_key: _Optional[bytes] = ..., index: _Optional[int] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rotated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., compromised_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("did", "name", "spiffe_id", "status", "granted_ring", "current_key", "metadata", "created_at", "updated_at", "revoked_at", "revoke_reason")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GRANTED_RING_FIELD_NUMBER: _ClassVar[int]
    CURRENT_KEY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKE_REASON_FIELD_NUMBER: _ClassVar[int]
    did: str
    name: str
    spiffe_id: str
    status: AgentStatus
    granted_ring: int
    current_key: KeyInfo
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    revoke_reason: str
    def __init__(self, did: _Optional[str] = ..., name: _Optional[str] = ..., spiffe_id: _Optional[str] = ..., status: _Optional[_Union[AgentStatus, str]] = ..., granted_ring: _Optional[int] = ..., current_key: _Optional[_Union[KeyInfo, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_reason: _Optional[str] = ...) -> None: ...

class X509SVID(_message.Message):
    __slots__ = ("cert_chain", "spiffe_id", "expires_at")
    CERT_CHAIN_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    cert_chain: _containers.RepeatedScalarFieldContainer[bytes]
    spiffe_id: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, cert_chain: _Optional[_Iterable[bytes]] = ..., spiffe_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TrustBundle(_message.Message):
    __slots__ = ("trust_domain", "spiffe_bundle", "x509_authorities_pem", "sequence")
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    X509_AUTHORITIES_PEM_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    trust_domain: str
    spiffe_bundle: bytes
    x509_authorities_pem: bytes
    sequence: int
    def __init__(self, trust_domain: _Optional[str] = ..., spiffe_bundle: _Optional[bytes] = ..., x509_authorities_pem: _Optional[bytes] = ..., sequence: _Optional[int] = ...) -> None: ...
