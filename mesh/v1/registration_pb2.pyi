import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mesh.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetChallengeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Challenge(_message.Message):
    __slots__ = ("nonce", "trust_domain", "expires_at")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    trust_domain: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, nonce: _Optional[bytes] = ..., trust_domain: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("join_token", "public_key", "challenge", "proof", "csr", "metadata", "key_history")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    CSR_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    KEY_HISTORY_FIELD_NUMBER: _ClassVar[int]
    join_token: str
    public_key: bytes
    challenge: bytes
    proof: bytes
    csr: bytes
    metadata: _containers.ScalarMap[str, str]
    key_history: str
    def __init__(self, join_token: _Optional[str] = ..., public_key: _Optional[bytes] = ..., challenge: _Optional[bytes] = ..., proof: _Optional[bytes] = ..., csr: _Optional[bytes] = ..., metadata: _Optional[_Mapping[str, str]] = ..., key_history: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("did", "spiffe_id", "svid", "bundle", "key_history", "created")
    DID_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    SVID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    KEY_HISTORY_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    did: str
    spiffe_id: str
    svid: _types_pb2.X509SVID
    bundle: _types_pb2.TrustBundle
    key_history: str
    created: bool
    def __init__(self, did: _Optional[str] = ..., spiffe_id: _Optional[str] = ..., svid: _Optional[_Union[_types_pb2.X509SVID, _Mapping]] = ..., bundle: _Optional[_Union[_types_pb2.TrustBundle, _Mapping]] = ..., key_history: _Optional[str] = ..., created: _Optional[bool] = ...) -> None: ...
