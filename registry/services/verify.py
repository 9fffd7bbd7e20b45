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
and a batch is cut into one chunk per core. Replay is the caller's to check:
every verdict carries the sender, nonce and expiry for its replay guard.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

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
        return _verdict(verifier, message)

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
        # Parts are joined as encoded bytes: a repeated field's encodings concatenate,
        # and reading the later parts once costs less than copying every verdict.
        response = parts[0]
        for part in parts[1:]:
            response.MergeFromString(part.SerializeToString())
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
) -> verify_pb2.VerifyBatchResponse:
    """The verdicts of ``messages[start:stop]``, built in place in a response of their own."""
    part = verify_pb2.VerifyBatchResponse()
    add = part.verdicts.add
    for i in range(start, stop):
        _verdict(verifier, messages[i], add)
    return part


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


def _verdict(
    verifier: Verifier,
    message: verify_pb2.SignedMessage,
    make: Callable[..., verify_pb2.Verdict] = verify_pb2.Verdict,
) -> verify_pb2.Verdict:
    """The verdict on one message, made by ``make``: ``Verdict`` or a batch's ``verdicts.add``.

    One call with every field (setting them one by one costs more than the rest of the
    bookkeeping together), the times given as mappings (a ``Timestamp`` object costs
    as much again to build and then to copy in).
    """
    try:
        parsed = _parse(message)
    except EnvelopeError as exc:
        return make(
            valid=False,
            reason=_REASONS.get(exc.reason, verify_pb2.VERIFY_REASON_UNSPECIFIED),
            reason_name=exc.reason,
            message=str(exc)[:1024],
        )
    try:
        verifier.verify(parsed)
    except EnvelopeError as exc:
        valid, reason, name, text = (
            False,
            _REASONS.get(exc.reason, verify_pb2.VERIFY_REASON_UNSPECIFIED),
            exc.reason,
            str(exc)[:1024],
        )
    else:
        valid, reason, name, text = True, verify_pb2.VERIFY_REASON_VALID, "Valid", ""
    return make(
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


__all__ = ["MAX_BATCH", "StoreSource", "VerifyService"]
