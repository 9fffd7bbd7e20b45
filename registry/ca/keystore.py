"""On-disk storage of the CA's authorities: keys, certificates and a manifest.

Layout, inside ``<data_dir>/ca/`` (mode 0700)::

    manifest.json            states and sequence (written atomically, mode 0600)
    x509-<id>.key.pem        P-256 private key, PKCS#8 PEM, mode 0600, optionally
                             passphrase-encrypted (BestAvailableEncryption)
    x509-<id>.crt.pem        the authority's self-signed certificate, mode 0644
    jwt-<kid>.key.pem        P-256 JWT signing key, PKCS#8 PEM, mode 0600
    .lock                    advisory lock held while the set is loaded or changed

``manifest.json``::

    {"format": 1, "trust_domain": "example.org", "sequence": 4, "encrypted": false,
     "x509": [{"id": "<hex>", "state": "active"}, ...],
     "jwt":  [{"kid": "<thumbprint>", "state": "active",
               "not_before": "<RFC 3339>", "not_after": "<RFC 3339>"}, ...]}

Key and certificate files are written before the manifest that names them, so
a crash leaves at worst an unreferenced file, never a manifest pointing at
nothing. A file with group/other permission bits is refused, not repaired.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.ca._internal.files import atomic_write, ensure_private_dir, read_private_file
from registry.ca.authority import AuthorityState
from registry.ca.errors import CAKeyStoreError

MANIFEST_FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key (the only algorithm grpcio's TLS and SPIFFE peers all accept)."""
    return ec.generate_private_key(ec.SECP256R1())


def encode_private_key(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def decode_private_key(
    data: bytes, passphrase: bytes | None, *, where: str
) -> ec.EllipticCurvePrivateKey:
    encrypted = b"ENCRYPTED PRIVATE KEY" in data
    if encrypted and not passphrase:
        raise CAKeyStoreError(
            f"the CA key {where} is encrypted and no passphrase was given",
            hint="give the CA passphrase (e.g. MESH_CA_PASSPHRASE)",
        )
    try:
        key = serialization.load_pem_private_key(data, passphrase if encrypted else None)
    except ValueError as exc:
        if encrypted:
            raise CAKeyStoreError(
                f"cannot decrypt the CA key {where}: wrong passphrase",
                hint="give the passphrase the CA was created with",
            ) from exc
        raise CAKeyStoreError(
            f"the CA key {where} is not a valid PEM private key",
            hint="restore it from backup",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CAKeyStoreError(
            f"the CA key {where} is not an ECDSA P-256 key", hint="restore it from backup"
        )
    return key


@dataclass(frozen=True)
class X509Entry:
    id: str
    state: AuthorityState


@dataclass(frozen=True)
class JWTEntry:
    kid: str
    state: AuthorityState
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class Manifest:
    trust_domain: str
    sequence: int
    encrypted: bool
    x509: tuple[X509Entry, ...]
    jwt: tuple[JWTEntry, ...]

    def to_json(self) -> bytes:
        doc = {
            "format": MANIFEST_FORMAT,
            "trust_domain": self.trust_domain,
            "sequence": self.sequence,
            "encrypted": self.encrypted,
            "x509": [{"id": e.id, "state": e.state.value} for e in self.x509],
            "jwt": [
                {
                    "kid": e.kid,
                    "state": e.state.value,
                    "not_before": e.not_before.isoformat(),
                    "not_after": e.not_after.isoformat(),
                }
                for e in self.jwt
            ],
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> Manifest:
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
                raise ValueError("unknown manifest format")
            x509_entries = tuple(
                X509Entry(id=_name(e["id"]), state=AuthorityState(e["state"]))
                for e in _list(doc["x509"])
            )
            jwt_entries = tuple(
                JWTEntry(
                    kid=_name(e["kid"]),
                    state=AuthorityState(e["state"]),
                    not_before=_time(e["not_before"]),
                    not_after=_time(e["not_after"]),
                )
                for e in _list(doc["jwt"])
            )
            sequence = doc["sequence"]
            trust_domain = doc["trust_domain"]
            encrypted = doc["encrypted"]
            if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
                raise ValueError("bad sequence")
            if not isinstance(trust_domain, str) or not isinstance(encrypted, bool):
                raise ValueError("bad trust domain or encryption flag")
        except (ValueError, KeyError, TypeError) as exc:
            raise CAKeyStoreError(
                f"the CA manifest {where} is corrupt ({exc})",
                hint="restore the ca/ directory from backup",
            ) from exc
        return cls(trust_domain, sequence, encrypted, x509_entries, jwt_entries)


def _list(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError("expected a list of objects")
    return value


def _name(value: Any) -> str:
    # Names become file names: only a safe alphabet, no path separators.
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"bad authority id {value!r}")
    return value


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("expected a timestamp")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp without time zone")
    return parsed


class KeyStore:
    """Files of one CA directory. Not thread-safe: the facade serialises access."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    def prepare(self) -> None:
        ensure_private_dir(self.directory)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive advisory lock: two processes never create or rotate at once."""
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def read_manifest(self) -> Manifest | None:
        if not self.manifest_path.exists():
            return None
        data = read_private_file(self.manifest_path)
        return Manifest.from_json(data, where=str(self.manifest_path))

    def write_manifest(self, manifest: Manifest) -> None:
        atomic_write(self.manifest_path, manifest.to_json(), mode=0o600)

    def write_x509(
        self,
        authority_id: str,
        key: ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        passphrase: bytes | None,
    ) -> None:
        _name(authority_id)
        atomic_write(self._x509_key(authority_id), encode_private_key(key, passphrase), mode=0o600)
        atomic_write(
            self._x509_cert(authority_id),
            certificate.public_bytes(serialization.Encoding.PEM),
            mode=0o644,
        )

    def read_x509(
        self, authority_id: str, passphrase: bytes | None
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key_path, cert_path = self._x509_key(authority_id), self._x509_cert(authority_id)
        key = decode_private_key(read_private_file(key_path), passphrase, where=str(key_path))
        try:
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except FileNotFoundError as exc:
            raise CAKeyStoreError(
                f"the CA certificate {cert_path} is missing", hint="restore it from backup"
            ) from exc
        except ValueError as exc:
            raise CAKeyStoreError(
                f"the CA certificate {cert_path} is corrupt", hint="restore it from backup"
            ) from exc
        if certificate.public_key() != key.public_key():
            raise CAKeyStoreError(
                f"the CA certificate {cert_path} does not match its key {key_path}",
                hint="restore both files from the same backup",
            )
        return key, certificate

    def write_jwt(
        self, kid: str, key: ec.EllipticCurvePrivateKey, passphrase: bytes | None
    ) -> None:
        _name(kid)
        atomic_write(self._jwt_key(kid), encode_private_key(key, passphrase), mode=0o600)

    def read_jwt(self, kid: str, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
        path = self._jwt_key(kid)
        return decode_private_key(read_private_file(path), passphrase, where=str(path))

    def remove_x509(self, authority_id: str) -> None:
        for path in (self._x509_key(authority_id), self._x509_cert(authority_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def remove_jwt(self, kid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._jwt_key(kid).unlink()

    def _x509_key(self, authority_id: str) -> Path:
        return self.directory / f"x509-{_name(authority_id)}.key.pem"

    def _x509_cert(self, authority_id: str) -> Path:
        return self.directory / f"x509-{_name(authority_id)}.crt.pem"

    def _jwt_key(self, kid: str) -> Path:
        return self.directory / f"jwt-{_name(kid)}.key.pem"
