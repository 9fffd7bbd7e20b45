"""Signing authorities and their lifecycle: PREPARED -> ACTIVE -> RETIRED.

There are two independent sets, as in SPIRE: X.509 authorities (a P-256 key
and a self-signed CA certificate) and JWT authorities (a P-256 key with a
``kid``). In each set exactly one authority is ACTIVE and signs; a PREPARED
one is already published in the trust bundle so peers trust it before it
signs anything; a RETIRED one no longer signs but stays in the bundle until
it expires, so SVIDs it issued keep verifying.

Everything here is pure: keys are generated, nothing is read or written.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Generic, Protocol, Self, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from registry.ca._internal.der import LeafSigner
from registry.ca.errors import CAStateError

DEFAULT_CA_TTL = timedelta(days=365)
# A CA certificate is valid from slightly before it was made, so peers whose
# clocks lag a little do not reject it.
CA_BACKDATE = timedelta(minutes=1)


class AuthorityState(StrEnum):
    PREPARED = "prepared"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class X509Authority:
    """A CA key and its self-signed certificate."""

    id: str
    state: AuthorityState
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False, compare=False)

    # Cached: read on every issuance, and the certificate never changes.
    @functools.cached_property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @functools.cached_property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @functools.cached_property
    def subject_key_identifier(self) -> bytes:
        return self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest

    @functools.cached_property
    def leaf_signer(self) -> LeafSigner:
        """Signs this authority's URI-SAN leaves without CertificateBuilder (see _internal.der)."""
        return LeafSigner(self.certificate, self.private_key, self.subject_key_identifier)

    @functools.cached_property
    def trust_domain(self) -> str:
        """The trust domain named by the CA certificate's URI SAN ``spiffe://<td>``."""
        san = self.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
        prefix = "spiffe://"
        if len(uris) != 1 or not uris[0].startswith(prefix) or "/" in uris[0][len(prefix) :]:
            raise CAStateError(
                f"CA certificate {self.id} does not name its trust domain as spiffe://<td>",
                hint="restore the CA certificate from backup",
            )
        return uris[0][len(prefix) :]

    def with_state(self, state: AuthorityState) -> X509Authority:
        return replace(self, state=state)


@dataclass(frozen=True)
class JWTAuthority:
    """A JWT-SVID signing key, named by ``kid`` (its RFC 7638 thumbprint)."""

    kid: str
    state: AuthorityState
    not_before: datetime
    not_after: datetime
    private_key: ec.EllipticCurvePrivateKey = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.kid

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    def with_state(self, state: AuthorityState) -> JWTAuthority:
        return replace(self, state=state)


