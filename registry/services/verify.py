"""VerifyService: signed messages verified by the registry, for thin clients.

Keys come from the store through a :class:`mesh.verifier.PeerVerifier` (the
same rules as every peer: the signed key history checked from the inception
key, status, ``compromised_at``, rotation grace). Its cache is kept exact by
the registry's own event log: before answering, each call reads the events
committed since the last one it saw (one indexed query; this replica's and
every other replica's commits alike) and applies them, so a revocation
committed before a call began is always honoured by that call.

Verification is spread over the machine's cores with a thread pool:
libsodium's verify runs with the GIL released (measured in bench/verify.py),
and a batch is cut into one chunk per core. The rest of each message's work
holds the GIL, so it is kept short: binary envelopes are read in one pass
(``Envelope.from_bytes``) and each chunk writes its verdicts as encoded
protobuf, joined as bytes. Replay is the caller's to check: every verdict
carries the sender, nonce and expiry for its replay guard.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from mesh.client._internal import convert
from mesh.client.errors import NotFound, RegistryUnavailable
from mesh.client.types import Resolution
from mesh.envelope import ANY_AUDIENCE, Envelope, EnvelopeError, JwsMessage, Verifier, parse_jws
from mesh.envelope.models import MAX_AUDIENCE_CHARS
from mesh.v1 import agents_pb2, verify_pb2, verify_pb2_grpc
from mesh.verifier import PeerVerifier
from mesh.watch import WatchHandler
from registry.events.hub import to_event
from registry.logs import get_logger
from registry.services._runtime import Runtime, agent_pb, key_pb
from registry.status import invalid

MAX_BATCH = 1000
MAX_AUDIENCES = 16
# Smaller batches are verified on one thread: handing work over costs more than it saves.
MIN_CHUNK = 64

_log = get_logger("registry.verify")

_REASONS = {
    "MalformedMessage": verify_pb2.VERIFY_REASON_MALFORMED_MESSAGE,
    "UnknownKey": verify_pb2.VERIFY_REASON_UNKNOWN_KEY,
    "RevokedKey": verify_pb2.VERIFY_REASON_REVOKED_KEY,
    "BadSignature": verify_pb2.VERIFY_REASON_BAD_SIGNATURE,
    "WrongAudience": verify_pb2.VERIFY_REASON_WRONG_AUDIENCE,
    "LifetimeTooLong": verify_pb2.VERIFY_REASON_LIFETIME_TOO_LONG,
    "NotYetValid": verify_pb2.VERIFY_REASON_NOT_YET_VALID,
    "Expired": verify_pb2.VERIFY_REASON_EXPIRED,
    "KeyStatusUnavailable": verify_pb2.VERIFY_REASON_KEY_STATUS_UNAVAILABLE,
}


class _NotChecked:
    """The registry does not remember nonces: replay is the caller's (see the module doc)."""

    def check_and_remember(self, sender: str, nonce: bytes, expires_at: datetime) -> bool:
        return True


