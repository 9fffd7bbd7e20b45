import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mesh.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RenewX509SVIDRequest(_message.Message):
    __slots__ = ("csr",)
    CSR_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    def __init__(self, csr: _Optional[bytes] = ...) -> None: ...

class RenewX509SVIDResponse(_message.Message):
    __slots__ = ("svid", "bundle")
    SVID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    svid: _types_pb2.X509SVID
    bundle: _types_pb2.TrustBundle
    def __init__(self, svid: _Optional[_Union[_types_pb2.X509SVID, _Mapping]] = ..., bundle: _Optional[_Union[_types_pb2.TrustBundle, _Mapping]] = ...) -> None: ...

class FetchJWTSVIDRequest(_message.Message):
    __slots__ = ("audience", "ttl_seconds")
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    audience: _containers.RepeatedScalarFieldContainer[str]
    ttl_seconds: int
    def __init__(self, audience: _Optional[_Iterable[str]] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class FetchJWTSVIDResponse(_message.Message):
    __slots__ = ("token", "spiffe_id", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    spiffe_id: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, token: _Optional[str] = ..., spiffe_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetTrustBundleRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
