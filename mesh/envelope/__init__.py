"""Signed agent-to-agent messages: the envelope, its JWS twin, and the verifier.

    envelope = sign_message(key, did, "application/json", payload, audience="did:mesh:...")
    verifier = Verifier(StaticKeys.inception(peer_public_key), audience="did:mesh:...")
    message = verifier.verify(Envelope.from_json(wire))

See docs/messages.md for the wire forms, the signed bytes and the check order.
"""

from mesh.envelope.encoding import FORMAT, TAG
from mesh.envelope.errors import (
    BadSignature,
    EnvelopeError,
    Expired,
    KeyMismatch,
    LifetimeTooLong,
    MalformedMessage,
    NotYetValid,
    Replayed,
    RevokedKey,
    UnknownKey,
    WrongAudience,
)
from mesh.envelope.jws import JWS_TYPE, parse_jws, sign_jws, to_jws, verify_jws
from mesh.envelope.keys import HistoryKeys, KeyResolver, StaticKeys
from mesh.envelope.models import Envelope, JwsMessage, VerifiedMessage
from mesh.envelope.sign import sign_message
from mesh.envelope.verify import ANY_AUDIENCE, Verifier

__all__ = [
    "ANY_AUDIENCE",
    "FORMAT",
    "JWS_TYPE",
    "TAG",
    "BadSignature",
    "Envelope",
    "EnvelopeError",
    "Expired",
    "HistoryKeys",
    "JwsMessage",
    "KeyMismatch",
    "KeyResolver",
    "LifetimeTooLong",
    "MalformedMessage",
    "NotYetValid",
    "Replayed",
    "RevokedKey",
    "StaticKeys",
    "UnknownKey",
    "VerifiedMessage",
    "Verifier",
    "WrongAudience",
    "parse_jws",
    "sign_jws",
    "sign_message",
    "to_jws",
    "verify_jws",
]
