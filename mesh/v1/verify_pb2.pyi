import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VerifyReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFY_REASON_UNSPECIFIED: _ClassVar[VerifyReason]
    VERIFY_REASON_VALID: _ClassVar[VerifyReason]
    VERIFY_REASON_MALFORMED_MESSAGE: _ClassVar[VerifyReason]
    VERIFY_REASON_UNKNOWN_KEY: _ClassVar[VerifyReason]
    VERIFY_REASON_REVOKED_KEY: _ClassVar[VerifyReason]
    VERIFY_REASON_BAD_SIGNATURE: _ClassVar[VerifyReason]
    VERIFY_REASON_WRONG_AUDIENCE: _ClassVar[VerifyReason]
    VERIFY_REASON_LIFETIME_TOO_LONG: _ClassVar[VerifyReason]
    VERIFY_REASON_NOT_YET_VALID: _ClassVar[VerifyReason]
    VERIFY_REASON_EXPIRED: _ClassVar[VerifyReason]
    VERIFY_REASON_KEY_STATUS_UNAVAILABLE: _ClassVar[VerifyReason]
VERIFY_REASON_UNSPECIFIED: VerifyReason
VERIFY_REASON_VALID: VerifyReason
VERIFY_REASON_MALFORMED_MESSAGE: VerifyReason
VERIFY_REASON_UNKNOWN_KEY: VerifyReason
VERIFY_REASON_REVOKED_KEY: VerifyReason
VERIFY_REASON_BAD_SIGNATURE: VerifyReason
VERIFY_REASON_WRONG_AUDIENCE: VerifyReason
VERIFY_REASON_LIFETIME_TOO_LONG: VerifyReason
VERIFY_REASON_NOT_YET_VALID: VerifyReason
VERIFY_REASON_EXPIRED: VerifyReason
VERIFY_REASON_KEY_STATUS_UNAVAILABLE: VerifyReason

class SignedMessage(_message.Message):
    __slots__ = ("envelope_json", "envelope_binary", "jws")
    ENVELOPE_JSON_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_BINARY_FIELD_NUMBER: _ClassVar[int]
    JWS_FIELD_NUMBER: _ClassVar[int]
    envelope_json: str
    envelope_binary: bytes
    jws: str
    def __init__(self, envelope_json: _Optional[str] = ..., envelope_binary: _Optional[bytes] = ..., jws: _Optional[str] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("message", "audiences")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AUDIENCES_FIELD_NUMBER: _ClassVar[int]
    message: SignedMessage
    audiences: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, message: _Optional[_Union[SignedMessage, _Mapping]] = ..., audiences: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifyBatchRequest(_message.Message):
    __slots__ = ("messages", "audiences")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    AUDIENCES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[SignedMessage]
    audiences: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, messages: _Optional[_Iterable[_Union[SignedMessage, _Mapping]]] = ..., audiences: _Optional[_Iterable[str]] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("valid", "reason", "reason_name", "message", "sender", "kid", "payload_type", "audience", "issued_at", "expires_at", "nonce")
    VALID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REASON_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_TYPE_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    reason: VerifyReason
    reason_name: str
    message: str
    sender: str
    kid: str
    payload_type: str
    audience: str
    issued_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    nonce: bytes
    def __init__(self, valid: _Optional[bool] = ..., reason: _Optional[_Union[VerifyReason, str]] = ..., reason_name: _Optional[str] = ..., message: _Optional[str] = ..., sender: _Optional[str] = ..., kid: _Optional[str] = ..., payload_type: _Optional[str] = ..., audience: _Optional[str] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class VerifyBatchResponse(_message.Message):
    __slots__ = ("verdicts",)
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[Verdict]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[Verdict, _Mapping]]] = ...) -> None: ...
