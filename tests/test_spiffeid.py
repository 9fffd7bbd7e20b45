"""SPIFFE IDs and trust domains: every valid and invalid form of the SPIFFE-ID spec."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.did import DID
from mesh.errors import InvalidIdentifier
from mesh.keys import IdentityKey
from mesh.spiffeid import (
    MatchError,
    SpiffeID,
    TrustDomain,
    agent_spiffe_id,
    did_from_agent_spiffe_id,
    is_agent_spiffe_id,
    match_any,
    match_id,
    match_member_of,
    match_one_of,
)

TD = TrustDomain("mesh.local")


# --- trust domains -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name",
    ["mesh.local", "a", "example.org", "trust_domain_name.example.com", "1.2.3.4", "a-b_c.9", "."],
)
def test_valid_trust_domain_names(name: str) -> None:
    td = TrustDomain.parse(name)
    assert td.name == name
    assert str(td) == name
    assert td.id_string() == f"spiffe://{name}"
    assert str(td.id()) == f"spiffe://{name}"
    assert td.id().is_root


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("Mesh.local", "upper-case"),
        ("mesh.local:8443", "port"),
        ("user@mesh.local", "userinfo"),
        ("mesh%2elocal", "percent-encoded"),
        ("mesh local", "outside [a-z0-9._-]"),
        ("mesh/local", "outside [a-z0-9._-]"),
        ("[::1]", "IPv6"),
        ("mesh.l\u043ecal", "outside [a-z0-9._-]"),  # Cyrillic o
        ("a" * 256, "255"),
    ],
)
def test_invalid_trust_domain_names(text: str, fragment: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        TrustDomain.parse(text)
    assert fragment in str(info.value)


def test_trust_domain_max_length_is_inclusive() -> None:
    assert TrustDomain.parse("a" * 255).name == "a" * 255


def test_trust_domain_from_spiffe_id() -> None:
    assert TrustDomain.parse("spiffe://mesh.local") == TD
    assert TrustDomain.parse("spiffe://mesh.local/agent/x") == TD
    with pytest.raises(InvalidIdentifier, match="scheme"):
        TrustDomain.parse("https://mesh.local/")


def test_trust_domain_rejects_non_strings() -> None:
    with pytest.raises(InvalidIdentifier, match="string"):
        TrustDomain.parse(b"mesh.local")  # type: ignore[arg-type]


# --- SPIFFE IDs --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "td", "path"),
    [
        ("spiffe://mesh.local", "mesh.local", ""),
        ("spiffe://mesh.local/agent/abc", "mesh.local", "/agent/abc"),
        ("spiffe://staging.example.com/payments/mysql", "staging.example.com", "/payments/mysql"),
        ("spiffe://k8s-west.example.com/ns/staging/sa/default", "k8s-west.example.com",
         "/ns/staging/sa/default"),
        ("spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453", "example.com",
         "/9eebccd2-12bf-40a6-b262-65fe0487d453"),
        ("spiffe://td/CaseSensitive/Path_1.2-3", "td", "/CaseSensitive/Path_1.2-3"),
        ("spiffe://td/...", "td", "/..."),
        ("spiffe://td/.a/a./..b", "td", "/.a/a./..b"),
        ("spiffe://10.0.0.1/x", "10.0.0.1", "/x"),
    ],
)
def test_valid_ids(text: str, td: str, path: str) -> None:
    sid = SpiffeID.parse(text)
    assert sid.trust_domain == TrustDomain(td)
    assert sid.path == path
    assert str(sid) == text
    assert SpiffeID.parse(str(sid)) == sid


@pytest.mark.parametrize("scheme", ["SPIFFE", "Spiffe", "sPiFfE"])
def test_scheme_is_case_insensitive_and_canonicalised(scheme: str) -> None:
    sid = SpiffeID.parse(f"{scheme}://mesh.local/a")
    assert str(sid) == "spiffe://mesh.local/a"
    assert sid == SpiffeID.from_segments(TD, "a")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("mesh.local/a", "scheme"),
        ("http://mesh.local/a", "scheme"),
        ("spiffe:/mesh.local/a", "scheme"),
        ("spiffe:mesh.local", "scheme"),
        ("://mesh.local/a", "scheme"),
        ("spiffe://", "no trust domain"),
        ("spiffe:///a", "no trust domain"),
        ("spiffe://Mesh.local/a", "upper-case"),
        ("spiffe://mesh.local:443/a", "port"),
        ("spiffe://user:pw@mesh.local/a", "userinfo"),
        ("spiffe://mesh%2Elocal/a", "percent-encoded"),
        ("spiffe://[::1]/a", "IPv6"),
        ("spiffe://mesh.local/a?b=c", "query"),
        ("spiffe://mesh.local?b", "query"),
        ("spiffe://mesh.local/a#frag", "fragment"),
        ("spiffe://mesh.local#frag", "fragment"),
        ("spiffe://mesh.local/", "ends with '/'"),
        ("spiffe://mesh.local/a/", "ends with '/'"),
        ("spiffe://mesh.local//", "empty segment"),
        ("spiffe://mesh.local//a", "empty segment"),
        ("spiffe://mesh.local/a//b", "empty segment"),
        ("spiffe://mesh.local/.", "relative segment"),
        ("spiffe://mesh.local/..", "relative segment"),
        ("spiffe://mesh.local/a/./b", "relative segment"),
        ("spiffe://mesh.local/a/../b", "relative segment"),
        ("spiffe://mesh.local/a%20b", "percent-encoded"),
        ("spiffe://mesh.local/a b", "outside [A-Za-z0-9._-]"),
        ("spiffe://mesh.local/a:b", "outside [A-Za-z0-9._-]"),
        ("spiffe://mesh.local/é", "outside [A-Za-z0-9._-]"),
        ("spiffe://mesh.local/a+b", "outside [A-Za-z0-9._-]"),
        ("spiffe://mesh.local/a\\b", "outside [A-Za-z0-9._-]"),
        ("spiffe://mesh.local/" + "a" * 2048, "limit is 2048"),
    ],
)
def test_invalid_ids(text: str, fragment: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        SpiffeID.parse(text)
    assert fragment in str(info.value)


def test_max_length_boundary() -> None:
    prefix = "spiffe://mesh.local/"
    at_limit = prefix + "a" * (2048 - len(prefix))
    assert len(SpiffeID.parse(at_limit).__str__()) == 2048
    with pytest.raises(InvalidIdentifier, match="2049 bytes"):
        SpiffeID.parse(at_limit + "a")
    with pytest.raises(InvalidIdentifier, match="limit is 2048"):
        SpiffeID.from_segments(TD, "a" * 2048)


def test_non_string_input() -> None:
    with pytest.raises(InvalidIdentifier, match="string"):
        SpiffeID.parse(None)  # type: ignore[arg-type]


def test_from_segments_and_properties() -> None:
    sid = SpiffeID.from_segments("mesh.local", "ns", "prod", "sa", "web")
    assert str(sid) == "spiffe://mesh.local/ns/prod/sa/web"
    assert sid.segments == ("ns", "prod", "sa", "web")
    assert not sid.is_root
    assert sid.member_of(TD)
    assert not sid.member_of(TrustDomain("other"))
    assert SpiffeID.from_segments(TD) == TD.id()
    assert SpiffeID.from_path(TD, "/a/b") == SpiffeID.parse("spiffe://mesh.local/a/b")


@pytest.mark.parametrize(
    ("segments", "fragment"),
    [
        (("a/b",), "contains '/'"),
        (("",), "empty"),
        ((".",), "relative"),
        (("..",), "relative"),
        (("a%2f",), "percent-encoded"),
        (("a b",), "outside"),
    ],
)
def test_from_segments_rejects_bad_segments(segments: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        SpiffeID.from_segments(TD, *segments)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [("a", "start with '/'"), ("/", "ends with '/'"), ("/a//b", "empty segment")],
)
def test_from_path_rejects_bad_paths(path: str, fragment: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        SpiffeID.from_path(TD, path)
    assert fragment in str(info.value)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(InvalidIdentifier):
        SpiffeID(TD, "/a/")
    with pytest.raises(InvalidIdentifier, match="TrustDomain"):
        SpiffeID("mesh.local", "/a")  # type: ignore[arg-type]


def test_ordering_and_hashing() -> None:
    a, b = SpiffeID.parse("spiffe://a/x"), SpiffeID.parse("spiffe://b/a")
    assert sorted([b, a]) == [a, b]
    assert len({a, SpiffeID.parse("spiffe://a/x")}) == 1


_TD_ALPHABET = string.ascii_lowercase + string.digits + ".-_"
_SEGMENT_ALPHABET = string.ascii_letters + string.digits + ".-_"
_td_names = st.text(alphabet=_TD_ALPHABET, min_size=1, max_size=60)
_segments = st.text(alphabet=_SEGMENT_ALPHABET, min_size=1, max_size=30).filter(
    lambda s: s not in (".", "..")
)


@given(_td_names, st.lists(_segments, max_size=8))
def test_round_trip(td_name: str, segments: list[str]) -> None:
    sid = SpiffeID.from_segments(td_name, *segments)
    assert SpiffeID.parse(str(sid)) == sid
    assert sid.segments == tuple(segments)
    assert TrustDomain.parse(str(sid)) == TrustDomain(td_name)


@given(st.text(max_size=80))
def test_parse_never_crashes(text: str) -> None:
    try:
        sid = SpiffeID.parse("spiffe://mesh.local/" + text)
    except InvalidIdentifier:
        return
    assert str(sid) == "spiffe://mesh.local/" + text


# --- matchers ----------------------------------------------------------------------------------

def test_matchers() -> None:
    a = SpiffeID.parse("spiffe://mesh.local/a")
    b = SpiffeID.parse("spiffe://mesh.local/b")
    foreign = SpiffeID.parse("spiffe://other.org/a")
    match_any()(foreign)
    match_id(a)(a)
    with pytest.raises(MatchError, match=r"expected spiffe://mesh\.local/a"):
        match_id(a)(b)
    match_one_of(a, b)(b)
    match_one_of([a, b])(a)
    with pytest.raises(MatchError, match="not one of"):
        match_one_of(a)(b)
    match_member_of(TD)(a)
    with pytest.raises(MatchError, match=r"expected a member of mesh\.local"):
        match_member_of(TD)(foreign)


# --- agent IDs ---------------------------------------------------------------------------------

def test_agent_id_round_trip() -> None:
    did = IdentityKey.from_seed(bytes(range(32))).did()
    sid = agent_spiffe_id(TD, did)
    assert str(sid) == f"spiffe://mesh.local/agent/{did.id}"
    assert agent_spiffe_id("mesh.local", str(did)) == sid
    assert did_from_agent_spiffe_id(sid) == did
    assert did_from_agent_spiffe_id(str(sid)) == did
    assert is_agent_spiffe_id(sid)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("spiffe://mesh.local", "not an agent SPIFFE ID"),
        ("spiffe://mesh.local/agent", "not an agent SPIFFE ID"),
        ("spiffe://mesh.local/workload/abc", "not an agent SPIFFE ID"),
        ("spiffe://mesh.local/agent/x/y", "not an agent SPIFFE ID"),
        ("spiffe://mesh.local/agent/0OIl", "base58btc"),
        ("spiffe://mesh.local/agent/abc", "bytes"),
    ],
)
def test_not_agent_ids(text: str, fragment: str) -> None:
    sid = SpiffeID.parse(text)
    assert not is_agent_spiffe_id(sid)
    with pytest.raises(InvalidIdentifier) as info:
        did_from_agent_spiffe_id(sid)
    assert fragment in str(info.value)


def test_agent_id_rejects_bad_did() -> None:
    with pytest.raises(InvalidIdentifier):
        agent_spiffe_id(TD, "did:web:example.com")
    assert isinstance(DID.parse(str(IdentityKey.generate().did())), DID)
