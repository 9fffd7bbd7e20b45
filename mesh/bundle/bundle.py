"""The SPIFFE trust bundle of one trust domain (SPIFFE Trust Domain and Bundle spec).

On the wire a bundle is a JWK Set: ``keys`` plus ``spiffe_sequence`` and
``spiffe_refresh_hint``. X.509 authorities are JWKs with ``use`` =
``x509-svid`` and the CA certificate in ``x5c``; JWT authorities have ``use`` =
``jwt-svid`` and a ``kid``. The trust domain is not in the document: it is
always supplied by whoever fetched the bundle, so a bundle can never claim a
trust domain it was not asked for.

Reading follows the consumer rules of the specs exactly: a JWK with a missing
or unknown ``use`` or an unknown ``kty`` is ignored, as is an ``x509-svid``
entry without ``x5c``; extra ``x5c`` values after the first are ignored.
Everything else that is malformed is an error, because a half-read bundle
silently drops authorities (``skipped`` lists what was ignored, and why).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mesh.bundle._jwk import (
    JWTAuthority,
    UnsupportedKey,
    check_jwt_authority_key,
    jwt_key_from_jwk,
    public_jwk,
)
from mesh.bundle.errors import BundleError
from mesh.errors import InvalidIdentifier
from mesh.spiffeid import TrustDomain

USE_X509_SVID = "x509-svid"
USE_JWT_SVID = "jwt-svid"
_KNOWN_KTY = frozenset({"EC", "RSA", "OKP"})
_MAX_SEQUENCE = 2**64 - 1
# A bundle is a handful of certificates; anything far larger is not a bundle.
MAX_BUNDLE_BYTES = 4 * 1024 * 1024


class Bundle:
    """The X.509 and JWT authorities of one trust domain, with its sequence number.

    Immutable: the ``with_*`` methods return a new bundle.
    """

    __slots__ = ("_jwt", "_x509", "refresh_hint", "sequence", "skipped", "trust_domain")

    trust_domain: TrustDomain
    sequence: int
    refresh_hint: int | None
    skipped: tuple[str, ...]

    def __init__(
        self,
        trust_domain: TrustDomain | str,
        x509_authorities: Iterable[x509.Certificate] = (),
        jwt_authorities: Mapping[str, JWTAuthority] | None = None,
        sequence: int = 0,
        refresh_hint: int | None = None,
        *,
        skipped: Iterable[str] = (),
    ) -> None:
        try:
            self.trust_domain = (
                trust_domain
                if isinstance(trust_domain, TrustDomain)
                else TrustDomain.parse(trust_domain)
            )
        except InvalidIdentifier as exc:
            raise BundleError(f"bad bundle trust domain: {exc.message}", hint=exc.hint) from None
        self.sequence = _check_sequence(sequence)
        self.refresh_hint = _check_refresh_hint(refresh_hint)
        certs: list[x509.Certificate] = []
        seen: set[bytes] = set()
        for index, cert in enumerate(x509_authorities):
            if not isinstance(cert, x509.Certificate):
                raise BundleError(
                    f"X.509 authority #{index} is a {type(cert).__name__}, not a certificate"
                )
            public_jwk(cert.public_key(), f"X.509 authority #{index}")
            der = cert.public_bytes(serialization.Encoding.DER)
            if der not in seen:  # the same CA twice adds nothing
                seen.add(der)
                certs.append(cert)
        self._x509: tuple[x509.Certificate, ...] = tuple(certs)
        jwt: dict[str, JWTAuthority] = {}
        for kid, key in (jwt_authorities or {}).items():
            if not isinstance(kid, str) or not kid:
                raise BundleError("a JWT authority needs a non-empty string key id (kid)")
            jwt[kid] = check_jwt_authority_key(key, f"JWT authority {kid!r}")
        self._jwt: Mapping[str, JWTAuthority] = MappingProxyType(jwt)
        self.skipped = tuple(skipped)

    # --- views ---------------------------------------------------------------------------------

    @property
    def x509_authorities(self) -> tuple[x509.Certificate, ...]:
        return self._x509

    @property
    def jwt_authorities(self) -> Mapping[str, JWTAuthority]:
        return self._jwt

    def jwt_authority(self, kid: str) -> JWTAuthority | None:
        return self._jwt.get(kid)

    def has_x509_authority(self, cert: x509.Certificate) -> bool:
        return any(cert == authority for authority in self._x509)

    @property
    def empty(self) -> bool:
        """True when the bundle holds no authority: every SVID of the trust domain is invalid."""
        return not self._x509 and not self._jwt

    # --- derived bundles -----------------------------------------------------------------------

    def with_sequence(self, sequence: int) -> Bundle:
        return Bundle(self.trust_domain, self._x509, self._jwt, sequence, self.refresh_hint)

    def with_refresh_hint(self, refresh_hint: int | None) -> Bundle:
        return Bundle(self.trust_domain, self._x509, self._jwt, self.sequence, refresh_hint)

    # --- wire format ---------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes | str, trust_domain: TrustDomain | str) -> Bundle:
        """Read a SPIFFE bundle document (JWK Set) for ``trust_domain``."""
        if isinstance(data, bytes | bytearray):
            _check_size(len(data))
            try:
                text = bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                raise BundleError("the bundle is not UTF-8 text") from None
        elif isinstance(data, str):
            text = data
            _check_size(len(text))
        else:
            raise BundleError(f"a bundle is bytes or str, got {type(data).__name__}")
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicate_members)
        except _DuplicateMember as exc:
            raise BundleError(f"the bundle repeats the JSON member {exc.args[0]!r}") from None
        except (ValueError, RecursionError) as exc:
            raise BundleError(
                f"the bundle is not valid JSON: {exc}",
                hint="a SPIFFE bundle is a JWK Set: {\"keys\": [...], \"spiffe_sequence\": N}",
            ) from None
        if not isinstance(doc, dict):
            raise BundleError(f"the bundle is a JSON {_json_type(doc)}, not an object (a JWK Set)")
        if "keys" not in doc:
            raise BundleError("the bundle has no 'keys' member", hint="a JWK Set always has 'keys'")
        keys = doc["keys"]
        if not isinstance(keys, list):
            raise BundleError(f"the bundle's 'keys' is a JSON {_json_type(keys)}, not an array")
        sequence = doc.get("spiffe_sequence", 0)
        refresh_hint = doc.get("spiffe_refresh_hint")

        certs: list[x509.Certificate] = []
        jwt: dict[str, JWTAuthority] = {}
        skipped: list[str] = []
        for index, jwk in enumerate(keys):
            where = f"keys[{index}]"
            if not isinstance(jwk, dict):
                raise BundleError(f"{where} is a JSON {_json_type(jwk)}, not a JWK object")
            use = jwk.get("use")
            if use not in (USE_X509_SVID, USE_JWT_SVID):
                # Trust Domain and Bundle spec 4.2.2: missing or unknown use -> ignore the JWK.
                skipped.append(f"{where}: use {use!r} is not x509-svid or jwt-svid")
                continue
            kty = jwk.get("kty")
            if not isinstance(kty, str) or not kty:
                raise BundleError(f"{where} has no 'kty'", hint="every JWK names its key type")
            if kty not in _KNOWN_KTY:
                # Spec 4.2.1: unknown key type -> ignore the JWK.
                skipped.append(f"{where}: unknown key type {kty!r}")
                continue
            if use == USE_X509_SVID:
                cert = _x509_authority(jwk, where)
                if cert is None:
                    skipped.append(f"{where}: x509-svid entry without x5c")
                else:
                    certs.append(cert)
                continue
            kid = jwk.get("kid")
            if not isinstance(kid, str) or not kid:
                raise BundleError(
                    f"{where} is a jwt-svid key without a 'kid'",
                    hint="JWT-SVID authorities must carry a non-empty kid",
                )
            if kid in jwt:
                raise BundleError(f"{where} repeats the JWT authority kid {kid!r}")
            try:
                jwt[kid] = jwt_key_from_jwk(jwk, where)
            except UnsupportedKey as exc:
                skipped.append(f"{where}: {exc} cannot verify JWT-SVIDs")
        return cls(trust_domain, certs, jwt, sequence, refresh_hint, skipped=skipped)

    def marshal(self) -> bytes:
        """The bundle as a SPIFFE bundle document (compact JSON, deterministic)."""
        keys: list[dict[str, Any]] = []
        for cert in self._x509:
            entry: dict[str, Any] = {"use": USE_X509_SVID}
            entry.update(public_jwk(cert.public_key(), "X.509 authority"))
            der = cert.public_bytes(serialization.Encoding.DER)
            entry["x5c"] = [base64.b64encode(der).decode("ascii")]
            keys.append(entry)
        for kid, key in self._jwt.items():
            entry = {"use": USE_JWT_SVID, "kid": kid}
            entry.update(public_jwk(key, f"JWT authority {kid!r}"))
            keys.append(entry)
        doc: dict[str, Any] = {"keys": keys, "spiffe_sequence": self.sequence}
        if self.refresh_hint is not None:
            doc["spiffe_refresh_hint"] = self.refresh_hint
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    def x509_pem(self) -> bytes:
        """The X.509 authorities as concatenated PEM (for TLS libraries and ``bundle.0.pem``)."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self._x509)

    @classmethod
    def from_x509_pem(
        cls, trust_domain: TrustDomain | str, pem: bytes | str, *, sequence: int = 0
    ) -> Bundle:
        """A bundle of only X.509 authorities, read from concatenated PEM certificates."""
        raw = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
        if b"-----BEGIN CERTIFICATE-----" not in raw:
            raise BundleError(
                "no PEM certificate found", hint="expected '-----BEGIN CERTIFICATE-----' blocks"
            )
        try:
            certs = x509.load_pem_x509_certificates(raw)
        except ValueError as exc:
            raise BundleError(f"the PEM authorities do not parse: {exc}") from None
        return cls(trust_domain, certs, None, sequence)

    # --- value semantics -----------------------------------------------------------------------

    def _key(self) -> tuple[object, ...]:
        return (
            self.trust_domain,
            tuple(c.public_bytes(serialization.Encoding.DER) for c in self._x509),
            frozenset((kid, _spki(key)) for kid, key in self._jwt.items()),
            self.sequence,
            self.refresh_hint,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bundle):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Bundle(trust_domain={self.trust_domain.name!r}, x509_authorities={len(self._x509)}, "
            f"jwt_authorities={sorted(self._jwt)}, sequence={self.sequence}, "
            f"refresh_hint={self.refresh_hint})"
        )


