"""What the sync and async agent clients share: configuration, the agent directory, checks.

Transport (threads or asyncio, sync or aio channels) is the only difference
between :class:`mesh.client.AgentClient` and :class:`mesh.client.AsyncAgentClient`;
everything decided about *what* to send and *whether to accept* the answer is here.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from mesh.agentdir import AGENT_FILE, AgentDir, AgentInfo
from mesh.client._internal import convert, flow
from mesh.client.channel import RetryPolicy, TLSConfig, mtls_addresses, parse_addresses
from mesh.client.errors import ResponseError
from mesh.client.operator import ttl_seconds
from mesh.client.renewal import failure_delay, renewal_delay
from mesh.client.types import JWTSVID, Registration
from mesh.errors import MeshError
from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey, load_identity, read_key_history, save_identity
from mesh.svid import X509SVID
from mesh.v1 import svid_pb2

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RegisterPlan:
    """Everything a registration attempt needs from the directory, loaded once."""

    key: IdentityKey = field(repr=False)
    did: str
    expected_trust_domain: str | None
    history_json: str
    join_token: str | None = field(repr=False)
    metadata: Mapping[str, str] | None


@dataclass(frozen=True)
class Attempt:
    """What one successful registration round trip produced."""

    trust_domain: str
    svid_key: ec.EllipticCurvePrivateKey = field(repr=False)
    response: Any


class AgentCore:
    """Configuration and directory logic of an agent client (no I/O on the network)."""

    def __init__(
        self,
        registry: str | Sequence[str] | None,
        agent_dir: str | os.PathLike[str],
        bundle_pem: bytes | str | os.PathLike[str] | None,
        *,
        mtls_registry: str | Sequence[str] | None,
        passphrase: bytes | None,
        trust_domain: str | None,
        timeout: float,
        retry: RetryPolicy | None,
        clock: Clock,
        jitter: float,
        rng: random.Random | None,
        on_renewed: Callable[[Registration], None] | None,
        on_error: Callable[[MeshError], None] | None,
    ) -> None:
        self.dir = AgentDir(agent_dir)
        info = self.dir.read_info()
        if registry is None:
            if info is None:
                raise MeshError(
                    f"{self.dir.path} holds no registered agent ({AGENT_FILE} is missing) and "
                    "no registry address was given",
                    hint=f"register it first: mesh register --registry HOST:PORT --bundle "
                    f"BUNDLE.pem --token TOKEN --out {self.dir.path}",
                )
            registry = info.registry
            if mtls_registry is None:
                mtls_registry = info.registry_mtls
        self.addresses = parse_addresses(registry)
        derived = mtls_addresses(self.addresses)
        self.mtls_addresses = parse_addresses(mtls_registry) if mtls_registry else derived
        # Recorded in agent.json only when it is not the convention (port + 1).
        self._mtls_note = ",".join(self.mtls_addresses) if self.mtls_addresses != derived else None
        self._root_pem = self._bootstrap_bundle(bundle_pem)
        self._passphrase = passphrase
        self._trust_domain = trust_domain
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._on_renewed = on_renewed
        self._on_error = on_error
        self._svid: X509SVID | None = None
        self.last_error: MeshError | None = None

    def _bootstrap_bundle(self, bundle_pem: bytes | str | os.PathLike[str] | None) -> bytes:
        if isinstance(bundle_pem, bytes):
            return bundle_pem
        if bundle_pem is not None:
            path = Path(bundle_pem)
            try:
                return path.read_bytes()
            except OSError as exc:
                raise MeshError(
                    f"cannot read the trust bundle {path}: {exc.strerror}",
                    hint="pass the registry's bundle.pem (in the data dir of `mesh serve`)",
                ) from None
        if self.dir.bundle.exists():
            return self.dir.read_bundle()
        raise MeshError(
            f"no trust bundle: none given and {self.dir.bundle} does not exist",
            hint="pass --bundle with the registry's bundle.pem for the first registration",
        )

    # -- registration ------------------------------------------------------------------

    def _plan(self, join_token: str | None, metadata: Mapping[str, str] | None) -> RegisterPlan:
        """Load (or, with a token, make) the identity key and decide what to expect back."""
        info = self.dir.read_info()
        history: KeyHistory | None
        if self.dir.has_identity():
            key = load_identity(self.dir.path, self._passphrase)
            history = read_key_history(self.dir.path)
        elif not join_token:
            raise MeshError(
                f"{self.dir.path} holds no identity key and no join token was given",
                hint="first registration needs a join token: `mesh token create --name NAME`",
            )
        elif info is not None:
            raise MeshError(
                f"{self.dir.agent_json} names {info.did} but its identity key is missing",
                hint="restore identity.key from a backup, or register into an empty directory",
            )
        else:
            key = IdentityKey.generate()
            # Saved before the first call: if the answer is lost, a retry uses the same key
            # and so gets the same DID.
            save_identity(self.dir.path, key, self._passphrase)
            history = read_key_history(self.dir.path)
        return RegisterPlan(
            key=key,
            did=flow.expected_did(key, history, info),
            expected_trust_domain=self._trust_domain or (info.trust_domain if info else None),
            history_json=flow.history_to_send(history, join_token),
            join_token=join_token or None,
            metadata=metadata,
        )

    def _register_request(self, plan: RegisterPlan, challenge: Any) -> tuple[Attempt, Any]:
        """From a challenge: (the attempt so far, the RegisterRequest to send)."""
        td = flow.check_challenge_domain(challenge, plan.expected_trust_domain)
        svid_key, csr = flow.new_svid_key()
        request = flow.register_request(
            plan.key,
            td,
            challenge,
            csr,
            join_token=plan.join_token,
            key_history=plan.history_json,
            metadata=plan.metadata,
        )
        return Attempt(td, svid_key, None), request

    def _accept_registration(
        self, plan: RegisterPlan, attempt: Attempt
    ) -> tuple[Registration, flow.Accepted]:
        response = attempt.response
        spiffe_id = flow.check_registration(response, plan.did, attempt.trust_domain)
        accepted = flow.accept(
            response.svid, response.bundle, attempt.svid_key, expected_spiffe_id=spiffe_id
        )
        info = AgentInfo(
            did=plan.did,
            spiffe_id=spiffe_id,
            trust_domain=attempt.trust_domain,
            registry=",".join(self.addresses),
            registry_mtls=self._mtls_note,
        )
        result = flow.commit(self.dir, accepted, info, created=bool(response.created))
        self._svid = accepted.svid
        return result, accepted

    # -- renewal -----------------------------------------------------------------------

    def _accept_renewal(
        self, info: AgentInfo, svid_key: ec.EllipticCurvePrivateKey, response: Any
    ) -> tuple[Registration, flow.Accepted]:
        if response.bundle.trust_domain != info.trust_domain:
            raise ResponseError(
                f"the registry sent the bundle of {response.bundle.trust_domain}, "
                f"expected {info.trust_domain}"
            )
        accepted = flow.accept(
            response.svid, response.bundle, svid_key, expected_spiffe_id=info.spiffe_id
        )
        result = flow.commit(self.dir, accepted, info, created=False)
        self._svid = accepted.svid
        return result, accepted

    def _next_delay(self, failures: int) -> float:
        svid = self._current_svid()
        now = self._clock()
        if failures:
            return failure_delay(failures, now, svid.expires_at, self._rng)
        return renewal_delay(
            svid.issued_at, svid.expires_at, now, jitter=self._jitter, rng=self._rng
        )

    def _renewed(self, result: Registration) -> None:
        self.last_error = None
        if self._on_renewed is not None:
            self._on_renewed(result)

    def _report(self, exc: MeshError) -> None:
        self.last_error = exc
        if self._on_error is not None:
            self._on_error(exc)

    # -- JWT-SVIDs ---------------------------------------------------------------------

    @staticmethod
    def _jwt_request(
        audience: str | Sequence[str], ttl: timedelta | int | None
    ) -> svid_pb2.FetchJWTSVIDRequest:
        audiences = [audience] if isinstance(audience, str) else list(audience)
        if not audiences or not all(audiences):
            raise MeshError("a JWT-SVID needs at least one non-empty audience")
        return svid_pb2.FetchJWTSVIDRequest(
            audience=audiences, ttl_seconds=ttl_seconds(ttl, "JWT-SVID ttl")
        )

    @staticmethod
    def _jwt_result(response: Any) -> JWTSVID:
        result = convert.jwt_svid(response)
        if not result.token:
            raise ResponseError("the registry returned an empty JWT-SVID")
        return result

    # -- state -------------------------------------------------------------------------

    @property
    def info(self) -> AgentInfo:
        """``agent.json`` of the registered agent."""
        return self._info()

    def _info(self) -> AgentInfo:
        info = self.dir.read_info()
        if info is None:
            raise MeshError(
                f"the agent in {self.dir.path} is not registered",
                hint=f"register it first: mesh register --token TOKEN --out {self.dir.path}",
            )
        return info

    def _current_svid(self) -> X509SVID:
        if self._svid is None:
            chain_pem, key_pem = self.dir.read_svid()
            self._svid = X509SVID.parse(chain_pem, key_pem)
        return self._svid

    def _disk_tls(self) -> TLSConfig:
        """mTLS configuration from the directory's SVID and bundle."""
        chain_pem, key_pem = self.dir.read_svid()
        self._svid = X509SVID.parse(chain_pem, key_pem)
        return TLSConfig(self.dir.read_bundle(), chain_pem, key_pem)

    @staticmethod
    def _tls_of(accepted: flow.Accepted) -> TLSConfig:
        return TLSConfig(accepted.bundle_pem, accepted.svid.chain_pem(), accepted.key_pem)
