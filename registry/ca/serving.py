"""Certificates for the registry itself and for operators.

* Serving certificate: the registry's own SVID ``spiffe://<td>/registry`` with
  DNS/IP SANs for its listen addresses, because grpcio checks the server's
  host name. The CA makes the key (it is the registry's own key), so it is
  returned with the chain. The server renews it before it expires.
* Operator certificate: ``spiffe://<td>/operator/<name>``, for an admin client
  that authenticates with mTLS. Either from the operator's CSR (the key stays
  with the operator) or with a key made here, for bootstrap.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.errors import InvalidIdentifier
from mesh.spiffeid import SpiffeID
from registry.ca._internal.leaf import build_leaf, check_ttl
from registry.ca.authority import X509Authority
from registry.ca.errors import CertificateRequestRejected
from registry.ca.x509svid import authority_trust_domain, validate_csr

REGISTRY_SEGMENT = "registry"
OPERATOR_SEGMENT = "operator"
DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
DEFAULT_SERVING_TTL = timedelta(hours=24)
DEFAULT_OPERATOR_TTL = timedelta(hours=8)
MAX_SERVING_TTL = timedelta(days=30)
MAX_OPERATOR_TTL = timedelta(days=30)
MAX_HOSTS = 64

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate chain ``[leaf, CA]`` and, when the CA made the key, that key."""

    chain: tuple[x509.Certificate, ...]
    private_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def private_key_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM of the key (for grpcio credentials); never log it."""
        if self.private_key is None:
            raise CertificateRequestRejected(
                "this certificate was issued from a CSR: its key is with the requester"
            )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def parse_hosts(
    hosts: Iterable[str],
) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """Split host names into DNS names and IP addresses, checking each; de-duplicated."""
    if isinstance(hosts, str | bytes):
        raise CertificateRequestRejected(
            "hosts is a list of names, not one string", hint="pass e.g. ['localhost']"
        )
    dns: list[str] = []
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for host in hosts:
        if not isinstance(host, str) or not host:
            raise CertificateRequestRejected(
                f"a host name must be a non-empty string, got {host!r}",
            )
        candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            ip = ipaddress.ip_address(candidate)
        except ValueError:
            name = _dns_name(host)
            if name not in dns:
                dns.append(name)
        else:
            if ip not in ips:
                ips.append(ip)
    if len(dns) + len(ips) > MAX_HOSTS:
        raise CertificateRequestRejected(
            f"{len(dns) + len(ips)} host names; the limit is {MAX_HOSTS}",
            hint="list only the addresses clients dial",
        )
    return dns, ips


def _dns_name(host: str) -> str:
    name = host.lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise CertificateRequestRejected(
            f"{host[:80]!r} is neither an IP address nor a valid DNS host name",
            hint="use letters, digits and '-' in dot-separated labels (no wildcards)",
        )
    return name


def issue_serving_certificate(
    authority: X509Authority,
    hosts: Iterable[str] = DEFAULT_HOSTS,
    *,
    now: datetime,
    ttl: timedelta = DEFAULT_SERVING_TTL,
    include_defaults: bool = True,
) -> IssuedCertificate:
    """The registry's serving certificate, with a fresh P-256 key.

    ``include_defaults`` adds ``localhost``, ``127.0.0.1`` and ``::1`` so local
    clients can always connect.
    """
    lifetime = check_ttl(ttl, MAX_SERVING_TTL)
    if isinstance(hosts, str | bytes):
        raise CertificateRequestRejected(
            "hosts is a list of names, not one string", hint="pass e.g. ['localhost']"
        )
    all_hosts = [*hosts, *(DEFAULT_HOSTS if include_defaults else ())]
    dns, ips = parse_hosts(all_hosts)
    if not dns and not ips:
        raise CertificateRequestRejected(
            "a serving certificate needs at least one host name",
            hint="pass the addresses clients dial, e.g. ['localhost']",
        )
    sid = SpiffeID.from_segments(authority_trust_domain(authority), REGISTRY_SEGMENT)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = build_leaf(
        key.public_key(),
        issuer=authority,
        uri=str(sid),
        dns_names=dns,
        ip_addresses=ips,
        ttl=lifetime,
        now=now,
    )
    return IssuedCertificate((leaf, authority.certificate), key)


def operator_spiffe_id(trust_domain: str, name: str) -> SpiffeID:
    """``spiffe://<td>/operator/<name>``; ``name`` is one SPIFFE path segment."""
    try:
        return SpiffeID.from_segments(trust_domain, OPERATOR_SEGMENT, name)
    except InvalidIdentifier as exc:
        raise CertificateRequestRejected(
            f"bad operator name {name[:80]!r}: {exc.message}",
            hint="use letters, digits, '.', '-' and '_' only",
        ) from None


def issue_operator_certificate(
    authority: X509Authority,
    name: str,
    *,
    now: datetime,
    csr: bytes | None = None,
    ttl: timedelta = DEFAULT_OPERATOR_TTL,
) -> IssuedCertificate:
    """An operator client certificate; from ``csr`` if given, else with a fresh key."""
    lifetime = check_ttl(ttl, MAX_OPERATOR_TTL)
    sid = operator_spiffe_id(authority_trust_domain(authority), name)
    key: ec.EllipticCurvePrivateKey | None = None
    if csr is not None:
        public_key = validate_csr(csr, sid)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        public_key = key.public_key()
    leaf = build_leaf(public_key, issuer=authority, uri=str(sid), ttl=lifetime, now=now)
    return IssuedCertificate((leaf, authority.certificate), key)