class StoreSource:
    """ResolveDID straight from the store (the :class:`mesh.verifier.DIDSource` of the server)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def resolve_did(self, did: str) -> Resolution:
        try:
            with self._store.read() as view:
                agent = view.agents.find(did)
                if agent is None:
                    raise NotFound(f"{did} is not registered here")
                keys = view.keys.list_for_agent(did)
                history = view.keys.history(did)
        except NotFound:
            raise
        except Exception as exc:
            raise RegistryUnavailable(f"the registry's database did not answer: {exc}") from None
        response = agents_pb2.ResolveDIDResponse(
            agent=agent_pb(agent, keys[-1] if keys else None),
            keys=[key_pb(k) for k in keys],
            key_history=history or "",
        )
        return convert.resolution(response)


class VerifyService(verify_pb2_grpc.VerifyServiceServicer):
    def __init__(self, runtime: Runtime, *, workers: int | None = None) -> None:
        self._rt = runtime
        self._workers = max(1, workers or os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="verify")
        self.keys = PeerVerifier(StoreSource(runtime.store))
        self._feed: WatchHandler | None = None
        self._sync_lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- keeping the key cache exact ---------------------------------------------------

    def _sync(self) -> None:
        """Apply every event committed since the last call (see the module doc)."""
        with self._sync_lock:
            store = self._rt.store
            try:
                if self._feed is None:
                    self._feed = self.keys.follow_feed(store.latest_event_seq())
                    return
                feed = self._feed
                while True:
                    records = store.events_since(feed.position(), 1000)
                    for record in records:
                        feed.event(to_event(record))
                    if len(records) < 1000:
                        break
            except Exception as exc:
                # The database is unreachable: the cache answers within its staleness bound.
                if self._feed is not None:
                    self._feed.disconnected(str(exc))
                _log.warning("verify.event_sync_failed", error=str(exc))
                return
            feed.connected()

    # -- RPCs --------------------------------------------------------------------------

    async def Verify(self, request: verify_pb2.VerifyRequest, context: Any) -> verify_pb2.Verdict:
        if not request.HasField("message") or request.message.WhichOneof("form") is None:
            raise invalid("message", "is required: set envelope_json, envelope_binary or jws")
        verifier = self._verifier(request.audiences)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._verify_one, verifier, request.message)

    def _verify_one(self, verifier: Verifier, message: verify_pb2.SignedMessage) -> Any:
        self._sync()
        return _verdict(verifier, message, _make_verdict)

    async def VerifyBatch(
        self, request: verify_pb2.VerifyBatchRequest, context: Any
    ) -> verify_pb2.VerifyBatchResponse:
        messages = request.messages
        if not messages:
            raise invalid("messages", "is empty; send 1 to 1000 messages")
        if len(messages) > MAX_BATCH:
            raise invalid(
                "messages",
                f"holds {len(messages)} messages; at most {MAX_BATCH} per batch "
                "(split it into several VerifyBatch calls)",
            )
        verifier = self._verifier(request.audiences)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._sync)
        chunks = _chunks(len(messages), self._workers)
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(self._pool, _batch_part, verifier, messages, start, stop)
                for start, stop in chunks
            )
        )
        # Each part is an encoded response; joined, they encode the whole one.
        response = verify_pb2.VerifyBatchResponse()
        response.ParseFromString(b"".join(parts))
        return response

    def _verifier(self, audiences: Sequence[str]) -> Verifier:
        if len(audiences) > MAX_AUDIENCES:
            raise invalid("audiences", f"holds {len(audiences)}; at most {MAX_AUDIENCES}")
        for i, audience in enumerate(audiences):
            if not audience or len(audience) > MAX_AUDIENCE_CHARS:
                raise invalid(
                    f"audiences[{i}]", f"must be 1..{MAX_AUDIENCE_CHARS} characters"
                )
        return Verifier(
            self.keys, audience=list(audiences) or ANY_AUDIENCE, replay=_NotChecked()
        )


def _chunks(n: int, workers: int) -> list[tuple[int, int]]:
    parts = max(1, min(workers, n // MIN_CHUNK))
    size = -(-n // parts)
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _batch_part(
    verifier: Verifier, messages: Sequence[verify_pb2.SignedMessage], start: int, stop: int
) -> bytes:
    """The verdicts of ``messages[start:stop]`` as an encoded ``VerifyBatchResponse``.

    Encoded responses concatenate into one (their only field is repeated), so the
    parts of a batch are joined as bytes and read once. The binary form, what a
    batch mostly carries, skips the dispatch on the form (a non-empty
    ``envelope_binary`` is the message's form); the rest go through :func:`_verdict`.
    """
    encode = _VerdictEncoder()
    verify = verifier.verify
    from_bytes = Envelope.from_bytes
    out = []
    for i in range(start, stop):
        message = messages[i]
        binary = message.envelope_binary
        if not binary:
            out.append(_verdict(verifier, message, encode))
            continue
        try:
            parsed = from_bytes(binary)
        except EnvelopeError as exc:
            out.append(encode(exc, None))
            continue
        try:
            verify(parsed)
        except EnvelopeError as exc:
            out.append(encode(exc, parsed))
            continue
        out.append(encode(None, parsed))
    return b"".join(out)


def _parse(message: verify_pb2.SignedMessage) -> Envelope | JwsMessage:
    form = message.WhichOneof("form")
    if form == "envelope_binary":
        return Envelope.from_bytes(message.envelope_binary)
    if form == "envelope_json":
        return Envelope.from_json(message.envelope_json)
    if form == "jws":
        return parse_jws(message.jws)
    from mesh.envelope import MalformedMessage

    raise MalformedMessage("no message: set envelope_json, envelope_binary or jws")


_T = TypeVar("_T")


def _verdict(
    verifier: Verifier,
    message: verify_pb2.SignedMessage,
    make: Callable[[EnvelopeError | None, Envelope | JwsMessage | None], _T],
) -> _T:
    """Parse and check one message; ``make`` turns (error or None, parsed or None) into
    its verdict."""
    try:
        parsed = _parse(message)
    except EnvelopeError as exc:
        return make(exc, None)
    try:
        verifier.verify(parsed)
    except EnvelopeError as exc:
        return make(exc, parsed)
    return make(None, parsed)


def _make_verdict(
    error: EnvelopeError | None, parsed: Envelope | JwsMessage | None
) -> verify_pb2.Verdict:
    """The ``Verdict`` message (one constructor call with every field: setting them one by
    one costs more than the rest of the bookkeeping together; times as mappings, since a
    ``Timestamp`` object costs as much again to build and then to copy in)."""
    if error is None:
        valid, reason, name, text = True, verify_pb2.VERIFY_REASON_VALID, "Valid", ""
    else:
        valid, reason, name, text = (
            False,
            _REASONS.get(error.reason, verify_pb2.VERIFY_REASON_UNSPECIFIED),
            error.reason,
            str(error)[:1024],
        )
    if parsed is None:
        return verify_pb2.Verdict(valid=valid, reason=reason, reason_name=name, message=text)
    return verify_pb2.Verdict(
        valid=valid,
        reason=reason,
        reason_name=name,
        message=text,
        sender=parsed.sender,
        kid=parsed.kid,
        payload_type=parsed.payload_type,
        audience=parsed.audience,
        issued_at={"seconds": parsed.issued_at},
        expires_at={"seconds": parsed.expires_at},
        nonce=parsed.nonce,
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field_prefix(number: int, length: int) -> bytes:
    """The tag and length of a length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(length)


_VERDICTS_FIELD = verify_pb2.VerifyBatchResponse.DESCRIPTOR.fields_by_name["verdicts"].number
_NONCE_FIELD = verify_pb2.Verdict.DESCRIPTOR.fields_by_name["nonce"].number
# Prefixes of the lengths met in practice (a valid verdict is a few hundred bytes; a
# nonce at most 64), looked up instead of encoded.
_VERDICT_PREFIX = tuple(_field_prefix(_VERDICTS_FIELD, n) for n in range(2048))
_NONCE_PREFIX = tuple(_field_prefix(_NONCE_FIELD, n) for n in range(128))


class _VerdictEncoder:
    """Verdicts as encoded ``VerifyBatchResponse.verdicts`` entries, for one batch part.

    A valid verdict is assembled from pieces the protobuf library encoded once and
    that repeat within a batch: the head (validity and the sender, kid, type and
    audience, which a batch from a few senders to one audience shares) and the two
    times; only the nonce is new. Encoding pieces in field order and concatenating
    them gives the bytes the library would give for the whole verdict
    (tests/test_verify_service.py compares them). Refusals are encoded whole.
    """

    __slots__ = ("_heads", "_times")

    def __init__(self) -> None:
        self._heads: dict[tuple[str, str, str, str], bytes] = {}
        self._times: dict[tuple[int, int], bytes] = {}

    def __call__(self, error: EnvelopeError | None, parsed: Envelope | JwsMessage | None) -> bytes:
        if error is not None or parsed is None:
            return _entry(_make_verdict(error, parsed).SerializeToString())
        key = (parsed.sender, parsed.kid, parsed.payload_type, parsed.audience)
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = verify_pb2.Verdict(
                valid=True,
                reason=verify_pb2.VERIFY_REASON_VALID,
                reason_name="Valid",
                sender=key[0],
                kid=key[1],
                payload_type=key[2],
                audience=key[3],
            ).SerializeToString()
        span = (parsed.issued_at, parsed.expires_at)
        times = self._times.get(span)
        if times is None:
            times = self._times[span] = verify_pb2.Verdict(
                issued_at={"seconds": span[0]}, expires_at={"seconds": span[1]}
            ).SerializeToString()
        nonce = parsed.nonce
        size = len(nonce)
        prefix = _NONCE_PREFIX[size] if size < 128 else _field_prefix(_NONCE_FIELD, size)
        return _entry(b"".join((head, times, prefix, nonce)))


def _entry(verdict: bytes) -> bytes:
    """An encoded verdict as an entry of ``VerifyBatchResponse.verdicts``."""
    size = len(verdict)
    prefix = _VERDICT_PREFIX[size] if size < 2048 else _field_prefix(_VERDICTS_FIELD, size)
    return prefix + verdict


__all__ = ["MAX_BATCH", "StoreSource", "VerifyService"]
