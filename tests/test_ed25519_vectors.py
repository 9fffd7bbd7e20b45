"""The one Ed25519 policy against Wycheproof and CCTV (../shared/vectors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh.ed25519 import is_acceptable_public_key, verify_strict

STRICT_FLAGS = {"low_order_A", "low_order_R", "non_canonical_A", "non_canonical_R"}


def _wycheproof(vectors: Path) -> list[tuple[int, bytes, bytes, bytes, bool]]:
    data = json.loads((vectors / "wycheproof" / "ed25519_test.json").read_text())
    cases = []
    for group in data["testGroups"]:
        pk = bytes.fromhex(group["publicKey"]["pk"])
        for t in group["tests"]:
            cases.append(
                (
                    t["tcId"],
                    pk,
                    bytes.fromhex(t["msg"]),
                    bytes.fromhex(t["sig"]),
                    t["result"] == "valid",
                )
            )
    return cases


def test_every_wycheproof_verdict_matches(vectors_dir: Path) -> None:
    cases = _wycheproof(vectors_dir)
    assert len(cases) == 151
    mismatches = [tc for tc, pk, msg, sig, valid in cases if verify_strict(pk, msg, sig) != valid]
    assert mismatches == []
    # The suite has both verdicts, so a verifier that always answers one way fails above.
    assert {valid for *_, valid in cases} == {True, False}


def test_cctv_strict_flags_are_rejected(vectors_dir: Path) -> None:
    data = json.loads((vectors_dir / "cctv" / "ed25519vectors.json").read_text())
    assert len(data) == 914
    accepted_with_strict_flag = []
    accepted = 0
    for v in data:
        ok = verify_strict(bytes.fromhex(v["key"]), v["msg"].encode(), bytes.fromhex(v["sig"]))
        accepted += ok
        if ok and STRICT_FLAGS & set(v.get("flags") or ()):
            accepted_with_strict_flag.append(v["number"])
    assert accepted_with_strict_flag == []
    assert accepted > 0  # the clean vectors still verify


def test_cctv_small_order_and_noncanonical_keys_are_not_acceptable(vectors_dir: Path) -> None:
    data = json.loads((vectors_dir / "cctv" / "ed25519vectors.json").read_text())
    for v in data:
        flags = set(v.get("flags") or ())
        if flags & {"low_order_A", "non_canonical_A", "low_order_component_A"}:
            assert not is_acceptable_public_key(bytes.fromhex(v["key"])), v["number"]


@pytest.mark.parametrize(("pk_len", "sig_len"), [(31, 64), (33, 64), (32, 63), (32, 65), (0, 0)])
def test_wrong_lengths_never_verify(pk_len: int, sig_len: int) -> None:
    assert verify_strict(b"\x01" * pk_len, b"msg", b"\x00" * sig_len) is False
