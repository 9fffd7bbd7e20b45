"""RegistrationService: GetChallenge and Register (public; see docs/authorization.md).

Register, first time (join token):

1. field checks (sizes, a strong Ed25519 key, nonce and proof lengths, metadata);
2. off the event loop: the proof of possession (strict Ed25519), the DID and
   SPIFFE ID from the key, the agent's key history if sent, and the X.509-SVID
   signed from the CSR (the CA checks the CSR and says why it refuses one);
3. ONE store transaction: consume the challenge, consume the token (or
   recognise a retry by the same key), create the agent, its inception key,
   its key history, the SVID record, the ``agent.registered`` event and the
   audit entry. Any failure rolls all of it back.

Re-registration (empty token): the key must be the current key of an ACTIVE
agent; a fresh SVID is issued for the same DID (``created=false``).

Statuses: a malformed field is INVALID_ARGUMENT; a bad proof and an unknown,
expired, revoked or foreign join token are UNAUTHENTICATED; an unknown,
expired or already used challenge is FAILED_PRECONDITION (the fix is a new
GetChallenge); re-registering a revoked agent is FAILED_PRECONDITION.
"""

from __future__ import annotations

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
from registry.rotation.policy import RotationPolicy, svid_refusal
from registry.scoring.state import current_state
from registry.services import _validate as check
from registry.services._runtime import Runtime, timestamp
from registry.status import RpcError, invalid, precondition, unauthenticated
from registry.store.errors import AlreadyExists, FailedPrecondition, NotFound
from registry.store.repos.tokens import hash_token

CHALLENGE_PURPOSE = "register"


@dataclass(frozen=True, slots=True)
class _Prepared:
    """Everything Register computes before touching the store."""

    did: str
    spiffe_id: str
    kid: str
    chain: list[Any]
    history_json: str | None
    inception_at: datetime | None


