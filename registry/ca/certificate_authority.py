"""The facade the registry server uses: one object per process over ``<data_dir>/ca``.

``CertificateAuthority.open(data_dir, trust_domain)`` creates the CA on first
start (an ACTIVE X.509 authority and an ACTIVE JWT authority) and loads it
afterwards. Issuance is thread-safe: state changes swap an immutable snapshot
under a lock; signing runs outside the lock on the snapshot it read.

Every change to the authority set (prepare, activate, prune) bumps the bundle
``sequence``, rewrites the manifest and ``<data_dir>/bundle.pem``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from mesh.bundle import Bundle
from mesh.spiffeid import SpiffeID, TrustDomain
from registry.ca._internal.der import SignedLeaf
from registry.ca._internal.files import atomic_write
from registry.ca.authority import (
    DEFAULT_CA_TTL,
    AuthoritySet,
    AuthorityState,
    JWTAuthority,
    X509Authority,
    ec_jwk_thumbprint,
    new_jwt_authority,
    new_x509_authority,
)
from registry.ca.bundle import DEFAULT_REFRESH_HINT, build_bundle, trust_anchors_pem
from registry.ca.errors import CAKeyStoreError, CAStateError
from registry.ca.jwtsvid import DEFAULT_JWT_SVID_TTL, sign_jwt_svid
from registry.ca.keystore import JWTEntry, KeyStore, Manifest, X509Entry
from registry.ca.serving import (
    DEFAULT_OPERATOR_TTL,
    DEFAULT_SERVING_TTL,
    IssuedCertificate,
    issue_operator_certificate,
    issue_serving_certificate,
)
from registry.ca.x509svid import DEFAULT_X509_SVID_TTL, sign_x509_svid

Clock = Callable[[], datetime]

CA_DIRECTORY = "ca"
BUNDLE_FILE = "bundle.pem"


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _State:
    x509: AuthoritySet[X509Authority]
    jwt: AuthoritySet[JWTAuthority]
    sequence: int


class CertificateAuthority:
    """The registry's CA: X.509-SVIDs, serving/operator certificates, JWT-SVIDs, bundle."""

    def __init__(
        self,
        *,
        trust_domain: TrustDomain,
        data_dir: Path,
        store: KeyStore,
        state: _State,
        passphrase: bytes | None,
        clock: Clock,
        ca_ttl: timedelta,
        refresh_hint: timedelta,
    ) -> None:
        self._trust_domain = trust_domain
        self._data_dir = data_dir
        self._store = store
        self._state = state
        self._passphrase = passphrase
        self._clock = clock
        self._ca_ttl = ca_ttl
        self._refresh_hint = refresh_hint
        self._lock = threading.RLock()

    # -- opening -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        trust_domain: TrustDomain | str,
        *,
        passphrase: bytes | str | None = None,
        clock: Clock = system_clock,
        ca_ttl: timedelta = DEFAULT_CA_TTL,
        refresh_hint: timedelta = DEFAULT_REFRESH_HINT,
    ) -> CertificateAuthority:
        """Load the CA in ``data_dir/ca``, creating it on first start.

        Raises :class:`CAKeyStoreError` for unsafe permissions, a wrong or
        missing passphrase, or corrupt files, and :class:`CAStateError` if the
        directory belongs to another trust domain.
        """
        td = (
            trust_domain
            if isinstance(trust_domain, TrustDomain)
            else TrustDomain.parse(trust_domain)
        )
        secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
        if secret == b"":
            raise CAKeyStoreError(
                "the CA passphrase is empty", hint="give a non-empty passphrase, or none"
            )
        root = Path(data_dir)
        store = KeyStore(root / CA_DIRECTORY)
        store.prepare()
        now = _aware(clock())
        with store.locked():
            manifest = store.read_manifest()
            if manifest is None:
                state = _create(store, td, secret, now, ca_ttl)
            else:
                state = _load(store, manifest, td, secret)
        ca = cls(
            trust_domain=td,
            data_dir=root,
            store=store,
            state=state,
            passphrase=secret,
            clock=clock,
            ca_ttl=ca_ttl,
            refresh_hint=refresh_hint,
        )
        ca._write_bundle_pem(state, now)
        return ca

    # -- reading -------------------------------------------------------------

    @property
    def trust_domain(self) -> TrustDomain:
        return self._trust_domain

    @property
    def sequence(self) -> int:
        return self._state.sequence

    @property
    def x509_authorities(self) -> tuple[X509Authority, ...]:
        return self._state.x509.authorities

    @property
    def jwt_authorities(self) -> tuple[JWTAuthority, ...]:
        return self._state.jwt.authorities

    def active_x509_authority(self) -> X509Authority:
        return self._state.x509.active()

    def active_jwt_authority(self) -> JWTAuthority:
        return self._state.jwt.active()

    def now(self) -> datetime:
        return _aware(self._clock())

    # -- issuing -------------------------------------------------------------

    def issue_x509_svid(
        self,
        csr: bytes,
        spiffe_id: SpiffeID | str,
        *,
        ttl: timedelta = DEFAULT_X509_SVID_TTL,
    ) -> list[x509.Certificate]:
        """``[leaf, CA]`` for ``spiffe_id`` from the agent's CSR (PEM or DER)."""
        leaf = self.sign_x509_svid(csr, spiffe_id, ttl=ttl)
        return [leaf.certificate(), leaf.issuer]

    def sign_x509_svid(
        self,
        csr: bytes,
        spiffe_id: SpiffeID | str,
        *,
        ttl: timedelta = DEFAULT_X509_SVID_TTL,
    ) -> SignedLeaf:
        """:meth:`issue_x509_svid`'s leaf as signed: its DER, serial, validity and
        issuer, without parsing the certificate back (the registry only sends and
        records it)."""
        return sign_x509_svid(csr, spiffe_id, self._state.x509.active(), now=self.now(), ttl=ttl)

    def issue_serving_certificate(
        self,
        hosts: Iterable[str] = (),
        *,
        ttl: timedelta = DEFAULT_SERVING_TTL,
    ) -> IssuedCertificate:
        """The registry's own certificate (``spiffe://<td>/registry``) for ``hosts``
        plus localhost, 127.0.0.1 and ::1, with a fresh key."""
        return issue_serving_certificate(self._state.x509.active(), hosts, now=self.now(), ttl=ttl)

    def issue_operator_certificate(
        self,
        name: str,
        *,
        csr: bytes | None = None,
        ttl: timedelta = DEFAULT_OPERATOR_TTL,
    ) -> IssuedCertificate:
        """``spiffe://<td>/operator/<name>``: from ``csr`` if given, else with a fresh key."""
        return issue_operator_certificate(
            self._state.x509.active(), name, now=self.now(), csr=csr, ttl=ttl
        )

    def sign_jwt_svid(
        self,
        spiffe_id: SpiffeID | str,
        audience: str | Sequence[str],
        ttl: timedelta = DEFAULT_JWT_SVID_TTL,
    ) -> str:
        """An ES256 JWT-SVID signed by the active JWT authority."""
        return sign_jwt_svid(
            self._state.jwt.active(),
            spiffe_id,
            audience,
            now=self.now(),
            ttl=ttl,
            trust_domain=self._trust_domain.name,
        )

    # -- trust bundle --------------------------------------------------------

    def bundle(self) -> Bundle:
        """The trust bundle: every non-expired X.509 and JWT authority, any state."""
        state = self._state
        return build_bundle(
            self._trust_domain,
            state.x509,
            state.jwt,
            sequence=state.sequence,
            refresh_hint=self._refresh_hint,
            now=self.now(),
        )

    def trust_anchors(self) -> list[x509.Certificate]:
        now = self.now()
        return [a.certificate for a in self._state.x509.trusted(now)]

    def trust_anchors_pem(self) -> bytes:
        return trust_anchors_pem(self.trust_anchors())

    @property
    def bundle_path(self) -> Path:
        return self._data_dir / BUNDLE_FILE

    # -- rotation (the lifecycle; when to rotate is the caller's policy) -----

    def prepare_x509_authority(self, *, ttl: timedelta | None = None) -> X509Authority:
        """Make a new PREPARED X.509 authority, published in the bundle at once."""
        with self._lock:
            now = self.now()
            authority = new_x509_authority(
                self._trust_domain.name, now=now, ttl=self._ca_ttl if ttl is None else ttl
            )
            state = self._state
            new_set = state.x509.with_prepared(authority)
            self._commit(replace(state, x509=new_set), now, new_x509=authority)
            return authority

    def activate_x509_authority(self, authority_id: str) -> None:
        """PREPARED -> ACTIVE; the previously ACTIVE authority becomes RETIRED."""
        with self._lock:
            state = self._state
            self._commit(replace(state, x509=state.x509.with_activated(authority_id)), self.now())

    def prepare_jwt_authority(self, *, ttl: timedelta | None = None) -> JWTAuthority:
        with self._lock:
            now = self.now()
            authority = new_jwt_authority(now=now, ttl=self._ca_ttl if ttl is None else ttl)
            state = self._state
            self._commit(
                replace(state, jwt=state.jwt.with_prepared(authority)), now, new_jwt=authority
            )
            return authority

    def activate_jwt_authority(self, kid: str) -> None:
        with self._lock:
            state = self._state
            self._commit(replace(state, jwt=state.jwt.with_activated(kid)), self.now())

    def prune_expired(self) -> bool:
        """Drop expired RETIRED authorities (and their files); True if anything changed."""
        with self._lock:
            now = self.now()
            state = self._state
            x509_set, jwt_set = state.x509.without_expired(now), state.jwt.without_expired(now)
            if x509_set == state.x509 and jwt_set == state.jwt:
                return False
            gone_x509 = {a.id for a in state.x509.authorities} - {
                a.id for a in x509_set.authorities
            }
            gone_jwt = {a.kid for a in state.jwt.authorities} - {a.kid for a in jwt_set.authorities}
            self._commit(replace(state, x509=x509_set, jwt=jwt_set), now)
            for authority_id in gone_x509:
                self._store.remove_x509(authority_id)
            for kid in gone_jwt:
                self._store.remove_jwt(kid)
            return True

    def reload(self) -> bool:
        """Load the authorities from disk if another process changed them there
        (a replica that pulled the shared CA); True when something changed."""
        with self._lock, self._store.locked():
            manifest = self._store.read_manifest()
            if manifest is None or manifest.sequence == self._state.sequence:
                return False
            state = _load(self._store, manifest, self._trust_domain, self._passphrase)
            self._state = state
        self._write_bundle_pem(state, _aware(self._clock()))
        return True

    def _commit(
        self,
        state: _State,
        now: datetime,
        *,
        new_x509: X509Authority | None = None,
        new_jwt: JWTAuthority | None = None,
    ) -> None:
        # Files first, manifest last: a crash in between leaves an unused file.
        next_state = replace(state, sequence=state.sequence + 1)
        with self._store.locked():
            on_disk = self._store.read_manifest()
            if on_disk is not None and on_disk.sequence != self._state.sequence:
                raise CAStateError(
                    f"the CA on disk changed (sequence {on_disk.sequence}, this process has "
                    f"{self._state.sequence}); another process rotated it",
                    hint="restart this registry process to load the current CA",
                )
            if new_x509 is not None:
                self._store.write_x509(
                    new_x509.id, new_x509.private_key, new_x509.certificate, self._passphrase
                )
            if new_jwt is not None:
                self._store.write_jwt(new_jwt.kid, new_jwt.private_key, self._passphrase)
            self._store.write_manifest(
                _manifest(self._trust_domain, next_state, self._passphrase is not None)
            )
            self._state = next_state
        self._write_bundle_pem(next_state, now)

    def _write_bundle_pem(self, state: _State, now: datetime) -> None:
        anchors = [a.certificate for a in state.x509.trusted(now)]
        atomic_write(self.bundle_path, trust_anchors_pem(anchors), mode=0o644)

    def __repr__(self) -> str:
        return (
            f"CertificateAuthority(trust_domain={self._trust_domain.name!r}, "
            f"sequence={self._state.sequence})"
        )


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise CAStateError(
            "the CA clock returned a naive datetime", hint="return datetime.now(timezone.utc)"
        )
    return now.astimezone(UTC)


