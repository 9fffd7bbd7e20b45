"""RegistrationService: GetChallenge and Register (public; see docs/authorization.md).

Register, first time (join token):

1. field checks (sizes, a strong Ed25519 key, nonce and proof lengths, metadata);
2. the request goes to the store's group commit as an item of the batch of
   first registrations (``Store.submit_batched``); the event loop awaits the
   commit without holding a thread;
3. off the event loop, on the store's writer thread, before the group's
   transaction: the proof of possession (strict Ed25519), the DID and SPIFFE
   ID from the key, the agent's key history if sent, and the X.509-SVID
   signed from the CSR (the CA checks the CSR and says why it refuses one);
4. ONE transaction for every registration of the group: record each
   challenge's use, consume each token, create the agents, their inception
   keys, key histories, SVID records, ``agent.registered`` events and audit
   entries, one statement per table. A registration that cannot go that way
   (a used challenge or token, a retry by the same key, an existing agent, a
   duplicate within the group) is rolled back out of the batch and written on
   its own, in its own savepoint, which gives it its precise answer. Any
   failure rolls back that registration only.

Re-registration (empty token): the key must be the current key of an ACTIVE
agent; a fresh SVID is issued for the same DID (``created=false``).

Statuses: a malformed field is INVALID_ARGUMENT; a bad proof and an unknown,
expired, revoked or foreign join token are UNAUTHENTICATED; an unknown,
expired or already used challenge is FAILED_PRECONDITION (the fix is a new
GetChallenge); re-registering a revoked agent is FAILED_PRECONDITION.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc

from mesh.did import DID
from mesh.errors import KeyHistoryError
from mesh.keyhistory import KeyHistory
from mesh.keys.identity_key import key_id
from mesh.registration import verify_proof
from mesh.spiffeid import agent_spiffe_id
from mesh.v1 import registration_pb2, registration_pb2_grpc
from registry.ca import SignedLeaf
from registry.rotation.policy import RotationPolicy, svid_refusal
from registry.scoring.state import state_payload
from registry.services import _validate as check
from registry.services._runtime import Runtime, timestamp
from registry.status import RpcError, invalid, precondition, unauthenticated
from registry.store import Batch, Refused
from registry.store.errors import AlreadyExists, FailedPrecondition, NotFound
from registry.store.repos.tokens import hash_token

CHALLENGE_PURPOSE = "register"


@dataclass(frozen=True, slots=True)
class _Prepared:
    """Everything Register computes before touching the store."""

    did: str
    spiffe_id: str
    kid: str
    leaf: SignedLeaf
    history_json: str | None
    inception_at: datetime | None
    #: Re-registration: the stored key the request authenticated with.
    key: Any = None


@dataclass(slots=True)
class _FirstItem:
    """A first registration: the checked request, then (``prepare``, on the store's
    writer thread, which alone touches the item from then on) what it computes."""

    token_hash: str
    nonce: bytes
    expires_at: datetime
    public_key: bytes
    proof: bytes
    csr: bytes
    metadata: dict[str, str]
    history_text: str
    prepared: _Prepared | None = None

    @property
    def ready(self) -> _Prepared:
        if self.prepared is None:
            raise RuntimeError("the registration was not prepared")
        return self.prepared


#: What a first registration's write gives: the prepared registration, whether the
#: agent was created (False: a retry by the same key), and the stored key history.
_FirstResult = tuple[_Prepared, bool, "str | None"]


class RegistrationService(registration_pb2_grpc.RegistrationServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._td = runtime.trust_domain.name
        self._svid_ttl = timedelta(seconds=runtime.config.x509_svid_ttl_seconds)
        self._rotation = RotationPolicy.from_config(runtime.config)
        self._first_batch = _FirstRegistrations(self)
        # The counters' children, looked up once (``labels`` costs a lock and a dict).
        registrations = runtime.metrics.registrations
        self._counted = {
            outcome: registrations.labels(outcome)
            for outcome in ("created", "retry", "reregistered")
        }
        self._x509_issued = runtime.metrics.svids_issued.labels("x509")

    # -- GetChallenge ------------------------------------------------------------

    async def GetChallenge(
        self, request: registration_pb2.GetChallengeRequest, context: Any
    ) -> registration_pb2.Challenge:
        # Pure CPU (an HMAC): no store write, no thread hop.
        nonce, expires_at = self._rt.challenges.mint()
        return registration_pb2.Challenge(
            nonce=nonce, trust_domain=self._td, expires_at=timestamp(expires_at)
        )

    # -- Register ----------------------------------------------------------------

    async def Register(
        self, request: registration_pb2.RegisterRequest, context: Any
    ) -> registration_pb2.RegisterResponse:
        token = check.join_token("join_token", request.join_token)
        public_key = check.public_key("public_key", request.public_key)
        nonce = check.exact_bytes("challenge", request.challenge, check.NONCE_BYTES, "a nonce")
        proof = check.exact_bytes("proof", request.proof, check.SIGNATURE_BYTES, "a signature")
        csr = check.csr("csr", request.csr)
        metadata = check.metadata("metadata", request.metadata)
        # A nonce this registry never minted, or an expired one, is refused before any work.
        expires_at = self._rt.challenges.check(nonce)
        history_text = request.key_history
        if len(history_text) > check.MAX_KEY_HISTORY_BYTES:
            raise invalid("key_history", f"is over {check.MAX_KEY_HISTORY_BYTES} bytes")
        if token:
            item = _FirstItem(
                hash_token(token), nonce, expires_at, public_key, proof, csr, metadata,
                history_text,
            )
            prepared, created, stored_history = await self._rt.write_batched(
                self._first_batch, item
            )
            self._counted["created" if created else "retry"].inc()
            self._x509_issued.inc()
            return self._response(prepared, created, stored_history)
        if metadata:
            raise invalid("metadata", "is recorded at first registration only; send it empty")
        prepared = await self._rt.run(
            self._prepare_reregistration, public_key, nonce, proof, csr, history_text
        )
        await self._rt.write(
            functools.partial(self._write_reregistration, prepared, nonce, expires_at)
        )
        self._counted["reregistered"].inc()
        self._x509_issued.inc()
        return self._response(prepared, False, prepared.history_json)

    # A first registration is an item of the store's batch of first registrations:
    # the store's writer thread prepares it (proof, DID, CSR checks, signing the
    # SVID) outside the transaction, then writes it with the others of its group.
    # A re-registration is prepared in a worker thread (it reads the agent first),
    # then written in the group commit.

    def _verify_proof(self, nonce: bytes, public_key: bytes, csr: bytes, proof: bytes) -> None:
        if not verify_proof(self._td, nonce, public_key, csr, proof):
            raise unauthenticated(
                "proof: the signature does not verify for public_key over this challenge, trust "
                f"domain {self._td} and CSR; sign mesh.registration.proof_message with the key"
            )

    def _prepare_first(
        self, public_key: bytes, nonce: bytes, proof: bytes, csr: bytes, history_text: str
    ) -> _Prepared:
        self._verify_proof(nonce, public_key, csr, proof)
        did = DID.from_public_key(public_key)
        history_json, inception_at = self._inception_history(history_text, did, public_key)
        spiffe_id = agent_spiffe_id(self._rt.trust_domain, did)
        leaf = self._rt.ca.sign_x509_svid(csr, spiffe_id, ttl=self._svid_ttl)
        return _Prepared(
            str(did), str(spiffe_id), key_id(public_key), leaf, history_json, inception_at
        )

    def _inception_history(
        self, text: str, did: DID, public_key: bytes
    ) -> tuple[str | None, datetime | None]:
        if not text:
            return None, None
        try:
            history = KeyHistory.from_json(text)
        except KeyHistoryError as exc:
            raise invalid("key_history", str(exc)) from None
        if history.did != did:
            raise invalid(
                "key_history", f"names {history.did}, but public_key founds {did}"
            )
        if len(history) != 1:
            raise invalid(
                "key_history",
                "on first registration the history holds only the inception entry "
                "(KeyHistory.incept(key, at))",
            )
        return text, history.inception.valid_from

    def _write_first(self, tx: Any, item: _FirstItem) -> _FirstResult:
        """In the store's write transaction: challenge, token, agent, key, history,
        SVID record, event and audit entry, or (a retry by the same key) a fresh SVID."""
        p, token_hash = item.ready, item.token_hash
        leaf = p.leaf
        self._use_challenge(tx, item.nonce, item.expires_at)
        try:
            record = tx.tokens.consume(token_hash, used_by_did=p.did)
        except NotFound:
            raise unauthenticated(
                "join_token: unknown token; ask an operator for a join token "
                "(`mesh token create`)"
            ) from None
        except FailedPrecondition:
            record = tx.tokens.find_by_hash(token_hash)
            if record is None or record.used_by_did != p.did:
                raise unauthenticated(_token_problem(record)) from None
            # The same key retrying with its own token: same DID, a fresh SVID.
            agent = tx.agents.get(p.did)
            if agent.status != "active":
                raise precondition(
                    f"agent {p.did} is {agent.status}; a revoked identity cannot "
                    "register again (generate a new key)"
                ) from None
            self._record_svid(tx, p.did, leaf)
            return p, False, tx.keys.history(p.did)
        try:
            tx.agents.create(
                did=p.did, name=record.agent_name, spiffe_id=p.spiffe_id, metadata=item.metadata
            )
        except AlreadyExists:
            raise RpcError(
                grpc.StatusCode.ALREADY_EXISTS,
                f"agent {p.did} is already registered; re-register with its current key and "
                "an empty join_token (the new token was not used)",
            ) from None
        tx.keys.add(
            did=p.did,
            index=0,
            kid=p.kid,
            public_key=item.public_key,
            valid_from=p.inception_at or tx.now,
        )
        if p.history_json is not None:
            tx.keys.put_history(p.did, p.history_json)
        self._record_svid(tx, p.did, leaf)
        self._append_registered(tx, p, record)
        return p, True, p.history_json

    def _write_first_all(self, tx: Any, items: Sequence[_FirstItem]) -> list[_FirstResult]:
        """:meth:`_write_first` for many new agents at once, with one statement per
        table. An item that would not simply create its agent (a duplicate within
        the group, a used challenge, a token that is not usable or is a retry, an
        agent that exists) is refused: it then goes through ``_write_first``."""
        ready = [it.ready for it in items]
        nonces = [it.nonce.hex() for it in items]
        seen: set[str] = set()
        refused = set()
        for i, (it, p, nonce) in enumerate(zip(items, ready, nonces, strict=True)):
            keys = (nonce, it.token_hash, p.did)
            if any(k in seen for k in keys):
                refused.add(i)
            seen.update(keys)
        if refused:
            raise Refused(refused)
        recorded = tx.challenges.use_many(
            [
                (nonce, CHALLENGE_PURPOSE, self._td, it.expires_at)
                for it, nonce in zip(items, nonces, strict=True)
            ]
        )
        tokens = tx.tokens.consume_many(
            [(it.token_hash, p.did) for it, p in zip(items, ready, strict=True)]
        )
        records = [tokens.get(it.token_hash) for it in items]
        refused = {
            i
            for i, (nonce, record) in enumerate(zip(nonces, records, strict=True))
            if nonce not in recorded or record is None
        }
        if refused:
            raise Refused(refused)
        created = tx.agents.create_many(
            [
                (p.did, record.agent_name, p.spiffe_id, it.metadata)
                for it, p, record in zip(items, ready, records, strict=True)
            ]
        )
        refused = {i for i, p in enumerate(ready) if p.did not in created}
        if refused:
            raise Refused(refused)
        tx.keys.add_many(
            [
                (p.did, 0, p.kid, it.public_key, p.inception_at or tx.now)
                for it, p in zip(items, ready, strict=True)
            ]
        )
        tx.keys.add_histories(
            [(p.did, p.history_json) for p in ready if p.history_json is not None]
        )
        tx.svids.record_many([_svid_row(p.did, p.leaf) for p in ready])
        for p, record in zip(ready, records, strict=True):
            self._append_registered(tx, p, record)
        return [(p, True, p.history_json) for p in ready]

    def _append_registered(self, tx: Any, p: _Prepared, record: Any) -> None:
        """The ``agent.registered`` event and the audit entry, written at commit."""
        leaf = p.leaf
        # The agent was created just now, so its state is known without reading it
        # back: active, granted ring 2 (the default), the inception key, no trust
        # score yet (a trust row references an existing agent).
        state = state_payload(
            status="active",
            granted_ring=2,
            current_kid=p.kid,
            score=None,
            tier=None,
            effective_ring=None,
        )
        tx.events.append_at_commit(
            "agent.registered",
            p.did,
            {
                "did": p.did,
                "name": record.agent_name,
                "spiffe_id": p.spiffe_id,
                "kid": p.kid,
                "state": dict(state),
            },
        )
        tx.audit.append(
            f"join-token:{record.id}",
            "agent.register",
            p.did,
            {
                "name": record.agent_name,
                "spiffe_id": p.spiffe_id,
                "kid": p.kid,
                "svid_serial": format(leaf.serial_number, "x"),
                "key_history": p.history_json is not None,
            },
        )

    def _prepare_reregistration(
        self, public_key: bytes, nonce: bytes, proof: bytes, csr: bytes, history_text: str
    ) -> _Prepared:
        self._verify_proof(nonce, public_key, csr, proof)
        kid = key_id(public_key)
        with self._rt.store.read() as view:
            key = view.keys.find_by_kid(kid)
            if key is None:
                raise unauthenticated(
                    "public_key is not the key of any registered agent; a first registration "
                    "needs a join_token"
                )
            agent = view.agents.get(key.did)
            current = view.keys.current(key.did)
            stored_history = view.keys.history(key.did)
        self._check_reregistration(agent.status, agent.did, key, current, history_text,
                                   stored_history)
        leaf = self._rt.ca.sign_x509_svid(csr, agent.spiffe_id, ttl=self._svid_ttl)
        return _Prepared(agent.did, agent.spiffe_id, kid, leaf, stored_history, None, key)

    def _write_reregistration(
        self, p: _Prepared, nonce: bytes, expires_at: datetime, tx: Any
    ) -> None:
        leaf = p.leaf
        self._use_challenge(tx, nonce, expires_at)
        # Re-check inside the transaction: a revocation may have landed meanwhile.
        fresh = tx.agents.get(p.did)
        latest = tx.keys.current(p.did)
        self._check_reregistration(fresh.status, fresh.did, p.key, latest, "", None)
        # Past the key age limit: no SVID by re-registration either (rotate first).
        refusal = svid_refusal(latest, tx.now, self._rotation)
        if refusal is not None:
            raise precondition(refusal)
        self._record_svid(tx, p.did, leaf)
        tx.audit.append(
            p.spiffe_id,
            "agent.reregister",
            p.did,
            {"kid": p.kid, "svid_serial": format(leaf.serial_number, "x")},
        )

    @staticmethod
    def _check_reregistration(
        status: str,
        did: str,
        key: Any,
        current: Any,
        history_text: str,
        stored_history: str | None,
    ) -> None:
        if status != "active":
            raise precondition(
                f"agent {did} is {status}; a revoked identity cannot register again "
                "(generate a new key and ask an operator for a join token)"
            )
        if current is None or current.kid != key.kid:
            raise unauthenticated(
                "public_key was rotated out; re-register with the agent's current key"
            )
        if key.compromised_at is not None:
            raise unauthenticated("public_key is marked compromised; it cannot authenticate")
        if history_text and history_text != (stored_history or ""):
            raise invalid(
                "key_history",
                "differs from the history the registry holds; send it empty on re-registration",
            )

    def _use_challenge(self, tx: Any, nonce: bytes, expires_at: datetime) -> None:
        """Record the one use of ``nonce`` (minted and checked here) in ``tx``."""
        try:
            tx.challenges.use(
                nonce=nonce.hex(),
                purpose=CHALLENGE_PURPOSE,
                trust_domain=self._td,
                expires_at=expires_at,
            )
        except FailedPrecondition as exc:
            if "expired" in str(exc):
                raise precondition(
                    "challenge: expired; call GetChallenge and sign the new nonce"
                ) from None
            raise precondition(
                "challenge: already used; call GetChallenge and sign the new nonce"
            ) from None
        except (AlreadyExists, NotFound):
            raise precondition(
                "challenge: already used; call GetChallenge and sign the new nonce"
            ) from None

    @staticmethod
    def _record_svid(tx: Any, did: str, leaf: Any) -> None:
        tx.svids.record_many([_svid_row(did, leaf)])

    def _response(
        self, p: _Prepared, created: bool, history: str | None
    ) -> registration_pb2.RegisterResponse:
        response = registration_pb2.RegisterResponse(
            did=p.did, spiffe_id=p.spiffe_id, key_history=history or "", created=created
        )
        # Sub-messages filled in place: passing built ones to the constructor copies them.
        self._rt.fill_signed_svid(response.svid, p.leaf, p.spiffe_id)
        response.bundle.CopyFrom(self._rt.bundle_pb())
        return response


def _svid_row(did: str, leaf: Any) -> tuple[str, str, str, datetime, datetime]:
    return (
        format(leaf.serial_number, "x"), did, "x509", leaf.not_valid_before_utc,
        leaf.not_valid_after_utc,
    )


class _FirstRegistrations(Batch[_FirstItem, _FirstResult]):
    """First registrations arriving together are prepared by the store's writer
    thread and written together (see ``Store.submit_batched``)."""

    def __init__(self, service: RegistrationService) -> None:
        self._service = service

    def prepare(self, item: _FirstItem) -> _FirstItem:
        item.prepared = self._service._prepare_first(
            item.public_key, item.nonce, item.proof, item.csr, item.history_text
        )
        return item

    def apply_all(self, tx: Any, items: Sequence[_FirstItem]) -> list[_FirstResult]:
        return self._service._write_first_all(tx, items)

    def apply_one(self, tx: Any, item: _FirstItem) -> _FirstResult:
        return self._service._write_first(tx, item)


def _token_problem(record: Any) -> str:
    if record is None:
        return "join_token: unknown token; ask an operator for a join token"
    if record.revoked_at is not None:
        return "join_token: this token was revoked; ask an operator for a new one"
    if record.used_at is not None:
        return (
            "join_token: this token was already used by another key; each token registers "
            "one agent; ask an operator for a new one"
        )
    return "join_token: this token expired; ask an operator for a new one"


__all__ = ["CHALLENGE_PURPOSE", "RegistrationService"]
