"""SPIFFE trust domains: the authority part of every SPIFFE ID (SPIFFE-ID spec 2.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mesh.errors import InvalidIdentifier
from mesh.spiffeid._chars import (
    MAX_TRUST_DOMAIN_BYTES,
    SCHEME_PREFIX,
    TRUST_DOMAIN_CHARS,
    shown,
)

if TYPE_CHECKING:
    from mesh.spiffeid.id import SpiffeID


@dataclass(frozen=True, order=True, slots=True)
class TrustDomain:
    """A validated trust domain name such as ``mesh.local``.

    Build it with :meth:`parse`; the constructor validates too, so every
    instance that exists is valid.
    """

    name: str

    def __post_init__(self) -> None:
        check_trust_domain_name(self.name)

    @classmethod
    def parse(cls, id_or_name: str) -> TrustDomain:
        """Parse a bare name (``mesh.local``) or take it from a SPIFFE ID (``spiffe://mesh.local/x``)."""
        if not isinstance(id_or_name, str):
            raise InvalidIdentifier(
                f"a trust domain is a string, got {type(id_or_name).__name__}"
            )
        # A name can never contain ":/", so its presence means the caller gave an ID.
        if ":/" in id_or_name:
            from mesh.spiffeid.id import SpiffeID

            return SpiffeID.parse(id_or_name).trust_domain
        return cls(id_or_name)

    def id(self) -> SpiffeID:
        """The SPIFFE ID of the trust domain itself (no path): ``spiffe://<name>``."""
        from mesh.spiffeid.id import SpiffeID

        return SpiffeID(self, "")

    def id_string(self) -> str:
        """``spiffe://<name>``."""
        return SCHEME_PREFIX + self.name

    def __str__(self) -> str:
        return self.name


def check_trust_domain_name(name: str) -> None:
    """Raise :class:`InvalidIdentifier` naming the first rule ``name`` breaks."""
    if not isinstance(name, str):
        raise InvalidIdentifier(f"a trust domain is a string, got {type(name).__name__}")
    if not name:
        raise InvalidIdentifier(
            "the trust domain is empty",
            hint="a trust domain is a name such as mesh.local",
        )
    if len(name.encode("utf-8")) > MAX_TRUST_DOMAIN_BYTES:
        raise InvalidIdentifier(
            f"the trust domain is {len(name.encode('utf-8'))} bytes long; "
            f"the limit is {MAX_TRUST_DOMAIN_BYTES}",
        )
    bad = set(name) - TRUST_DOMAIN_CHARS
    if not bad:
        return
    if "[" in bad or "]" in bad:
        raise InvalidIdentifier(
            f"the trust domain {shown(name)} is an IPv6 address literal",
            hint="IPv6 addresses are not valid trust domain names; use a name",
        )
    if "@" in bad:
        raise InvalidIdentifier(
            f"the trust domain {shown(name)} has a userinfo part",
            hint="a SPIFFE trust domain has no user@ part; remove it",
        )
    if ":" in bad:
        raise InvalidIdentifier(
            f"the trust domain {shown(name)} has a port",
            hint="a SPIFFE trust domain has no :port; remove it",
        )
    if "%" in bad:
        raise InvalidIdentifier(
            f"the trust domain {shown(name)} is percent-encoded",
            hint="a trust domain uses only a-z, 0-9, '.', '-' and '_', unencoded",
        )
    if not set(name.lower()) - TRUST_DOMAIN_CHARS:
        raise InvalidIdentifier(
            f"the trust domain {shown(name)} has upper-case letters",
            hint=f"trust domains are lower case: use {shown(name.lower())}",
        )
    raise InvalidIdentifier(
        f"the trust domain {shown(name)} has characters outside [a-z0-9._-]: "
        f"{''.join(sorted(bad))[:20]!r}",
        hint="a trust domain uses only lower-case letters, digits, '.', '-' and '_'",
    )