def _manifest(td: TrustDomain, state: _State, encrypted: bool) -> Manifest:
    return Manifest(
        trust_domain=td.name,
        sequence=state.sequence,
        encrypted=encrypted,
        x509=tuple(X509Entry(a.id, a.state) for a in state.x509.authorities),
        jwt=tuple(
            JWTEntry(a.kid, a.state, a.not_before, a.not_after) for a in state.jwt.authorities
        ),
    )


def _create(
    store: KeyStore, td: TrustDomain, passphrase: bytes | None, now: datetime, ttl: timedelta
) -> _State:
    x509_authority = new_x509_authority(td.name, now=now, ttl=ttl, state=AuthorityState.ACTIVE)
    jwt_authority = new_jwt_authority(now=now, ttl=ttl, state=AuthorityState.ACTIVE)
    state = _State(AuthoritySet((x509_authority,)), AuthoritySet((jwt_authority,)), sequence=1)
    store.write_x509(
        x509_authority.id, x509_authority.private_key, x509_authority.certificate, passphrase
    )
    store.write_jwt(jwt_authority.kid, jwt_authority.private_key, passphrase)
    store.write_manifest(_manifest(td, state, passphrase is not None))
    return state


def _load(store: KeyStore, manifest: Manifest, td: TrustDomain, passphrase: bytes | None) -> _State:
    where = store.manifest_path
    if manifest.trust_domain != td.name:
        raise CAStateError(
            f"the CA in {store.directory} is for trust domain {manifest.trust_domain!r}, "
            f"not {td.name!r}",
            hint="use the trust domain it was created with, or another data directory",
        )
    if manifest.encrypted and passphrase is None:
        raise CAKeyStoreError(
            f"the CA keys in {store.directory} are passphrase-encrypted "
            "and no passphrase was given",
            hint="give the CA passphrase (e.g. MESH_CA_PASSPHRASE)",
        )
    if not manifest.encrypted and passphrase is not None:
        raise CAKeyStoreError(
            f"a CA passphrase was given but the CA keys in {store.directory} are not encrypted",
            hint="start without a passphrase (keys cannot be encrypted after creation yet)",
        )
    x509_authorities = []
    for entry in manifest.x509:
        key, certificate = store.read_x509(entry.id, passphrase)
        authority = X509Authority(entry.id, entry.state, certificate, key)
        if authority.trust_domain != td.name:
            raise CAKeyStoreError(
                f"the CA certificate {entry.id} is for trust domain {authority.trust_domain!r}, "
                f"not {td.name!r}",
                hint="restore the ca/ directory from backup",
            )
        x509_authorities.append(authority)
    jwt_authorities = []
    for jwt_entry in manifest.jwt:
        jwt_key = store.read_jwt(jwt_entry.kid, passphrase)
        if ec_jwk_thumbprint(jwt_key.public_key()) != jwt_entry.kid:
            raise CAKeyStoreError(
                f"the JWT key file for kid {jwt_entry.kid} holds a different key",
                hint="restore the ca/ directory from backup",
            )
        jwt_authorities.append(
            JWTAuthority(
                jwt_entry.kid, jwt_entry.state, jwt_entry.not_before, jwt_entry.not_after, jwt_key
            )
        )
    try:
        state = _State(
            AuthoritySet(tuple(x509_authorities)),
            AuthoritySet(tuple(jwt_authorities)),
            manifest.sequence,
        )
        state.x509.active()
        state.jwt.active()
    except CAStateError as exc:
        raise CAKeyStoreError(
            f"the CA manifest {where} is inconsistent: {exc.message}",
            hint="restore the ca/ directory from backup",
        ) from None
    return state