def _spki(key: JWTAuthority) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _x509_authority(jwk: dict[str, Any], where: str) -> x509.Certificate | None:
    x5c = jwk.get("x5c")
    if x5c is None or x5c == []:
        return None  # X509-SVID spec 6.2: ignore the entry
    if not isinstance(x5c, list):
        raise BundleError(f"{where}.x5c is a JSON {_json_type(x5c)}, not an array")
    first = x5c[0]  # X509-SVID spec 6.2: values after the first are ignored
    if not isinstance(first, str):
        raise BundleError(f"{where}.x5c[0] is a JSON {_json_type(first)}, not a base64 string")
    try:
        der = base64.b64decode(first, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(
            f"{where}.x5c[0] is not valid base64",
            hint="x5c holds standard (not URL-safe) base64 of the DER certificate",
        ) from None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise BundleError(f"{where}.x5c[0] is not a DER X.509 certificate: {exc}") from None
    try:
        published = public_jwk(cert.public_key(), where)
    except (BundleError, ValueError) as exc:
        raise BundleError(f"{where}.x5c[0] has an unusable public key: {exc}") from None
    # The JWK's own key members, when present, must describe the certificate's key:
    # otherwise two readers of one bundle could trust different keys.
    for member, value in published.items():
        if member in jwk and jwk[member] != value:
            raise BundleError(
                f"{where}: '{member}' does not match the public key of the x5c certificate"
            )
    return cert


def _check_size(size: int) -> None:
    if size > MAX_BUNDLE_BYTES:
        raise BundleError(f"the bundle is {size} bytes long; the limit is {MAX_BUNDLE_BYTES}")


def _check_sequence(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BundleError(f"spiffe_sequence must be an integer, got {_json_type(value)}")
    if not 0 <= value <= _MAX_SEQUENCE:
        raise BundleError(f"spiffe_sequence {value} is outside 0..2^64-1")
    return value


def _check_refresh_hint(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BundleError(
            f"spiffe_refresh_hint must be an integer number of seconds, got {_json_type(value)}"
        )
    if value < 0:
        raise BundleError(f"spiffe_refresh_hint {value} is negative; it is a number of seconds")
    return value


class _DuplicateMember(Exception):
    pass


def _no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate JSON members are read differently by different parsers: refuse them.
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise _DuplicateMember(name)
        result[name] = value
    return result


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
