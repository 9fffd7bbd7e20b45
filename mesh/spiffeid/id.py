"""SPIFFE IDs: ``spiffe://<trust-domain>/<path>`` (SPIFFE-ID spec section 2).

Parsing is strict and gives one precise error per broken rule. The scheme is
compared case-insensitively (spec 2.4) and always written back in lower case,
so ``str(SpiffeID.parse(x))`` is the one canonical spelling of an ID. The
trust domain must already be lower case (spec 2.1): it is rejected, not
folded, so two spellings of one identity can never both be accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.errors import InvalidIdentifier
from mesh.spiffeid._chars import MAX_ID_BYTES, PATH_SEGMENT_CHARS, SCHEME, SCHEME_PREFIX, shown
from mesh.spiffeid.trustdomain import TrustDomain, check_trust_domain_name


@dataclass(frozen=True, order=True, slots=True)
class SpiffeID:
    """A validated SPIFFE ID. ``path`` is ``""`` for a trust domain's own ID, else ``/a/b``."""

    trust_domain: TrustDomain
    path: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.trust_domain, TrustDomain):
            raise InvalidIdentifier(
                f"a SPIFFE ID needs a TrustDomain, got {type(self.trust_domain).__name__}"
            )
        check_path(self.path)
        size = len(SCHEME_PREFIX) + len(self.trust_domain.name) + len(self.path)
        if size > MAX_ID_BYTES:
            raise InvalidIdentifier(
                f"the SPIFFE ID is {size} bytes long; the limit is {MAX_ID_BYTES}",
                hint="use a shorter path",
            )

    @classmethod
    def parse(cls, text: str) -> SpiffeID:
        """Parse ``spiffe://td/path``; raise :class:`InvalidIdentifier` saying which rule failed."""
        if not isinstance(text, str):
            raise InvalidIdentifier(f"a SPIFFE ID is a string, got {type(text).__name__}")
        if not text:
            raise InvalidIdentifier(
                "the SPIFFE ID is empty", hint="a SPIFFE ID looks like spiffe://<trust-domain>/<path>"
            )
        size = len(text.encode("utf-8"))
        if size > MAX_ID_BYTES:
            raise InvalidIdentifier(
                f"the SPIFFE ID is {size} bytes long; the limit is {MAX_ID_BYTES}",
            )
        scheme, sep, rest = text.partition("://")
        if not sep or scheme.lower() != SCHEME:
            raise InvalidIdentifier(
                f"{shown(text)} does not start with the spiffe:// scheme",
                hint="a SPIFFE ID looks like spiffe://<trust-domain>/<path>",
            )
        if "#" in rest:
            raise InvalidIdentifier(
                f"the SPIFFE ID {shown(text)} has a fragment ('#')",
                hint="a SPIFFE ID has no query or fragment",
            )
        if "?" in rest:
            raise InvalidIdentifier(
                f"the SPIFFE ID {shown(text)} has a query ('?')",
                hint="a SPIFFE ID has no query or fragment",
            )
        authority, slash, tail = rest.partition("/")
        if not authority:
            raise InvalidIdentifier(
                f"the SPIFFE ID {shown(text)} has no trust domain",
                hint="a SPIFFE ID looks like spiffe://<trust-domain>/<path>",
            )
        check_trust_domain_name(authority)
        return cls(TrustDomain(authority), slash + tail)

    @classmethod
    def from_segments(cls, trust_domain: TrustDomain | str, *segments: str) -> SpiffeID:
        """``spiffe://<td>/<seg1>/<seg2>...``; each segment is checked on its own."""
        td = _trust_domain(trust_domain)
        for segment in segments:
            _check_segment(segment, standalone=True)
        return cls(td, "".join("/" + s for s in segments))

    @classmethod
    def _checked_path(cls, trust_domain: TrustDomain, path: str) -> SpiffeID:
        """``spiffe://<td><path>`` for a ``path`` whose every rule the caller has
        already established (e.g. ``/agent/<did id>``: a DID id is base58): only
        the length is checked here."""
        size = len(SCHEME_PREFIX) + len(trust_domain.name) + len(path)
        if size > MAX_ID_BYTES:
            raise InvalidIdentifier(
                f"the SPIFFE ID is {size} bytes long; the limit is {MAX_ID_BYTES}",
                hint="use a shorter path",
            )
        sid = object.__new__(cls)
        object.__setattr__(sid, "trust_domain", trust_domain)
        object.__setattr__(sid, "path", path)
        return sid

    @classmethod
    def from_path(cls, trust_domain: TrustDomain | str, path: str) -> SpiffeID:
        """``spiffe://<td><path>``; ``path`` is ``""`` or starts with ``/``."""
        return cls(_trust_domain(trust_domain), path)

    @property
    def segments(self) -> tuple[str, ...]:
        """The path segments, ``()`` for a trust domain's own ID."""
        return tuple(self.path.split("/")[1:]) if self.path else ()

    @property
    def is_root(self) -> bool:
        """True for the trust domain's own ID (no path): never a workload identity."""
        return not self.path

    def member_of(self, trust_domain: TrustDomain) -> bool:
        return self.trust_domain == trust_domain

    def __str__(self) -> str:
        return SCHEME_PREFIX + self.trust_domain.name + self.path


def _trust_domain(value: TrustDomain | str) -> TrustDomain:
    return value if isinstance(value, TrustDomain) else TrustDomain.parse(value)


def check_path(path: str) -> None:
    """Raise :class:`InvalidIdentifier` naming the first path rule (spec 2.2) ``path`` breaks."""
    if not isinstance(path, str):
        raise InvalidIdentifier(f"a SPIFFE ID path is a string, got {type(path).__name__}")
    if not path:
        return
    if not path.startswith("/"):
        raise InvalidIdentifier(
            f"the SPIFFE ID path {shown(path)} does not start with '/'",
            hint="write the path as /a/b, or leave it empty",
        )
    segments = path[1:].split("/")
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if not segment:
            if index == last:
                raise InvalidIdentifier(
                    f"the SPIFFE ID path {shown(path)} ends with '/'",
                    hint="remove the trailing slash",
                )
            raise InvalidIdentifier(
                f"the SPIFFE ID path {shown(path)} has an empty segment ('//')",
            )
        _check_segment(segment, standalone=False)


def _check_segment(segment: str, *, standalone: bool) -> None:
    if not isinstance(segment, str):
        raise InvalidIdentifier(f"a path segment is a string, got {type(segment).__name__}")
    if not segment:
        raise InvalidIdentifier("a SPIFFE ID path segment is empty")
    if segment in (".", ".."):
        raise InvalidIdentifier(
            f"the SPIFFE ID path has a relative segment {segment!r}",
            hint="'.' and '..' are not allowed as path segments",
        )
    bad = set(segment) - PATH_SEGMENT_CHARS
    if not bad:
        return
    if standalone and "/" in bad:
        raise InvalidIdentifier(
            f"the path segment {shown(segment)} contains '/'",
            hint="pass each segment separately",
        )
    if "%" in bad:
        raise InvalidIdentifier(
            f"the SPIFFE ID path segment {shown(segment)} is percent-encoded",
            hint="path segments use only A-Z, a-z, 0-9, '.', '-' and '_', unencoded",
        )
    raise InvalidIdentifier(
        f"the SPIFFE ID path segment {shown(segment)} has characters outside [A-Za-z0-9._-]: "
        f"{''.join(sorted(bad))[:20]!r}",
    )
