"""X.509-SVID validation: one good SVID, and one bad SVID for every rule of the checklist."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from _pki import issue_leaf, make_ca, new_key, now
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh.bundle import Bundle
from mesh.spiffeid import SpiffeID, TrustDomain
from mesh.svid import X509_RULES, X509SVID, SVIDError, verify_x509svid

TD = TrustDomain("mesh.local")
ID = "spiffe://mesh.local/agent/test"
ROOT = make_ca("mesh.local", name="root")
INTER = ROOT.intermediate(name="intermediate")
BUNDLE = Bundle(TD, [ROOT.cert])


def _rule(chain: list[x509.Certificate], rule: str, fragment: str, bundle: object = BUNDLE,
          when: dt.datetime | None = None) -> SVIDError:
    with pytest.raises(SVIDError) as info:
        verify_x509svid(chain, bundle, when)  # type: ignore[arg-type]
    assert info.value.rule == rule, str(info.value)
    assert fragment in str(info.value)
    return info.value


# --- valid SVIDs -------------------------------------------------------------------------------

def test_valid_leaf_from_root() -> None:
    leaf = ROOT.issue(ID)
    assert verify_x509svid(leaf.chain, BUNDLE) == SpiffeID.parse(ID)


def test_valid_leaf_through_intermediate() -> None:
    leaf = INTER.issue(ID)
    assert len(leaf.chain) == 2
    assert verify_x509svid(leaf.chain, BUNDLE) == SpiffeID.parse(ID)
    assert verify_x509svid(X509SVID.from_chain(leaf.chain), BUNDLE) == SpiffeID.parse(ID)


def test_valid_with_a_bundle_set_and_explicit_times() -> None:
    leaf = ROOT.issue(ID)
    other = make_ca("other.org")
    bundles = {TD: BUNDLE, TrustDomain("other.org"): Bundle("other.org", [other.cert])}
    assert verify_x509svid(leaf.chain, bundles) == SpiffeID.parse(ID)
    naive = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert verify_x509svid(leaf.chain, BUNDLE, naive) == SpiffeID.parse(ID)
    tokyo = dt.datetime.now(dt.timezone(dt.timedelta(hours=9)))
    assert verify_x509svid(leaf.chain, BUNDLE, tokyo) == SpiffeID.parse(ID)


def test_optional_properties_are_optional() -> None:
    # No EKU, no basicConstraints (cA defaults to false), DNS SANs beside the URI SAN.
    for leaf in (
        ROOT.issue(ID, eku=None),
        ROOT.issue(ID, basic_constraints=None),
        ROOT.issue(ID, dns_names=["agent.mesh.local"]),
        ROOT.issue(ID, usage=frozenset({"digital_signature", "key_agreement", "key_encipherment"})),
    ):
        assert verify_x509svid(leaf.chain, BUNDLE) == SpiffeID.parse(ID)


def test_subject_with_critical_san_is_accepted() -> None:
    # Allowed by the spec; cryptography's WebPKI default would refuse it.
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")])
    for critical in (True, False):
        leaf = ROOT.issue(ID, subject=subject, san_critical=critical)
        assert verify_x509svid(leaf.chain, BUNDLE) == SpiffeID.parse(ID)


def test_upper_case_scheme_is_accepted_and_canonicalised() -> None:
    leaf = ROOT.issue("SPIFFE://mesh.local/agent/test")
    assert str(verify_x509svid(leaf.chain, BUNDLE)) == ID


def test_rotated_bundle_with_two_roots() -> None:
    new_root = make_ca("mesh.local", name="next root")
    both = Bundle(TD, [ROOT.cert, new_root.cert])
    assert verify_x509svid(ROOT.issue(ID).chain, both) == SpiffeID.parse(ID)
    assert verify_x509svid(new_root.issue(ID).chain, both) == SpiffeID.parse(ID)


def test_rule_names_are_in_order() -> None:
    assert X509_RULES[0] == "chain" and X509_RULES[-1] == "path"


# --- 1. chain ----------------------------------------------------------------------------------

def test_chain_rules() -> None:
    _rule([], "chain", "empty")
    _rule(["pem"], "chain", "chain[0] is a str")  # type: ignore[list-item]
    _rule([ROOT.issue(ID).cert] * 9, "chain", "at most 8")
    _rule("pem", "chain", "list of certificates")  # type: ignore[arg-type]


def test_a_single_certificate_is_a_chain_of_one() -> None:
    assert verify_x509svid(ROOT.issue(ID).cert, BUNDLE) == SpiffeID.parse(ID)  # type: ignore[arg-type]


# --- 2. uri-san --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"uris": []}, "no subjectAltName"),
        ({"uris": [], "dns_names": ["agent.mesh.local"]}, "no URI SAN"),
        ({"uris": [ID, "spiffe://mesh.local/agent/other"]}, "2 URI SANs"),
        ({"uris": [ID, "https://example.com/"]}, "2 URI SANs"),
        ({"uris": ["https://mesh.local/agent/test"]}, "spiffe:// scheme"),
        ({"uris": ["spiffe://Mesh.local/agent/test"]}, "upper-case"),
        ({"uris": ["spiffe://mesh.local/agent/test/"]}, "ends with '/'"),
        ({"uris": ["spiffe://mesh.local/agent/../x"]}, "relative segment"),
        ({"uris": ["spiffe://mesh.local/agent?x=1"]}, "query"),
        ({"uris": ["spiffe://mesh.local"]}, "has no path"),
    ],
)
def test_uri_san(kwargs: dict[str, object], fragment: str) -> None:
    _rule(ROOT.issue(**kwargs).chain, "uri-san", fragment)  # type: ignore[arg-type]


# --- 3. san-critical ---------------------------------------------------------------------------

def test_empty_subject_needs_a_critical_san() -> None:
    _rule(ROOT.issue(ID, san_critical=False).chain, "san-critical", "not critical")


# --- 4. basic-constraints ----------------------------------------------------------------------

def test_leaf_must_not_be_a_ca() -> None:
    _rule(ROOT.issue(ID, basic_constraints=True).chain, "basic-constraints", "is a CA")


# --- 5. key-usage ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"usage": None}, "no keyUsage"),
        ({"usage_critical": False}, "not critical"),
        ({"usage": frozenset({"key_agreement"})}, "lacks digitalSignature"),
    ],
)
def test_key_usage(kwargs: dict[str, object], fragment: str) -> None:
    _rule(ROOT.issue(ID, **kwargs).chain, "key-usage", fragment)  # type: ignore[arg-type]


# --- 6. leaf-key-usage -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("flag", "name"), [("key_cert_sign", "keyCertSign"), ("crl_sign", "cRLSign")]
)
def test_leaf_key_usage(flag: str, name: str) -> None:
    usage = frozenset({"digital_signature", flag})
    _rule(ROOT.issue(ID, usage=usage).chain, "leaf-key-usage", f"sets {name}")


# --- 7. extended-key-usage ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("eku", "fragment"),
    [
        ([ExtendedKeyUsageOID.SERVER_AUTH], "lacks clientAuth"),
        ([ExtendedKeyUsageOID.CLIENT_AUTH], "lacks serverAuth"),
        ([ExtendedKeyUsageOID.CODE_SIGNING], "lacks serverAuth and clientAuth"),
    ],
)
def test_extended_key_usage(eku: list[x509.ObjectIdentifier], fragment: str) -> None:
    _rule(ROOT.issue(ID, eku=eku).chain, "extended-key-usage", fragment)


# --- 8. signing-certificate --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"ca": False}, "is not a CA"),
        ({"ca": None}, "is not a CA"),
        ({"usage": frozenset({"crl_sign", "digital_signature"})}, "does not set keyCertSign"),
        ({"usage": None}, "does not set keyCertSign"),
    ],
)
def test_signing_certificates(kwargs: dict[str, object], fragment: str) -> None:
    bad = ROOT.intermediate(name="bad intermediate", **kwargs)
    error = _rule(bad.issue(ID).chain, "signing-certificate", fragment)
    assert "signing certificate #1" in str(error)


def test_trusted_authority_must_be_a_signing_certificate() -> None:
    # A bundle root without keyCertSign never validates (path validation refuses it first).
    root = make_ca("mesh.local", name="odd root", usage=frozenset({"crl_sign"}))
    _rule(root.issue(ID).chain, "path", "does not lead", Bundle(TD, [root.cert]))


# --- 9. validity -------------------------------------------------------------------------------

def test_expired_leaf() -> None:
    leaf = ROOT.issue(ID, not_before=now() - dt.timedelta(hours=2),
                      not_after=now() - dt.timedelta(hours=1))
    _rule(leaf.chain, "validity", "leaf certificate expired")


def test_leaf_not_yet_valid() -> None:
    leaf = ROOT.issue(ID, not_before=now() + dt.timedelta(hours=1),
                      not_after=now() + dt.timedelta(hours=2))
    _rule(leaf.chain, "validity", "not valid before")


def test_validity_follows_the_given_time() -> None:
    leaf = ROOT.issue(ID)
    _rule(leaf.chain, "validity", "expired", when=now() + dt.timedelta(hours=2))
    _rule(leaf.chain, "validity", "not valid before", when=now() - dt.timedelta(hours=1))


def test_expired_intermediate() -> None:
    old = ROOT.intermediate(name="old intermediate", not_before=now() - dt.timedelta(days=3),
                            not_after=now() - dt.timedelta(days=1))
    leaf = issue_leaf(old, ID)
    _rule(leaf.chain, "validity", "signing certificate #1 expired")


# --- 10. bundle --------------------------------------------------------------------------------

def test_bundle_of_another_trust_domain_is_never_used() -> None:
    leaf = ROOT.issue("spiffe://other.org/agent/test")
    # The root of mesh.local signed it, and that root is in *a* bundle: still refused.
    _rule(leaf.chain, "bundle", "no trust bundle for trust domain other.org")
    _rule(leaf.chain, "bundle", "bundles of mesh.local", {TD: BUNDLE})


def test_bundle_set_never_lends_keys_across_trust_domains() -> None:
    leaf = ROOT.issue("spiffe://other.org/agent/test")
    other = make_ca("other.org")
    bundles = {TD: BUNDLE, TrustDomain("other.org"): Bundle("other.org", [other.cert])}
    _rule(leaf.chain, "path", "does not lead to an X.509 authority of other.org", bundles)
    mis_keyed = {TrustDomain("other.org"): BUNDLE}
    _rule(leaf.chain, "bundle", "no trust bundle", mis_keyed)


def test_bundle_without_x509_authorities() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    jwt_only = Bundle(TD, jwt_authorities={"k": key})
    _rule(ROOT.issue(ID).chain, "bundle", "no X.509 authorities", jwt_only)


# --- 11. path ----------------------------------------------------------------------------------

def test_issued_by_an_unknown_ca_of_the_same_trust_domain() -> None:
    rogue = make_ca("mesh.local", name="rogue")
    error = _rule(rogue.issue(ID).chain, "path", "does not lead")
    assert "current authority" in str(error)


def test_forged_signature() -> None:
    # Same issuer name and key identifier as the real root, wrong signing key.
    forged = issue_leaf(ROOT, ID, signer=new_key())
    _rule(forged.chain, "path", "does not lead")


def test_missing_intermediate() -> None:
    leaf = INTER.issue(ID)
    _rule(leaf.chain[:1], "path", "does not lead")


def test_expired_root() -> None:
    old_root = make_ca("mesh.local", name="old root", not_before=now() - dt.timedelta(days=3),
                       not_after=now() - dt.timedelta(minutes=1))
    leaf = issue_leaf(old_root, ID, not_before=now() - dt.timedelta(days=2))
    error = _rule(leaf.chain, "path", "does not lead", Bundle(TD, [old_root.cert]))
    assert "outside its validity period" in str(error)


def test_leaf_of_another_chain_with_a_valid_intermediate() -> None:
    # The intermediate is genuine, but the leaf was not signed by it.
    other = make_ca("mesh.local", name="intermediate")  # same name, different key
    leaf = issue_leaf(other, ID)
    _rule([leaf.cert, INTER.cert], "path", "does not lead")


# --- X509SVID: loading and its own checks ------------------------------------------------------

def test_load_from_files(tmp_path: Path) -> None:
    leaf = INTER.issue(ID)
    (tmp_path / "svid.0.pem").write_bytes(leaf.cert_pem())
    (tmp_path / "svid.0.key").write_bytes(leaf.key_pem())
    svid = X509SVID.load(tmp_path / "svid.0.pem", str(tmp_path / "svid.0.key"))
    assert svid.spiffe_id == SpiffeID.parse(ID)
    assert svid.leaf == leaf.cert and svid.intermediates == (INTER.cert,)
    assert svid.private_key is not None
    assert svid.expires_at == leaf.cert.not_valid_after_utc
    assert svid.issued_at == leaf.cert.not_valid_before_utc
    assert verify_x509svid(svid, BUNDLE) == svid.spiffe_id
    assert "PRIVATE" not in repr(svid) and "private_key" not in repr(svid)


def test_load_from_pem_content() -> None:
    leaf = ROOT.issue(ID)
    svid = X509SVID.load(leaf.cert_pem(), leaf.key_pem().decode())
    assert X509SVID.parse(svid.chain_pem(), svid.key_pem()) == svid
    assert X509SVID.load(leaf.cert_pem().decode()).private_key is None


def test_encrypted_key_round_trip() -> None:
    leaf = ROOT.issue(ID)
    svid = X509SVID.parse(leaf.cert_pem(), leaf.key_pem())
    encrypted = svid.key_pem(password=b"correct horse")
    assert b"ENCRYPTED" in encrypted
    assert X509SVID.parse(leaf.cert_pem(), encrypted, password=b"correct horse") == svid
    with pytest.raises(SVIDError, match="password is wrong"):
        X509SVID.parse(leaf.cert_pem(), encrypted, password=b"wrong")
    with pytest.raises(SVIDError, match="private key file"):
        X509SVID.parse(leaf.cert_pem(), encrypted)


@pytest.mark.parametrize(
    ("cert", "key", "fragment"),
    [
        (b"", None, "no PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", None, "does not parse"),
        ("/nonexistent/svid.0.pem", None, "cannot read the certificate file"),
        (None, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "does not parse"),
        (None, b"garbage", "does not parse"),
    ],
)
def test_load_errors(cert: bytes | str | None, key: bytes | None, fragment: str) -> None:
    with pytest.raises(SVIDError) as info:
        X509SVID.load(cert if cert is not None else ROOT.issue(ID).cert_pem(), key)
    assert fragment in str(info.value)


def test_key_must_match_the_leaf() -> None:
    leaf = ROOT.issue(ID)
    other = ROOT.issue(ID)
    with pytest.raises(SVIDError, match="does not belong to the leaf") as info:
        X509SVID.parse(leaf.cert_pem(), other.key_pem())
    assert info.value.rule == "key"


def test_no_key_to_export() -> None:
    with pytest.raises(SVIDError, match="no private key"):
        X509SVID.parse(ROOT.issue(ID).cert_pem()).key_pem()


def test_x509svid_checks_its_shape_when_built() -> None:
    with pytest.raises(SVIDError) as info:
        X509SVID.from_chain(ROOT.issue(ID, basic_constraints=True).chain)
    assert info.value.rule == "basic-constraints"
    with pytest.raises(SVIDError, match=r"names spiffe://mesh\.local/agent/test, not"):
        X509SVID(SpiffeID.parse("spiffe://mesh.local/x"), tuple(ROOT.issue(ID).chain))
