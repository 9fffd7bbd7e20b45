"""Reporter and enforcer credentials, created by an operator on the registry host.

A reporter (sends trust signals) or an enforcer (watches every agent's ring) is
a principal record of that kind plus a client certificate from the registry's
CA whose one URI SAN is ``spiffe://<td>/reporter/<name>`` or
``spiffe://<td>/enforcer/<name>``, exactly like the operator credential. The
key is made here and written, with the certificate and the trust bundle, to
an output directory (0700, key 0600) that is handed to the reporter or
enforcer. Revoking the principal record refuses every certificate of it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.errors import InvalidIdentifier, MeshError
from mesh.spiffeid import SpiffeID
from registry.ca._internal.leaf import build_leaf, check_ttl
from registry.ca.serving import IssuedCertificate

KINDS = ("reporter", "enforcer")
DEFAULT_TTL = timedelta(days=30)
MAX_TTL = timedelta(days=90)
BUNDLE_FILE = "bundle.pem"


@dataclass(frozen=True)
class ServiceCredential:
    kind: str
    name: str
    spiffe_id: str
    issued: IssuedCertificate


def issue_principal(
    ca: Any, store: Any, kind: str, name: str, *, ttl: timedelta = DEFAULT_TTL, renew: bool = False
) -> ServiceCredential:
    """Record principal ``kind``/``name`` (or, with ``renew``, keep the existing one)
    and issue its client certificate with a fresh key."""
    if kind not in KINDS:
        raise MeshError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    try:
        sid = SpiffeID.from_segments(ca.trust_domain.name, kind, name)
    except InvalidIdentifier as exc:
        raise MeshError(
            f"bad {kind} name {name[:80]!r}: {exc.message}",
            hint="use letters, digits, '.', '-' and '_' only",
        ) from None
    lifetime = check_ttl(ttl, MAX_TTL)
    key = ec.generate_private_key(ec.SECP256R1())
    authority = ca.active_x509_authority()
    leaf = build_leaf(key.public_key(), issuer=authority, uri=str(sid), ttl=lifetime, now=ca.now())
    issued = IssuedCertificate((leaf, authority.certificate), key)
    credential = hashlib.sha256(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).hexdigest()
    with store.transaction() as tx:
        existing = tx.principals.find_by_name(kind, name)
        if existing is not None and not renew:
            raise MeshError(
                f"{kind} {name!r} already exists",
                hint="pick another name, or pass --renew to issue it a new certificate",
            )
        if existing is not None and existing.revoked_at is not None:
            raise MeshError(f"{kind} {name!r} was revoked; create one under a new name")
        if existing is None:
            tx.principals.create(kind=kind, name=name, roles=[kind], credential_hash=credential)
        tx.audit.append("operator:local", "principal.create", str(sid), {"roles": [kind]})
    return ServiceCredential(kind, name, str(sid), issued)


def write_credential(credential: ServiceCredential, out: Path, bundle_pem: bytes) -> list[Path]:
    """Write ``<kind>.pem``, ``<kind>.key`` (0600) and ``bundle.pem`` into ``out`` (0700)."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    cert = out / f"{credential.kind}.pem"
    key = out / f"{credential.kind}.key"
    bundle = out / BUNDLE_FILE
    _write(key, credential.issued.private_key_pem(), 0o600)
    _write(cert, credential.issued.chain_pem(), 0o644)
    _write(bundle, bundle_pem, 0o644)
    return [cert, key, bundle]


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