class RegistrationService(registration_pb2_grpc.RegistrationServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._td = runtime.trust_domain.name
        self._svid_ttl = timedelta(seconds=runtime.config.x509_svid_ttl_seconds)
        self._rotation = RotationPolicy.from_config(runtime.config)

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
        self._rt.challenges.check(nonce)
        history_text = request.key_history
        if len(history_text) > check.MAX_KEY_HISTORY_BYTES:
            raise invalid("key_history", f"is over {check.MAX_KEY_HISTORY_BYTES} bytes")
        if token:
            return await self._rt.run(
                self._first_registration, token, public_key, nonce, proof, csr, metadata,
                history_text,
            )
        if metadata:
            raise invalid("metadata", "is recorded at first registration only; send it empty")
        return await self._rt.run(
            self._reregistration, public_key, nonce, proof, csr, history_text
        )

    # Both paths run in a worker thread: CPU work first, then one transaction.

    def _verify_proof(self, nonce: bytes, public_key: bytes, csr: bytes, proof: bytes) -> None:
        if not verify_proof(self._td, nonce, public_key, csr, proof):
            raise unauthenticated(
                "proof: the signature does not verify for public_key over this challenge, trust "
                f"domain {self._td} and CSR; sign mesh.registration.proof_message with the key"
            )

    def _first_registration(
        self,
        token: str,
        public_key: bytes,
        nonce: bytes,
        proof: bytes,
        csr: bytes,
        metadata: dict[str, str],
        history_text: str,
    ) -> registration_pb2.RegisterResponse:
        self._verify_proof(nonce, public_key, csr, proof)
        did = DID.from_public_key(public_key)
        history_json, inception_at = self._inception_history(history_text, did, public_key)
        spiffe_id = str(agent_spiffe_id(self._rt.trust_domain, did))
        chain = self._rt.ca.issue_x509_svid(csr, spiffe_id, ttl=self._svid_ttl)
        prepared = _Prepared(
            str(did), spiffe_id, key_id(public_key), chain, history_json, inception_at
        )
        created, stored_history = self._commit_first(prepared, token, nonce, public_key, metadata)
        self._rt.metrics.registrations.labels("created" if created else "retry").inc()
        self._rt.metrics.svids_issued.labels("x509").inc()
        return self._response(prepared, created, stored_history)

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

    def _commit_first(
        self,
        p: _Prepared,
        token: str,
        nonce: bytes,
        public_key: bytes,
        metadata: dict[str, str],
    ) -> tuple[bool, str | None]:
        token_hash = hash_token(token)
        leaf = p.chain[0]
        with self._rt.store.transaction() as tx:
            self._consume_challenge(tx, nonce)
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
                return False, tx.keys.history(p.did)
            try:
                tx.agents.create(
                    did=p.did, name=record.agent_name, spiffe_id=p.spiffe_id, metadata=metadata
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
                public_key=public_key,
                valid_from=p.inception_at or tx.now,
            )
            if p.history_json is not None:
                tx.keys.put_history(p.did, p.history_json)
            self._record_svid(tx, p.did, leaf)
            tx.events.append(
                "agent.registered",
                p.did,
                {
                    "did": p.did,
                    "name": record.agent_name,
                    "spiffe_id": p.spiffe_id,
                    "kid": p.kid,
                    "state": dict(current_state(tx, p.did)),
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
        return True, p.history_json

    def _reregistration(
        self, public_key: bytes, nonce: bytes, proof: bytes, csr: bytes, history_text: str
    ) -> registration_pb2.RegisterResponse:
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
        chain = self._rt.ca.issue_x509_svid(csr, agent.spiffe_id, ttl=self._svid_ttl)
        prepared = _Prepared(agent.did, agent.spiffe_id, kid, chain, stored_history, None)
        leaf = chain[0]
        with self._rt.store.transaction() as tx:
            self._consume_challenge(tx, nonce)
            # Re-check inside the transaction: a revocation may have landed meanwhile.
            fresh = tx.agents.get(agent.did)
            latest = tx.keys.current(agent.did)
            self._check_reregistration(fresh.status, fresh.did, key, latest, "", None)
            # Past the key age limit: no SVID by re-registration either (rotate first).
            refusal = svid_refusal(latest, tx.now, self._rotation)
            if refusal is not None:
                raise precondition(refusal)
            self._record_svid(tx, agent.did, leaf)
            tx.audit.append(
                agent.spiffe_id,
                "agent.reregister",
                agent.did,
                {"kid": kid, "svid_serial": format(leaf.serial_number, "x")},
            )
        self._rt.metrics.registrations.labels("reregistered").inc()
        self._rt.metrics.svids_issued.labels("x509").inc()
        return self._response(prepared, False, stored_history)

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

    def _consume_challenge(self, tx: Any, nonce: bytes) -> None:
        """Check the nonce was minted here and is fresh; record its one use in ``tx``."""
        expires_at = self._rt.challenges.check(nonce)
        try:
            tx.challenges.create(
                nonce=nonce.hex(),
                purpose=CHALLENGE_PURPOSE,
                trust_domain=self._td,
                expires_at=expires_at,
            )
            tx.challenges.consume(nonce.hex(), purpose=CHALLENGE_PURPOSE, trust_domain=self._td)
        except (AlreadyExists, FailedPrecondition, NotFound):
            raise precondition(
                "challenge: already used; call GetChallenge and sign the new nonce"
            ) from None

    @staticmethod
    def _record_svid(tx: Any, did: str, leaf: Any) -> None:
        tx.svids.record(
            serial=format(leaf.serial_number, "x"),
            did=did,
            kind="x509",
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
        )

    def _response(
        self, p: _Prepared, created: bool, history: str | None
    ) -> registration_pb2.RegisterResponse:
        return registration_pb2.RegisterResponse(
            did=p.did,
            spiffe_id=p.spiffe_id,
            svid=self._rt.svid_pb(p.chain, p.spiffe_id),
            bundle=self._rt.bundle_pb(),
            key_history=history or "",
            created=created,
        )


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