class _Lifecycle(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def state(self) -> AuthorityState: ...

    @property
    def not_after(self) -> datetime: ...

    def with_state(self, state: AuthorityState) -> Self: ...


A = TypeVar("A", bound=_Lifecycle)


@dataclass(frozen=True)
class AuthoritySet(Generic[A]):
    """An immutable set of authorities; transitions return a new set."""

    authorities: tuple[A, ...] = ()

    def __post_init__(self) -> None:
        ids = [a.id for a in self.authorities]
        if len(set(ids)) != len(ids):
            raise CAStateError("two authorities share an id", hint="restore the CA manifest")
        for state in (AuthorityState.ACTIVE, AuthorityState.PREPARED):
            if sum(1 for a in self.authorities if a.state is state) > 1:
                raise CAStateError(
                    f"more than one {state.value} authority",
                    hint="restore the CA manifest from backup",
                )

    def active(self) -> A:
        for authority in self.authorities:
            if authority.state is AuthorityState.ACTIVE:
                return authority
        raise CAStateError(
            "no active signing authority", hint="activate the prepared authority (rotation)"
        )

    def prepared(self) -> A | None:
        for authority in self.authorities:
            if authority.state is AuthorityState.PREPARED:
                return authority
        return None

    def get(self, authority_id: str) -> A:
        for authority in self.authorities:
            if authority.id == authority_id:
                return authority
        raise CAStateError(f"no authority with id {authority_id!r}", hint="list the authorities")

    def trusted(self, now: datetime) -> tuple[A, ...]:
        """The authorities a peer must trust now: every state, not yet expired."""
        return tuple(a for a in self.authorities if a.not_after > now)

    def with_prepared(self, authority: A) -> AuthoritySet[A]:
        if authority.state is not AuthorityState.PREPARED:
            raise CAStateError("a new authority enters the set as prepared")
        if self.prepared() is not None:
            raise CAStateError(
                "an authority is already prepared",
                hint="activate or discard the prepared authority first",
            )
        return AuthoritySet((*self.authorities, authority))

    def with_activated(self, authority_id: str) -> AuthoritySet[A]:
        """Activate a PREPARED authority; the previous ACTIVE one becomes RETIRED."""
        target = self.get(authority_id)
        if target.state is not AuthorityState.PREPARED:
            raise CAStateError(
                f"authority {authority_id} is {target.state.value}, not prepared",
                hint="only a prepared authority can be activated",
            )
        updated: list[A] = []
        for a in self.authorities:
            if a.id == authority_id:
                updated.append(a.with_state(AuthorityState.ACTIVE))
            elif a.state is AuthorityState.ACTIVE:
                updated.append(a.with_state(AuthorityState.RETIRED))
            else:
                updated.append(a)
        return AuthoritySet(tuple(updated))

    def without_expired(self, now: datetime) -> AuthoritySet[A]:
        """Drop RETIRED authorities that have expired (they verify nothing any more)."""
        return AuthoritySet(
            tuple(
                a
                for a in self.authorities
                if a.state is not AuthorityState.RETIRED or a.not_after > now
            )
        )


def new_authority_id() -> str:
    return secrets.token_hex(16)


def create_ca_certificate(
    key: ec.EllipticCurvePrivateKey,
    trust_domain: str,
    *,
    authority_id: str,
    now: datetime,
    ttl: timedelta = DEFAULT_CA_TTL,
) -> x509.Certificate:
    """A self-signed X.509 CA certificate for ``trust_domain``, as SPIRE makes them.

    CA=true with path length 0 (this CA signs only leaves), keyCertSign and
    cRLSign (critical), the trust domain's SPIFFE ID as URI SAN, SKI = AKI.
    The subject carries the authority id, so successive CAs have distinct names.
    """
    if ttl <= timedelta(0):
        raise CAStateError("a CA needs a positive lifetime", hint="pass a positive CA TTL")
    public_key = key.public_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trustmesh"),
            x509.NameAttribute(NameOID.COMMON_NAME, "trustmesh CA"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, authority_id),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CA_BACKDATE)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
            ),
            critical=False,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def new_x509_authority(
    trust_domain: str,
    *,
    now: datetime,
    ttl: timedelta = DEFAULT_CA_TTL,
    state: AuthorityState = AuthorityState.PREPARED,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> X509Authority:
    key = key or ec.generate_private_key(ec.SECP256R1())
    authority_id = new_authority_id()
    certificate = create_ca_certificate(
        key, trust_domain, authority_id=authority_id, now=now, ttl=ttl
    )
    return X509Authority(authority_id, state, certificate, key)


def ec_jwk_thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint of a P-256 public key (the JWT authority's ``kid``)."""
    numbers = public_key.public_numbers()
    canonical = json.dumps(
        {
            "crv": "P-256",
            "kty": "EC",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        },
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64(hashlib.sha256(canonical.encode("ascii")).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_jwt_authority(
    *,
    now: datetime,
    ttl: timedelta = DEFAULT_CA_TTL,
    state: AuthorityState = AuthorityState.PREPARED,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> JWTAuthority:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return JWTAuthority(
        kid=ec_jwk_thumbprint(key.public_key()),
        state=state,
        not_before=now - CA_BACKDATE,
        not_after=now + ttl,
        private_key=key,
    )
