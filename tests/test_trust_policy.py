"""The YAML policy: defaults, loading, and a precise error for every kind of bad policy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mesh.errors import MeshError
from trust import ExecutionRing, Policy, PolicyError, Severity, TrustError, default_policy_yaml


def test_packaged_yaml_is_the_builtin_default() -> None:
    assert Policy.from_yaml(default_policy_yaml()) == Policy.default()


def test_round_trips_through_mapping_and_yaml() -> None:
    p = Policy.default()
    assert Policy.from_mapping(p.to_mapping()) == p
    assert Policy.from_yaml(p.to_yaml()) == p


def test_empty_document_is_the_default() -> None:
    assert Policy.from_yaml("") == Policy.default()
    assert Policy.from_mapping({}) == Policy.default()


def test_partial_policy_merges_over_defaults(tmp_path: Path) -> None:
    path = tmp_path / "trust.yaml"
    path.write_text(
        "weights:\n  success_rate: 0.5\n"
        "factors:\n  credential_age:\n    soft_limit: 20d\n    hard_limit: 3w4d\n"
        "rings:\n  tier_rings: {high: user}\n  promotion_hold: 90\n"
        "agt: {violation_severity: HIGH}\n"
    )
    p = Policy.load(path)
    d = Policy.default()
    assert p.weights.success_rate == 0.5
    assert p.weights.audit_log_completeness == d.weights.audit_log_completeness
    assert p.credential_age.soft_limit == timedelta(days=20)
    assert p.credential_age.hard_limit == timedelta(days=25)
    assert p.rings.tier_rings.high is ExecutionRing.USER
    assert p.rings.tier_rings.maximum is d.rings.tier_rings.maximum
    assert p.rings.promotion_hold == timedelta(seconds=90)
    assert p.agt.violation_severity is Severity.HIGH
    assert p.normalised_weights[0] == pytest.approx(0.5 / (0.5 + 0.75))


def test_durations_and_rings_accept_their_spellings() -> None:
    p = Policy.from_mapping(
        {
            "factors": {"success_rate": {"staleness_half_life": "1h30m"}},
            "rings": {"tier_rings": {"maximum": 1, "high": "ring_2_standard"}},
        }
    )
    assert p.success_rate.staleness_half_life == timedelta(minutes=90)
    assert p.rings.tier_rings.maximum is ExecutionRing.SYSTEM
    assert p.rings.tier_rings.high is ExecutionRing.USER


# (mapping, expected key path, fragment of the message)
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"weight": {}}, "weight", "unknown key"),
    ({"weights": {"succes_rate": 1}}, "weights.succes_rate", "unknown key"),
    (
        {"factors": {"success_rate": {"half_life": "1h"}}},
        "factors.success_rate.half_life",
        "unknown",
    ),
    ({"weights": 3}, "weights", "must be a mapping"),
    ({"weights": {"success_rate": "high"}}, "weights.success_rate", "must be a number"),
    ({"weights": {"success_rate": True}}, "weights.success_rate", "boolean"),
    ({"weights": {"success_rate": None}}, "weights.success_rate", "null"),
    ({"weights": {"success_rate": -0.1}}, "weights.success_rate", "negative"),
    ({"weights": {"success_rate": float("nan")}}, "weights.success_rate", "finite"),
    ({"weights": {"success_rate": float("inf")}}, "weights.success_rate", "finite"),
    (
        {
            "weights": {
                "success_rate": 0,
                "error_budget_remaining": 0,
                "violation_recency": 0,
                "credential_age": 0,
                "audit_log_completeness": 0,
            }
        },
        "weights",
        "sum to 0",
    ),
    ({"factors": {"success_rate": {"prior": 1.5}}}, "factors.success_rate.prior", "at most 1"),
    (
        {"factors": {"audit_log_completeness": {"prior": -1}}},
        "factors.audit_log_completeness.prior",
        "negative",
    ),
    (
        {"factors": {"success_rate": {"zero_at": 0.9, "full_at": 0.8}}},
        "factors.success_rate.zero_at",
        "below full_at",
    ),
    (
        {"factors": {"error_budget_remaining": {"staleness_half_life": 0}}},
        "factors.error_budget_remaining.staleness_half_life",
        "greater than 0",
    ),
    (
        {"factors": {"success_rate": {"staleness_half_life": "soon"}}},
        "factors.success_rate.staleness_half_life",
        "not a duration",
    ),
    (
        {"factors": {"success_rate": {"staleness_half_life": -5}}},
        "factors.success_rate.staleness_half_life",
        "non-negative",
    ),
    (
        {"factors": {"success_rate": {"staleness_half_life": [1]}}},
        "factors.success_rate.staleness_half_life",
        "a list",
    ),
    (
        {"factors": {"violation_recency": {"severity_weights": {"high": 0.2}}}},
        "factors.violation_recency.severity_weights.high",
        "out of order",
    ),
    (
        {"factors": {"violation_recency": {"severity_weights": {"critical": 2}}}},
        "factors.violation_recency.severity_weights.critical",
        "at most 1",
    ),
    (
        {"factors": {"violation_recency": {"half_life": "0s"}}},
        "factors.violation_recency.half_life",
        "greater than 0",
    ),
    (
        {"factors": {"credential_age": {"soft_limit": "50d"}}},
        "factors.credential_age.hard_limit",
        "after soft_limit",
    ),
    (
        {"factors": {"credential_age": {"floor": 1.2}}},
        "factors.credential_age.floor",
        "at most 1",
    ),
    (
        {"rings": {"tier_rings": {"high": "sandbox"}}},
        "rings.tier_rings.high",
        "out of order",
    ),
    (
        {"rings": {"tier_rings": {"maximum": "user"}}},
        "rings.tier_rings.maximum",
        "out of order",
    ),
    (
        {"rings": {"tier_rings": {"untrusted": "user", "low": "user"}}},
        "rings.tier_rings.untrusted",
        "sandbox only",
    ),
    ({"rings": {"tier_rings": {"high": "root"}}}, "rings.tier_rings.high", "not an execution ring"),
    ({"rings": {"tier_rings": {"high": 7}}}, "rings.tier_rings.high", "not an execution ring"),
    ({"rings": {"promotion_margin": -1}}, "rings.promotion_margin", "negative"),
    ({"rings": {"promotion_margin": 200}}, "rings.promotion_margin", "below 200"),
    ({"rings": {"promotion_hold": "forever"}}, "rings.promotion_hold", "not a duration"),
    ({"recompute": {"tolerance_points": 0}}, "recompute.tolerance_points", "greater than 0"),
    ({"agt": {"violation_severity": "apocalyptic"}}, "agt.violation_severity", "not a severity"),
    ({"version": 2}, "version", "unsupported policy version"),
    ({"version": True}, "version", "unsupported policy version"),
    ({1: "x"}, "", "keys are names"),
]


@pytest.mark.parametrize(("mapping", "path", "fragment"), BAD, ids=[b[1] or "top" for b in BAD])
def test_bad_policy_names_the_key(mapping: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_mapping(mapping, source="test.yaml")
    error = info.value
    assert error.path == path
    assert fragment in str(error)
    assert "test.yaml" in str(error)
    if path:
        assert f"'{path}'" in str(error)
    assert isinstance(error, TrustError) and isinstance(error, MeshError)


def test_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_mapping({"rings": {"margin": 3}})
    assert "promotion_margin" in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("weights: [1, 2", "not valid YAML at line"),
        ("- 1\n- 2\n", "got a YAML list"),
        ("just a string", "got a YAML str"),
        (
            "weights:\n  success_rate: 1\n  success_rate: 2\n",
            "duplicate key 'success_rate' at line 3",
        ),
        ("? [a, b]\n: 1\n", "is a list or mapping"),
        ("!!python/object:os.system {}\n", "not valid YAML"),
    ],
)
def test_bad_yaml(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(text, source="p.yaml")
    assert fragment in str(info.value)


def test_load_reports_file_problems(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the file"):
        Policy.load(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00weights")
    with pytest.raises(PolicyError, match="not UTF-8"):
        Policy.load(binary)
    bad = tmp_path / "bad.yaml"
    bad.write_text("weights:\n  credential_age: -2\n")
    with pytest.raises(PolicyError) as info:
        Policy.load(bad)
    assert info.value.path == "weights.credential_age"
    assert str(bad) in str(info.value)


def test_direct_construction_is_validated_too() -> None:
    import dataclasses

    d = Policy.default()
    with pytest.raises(PolicyError) as info:
        dataclasses.replace(d, weights=dataclasses.replace(d.weights, credential_age=-1.0))
    assert info.value.path == "weights.credential_age"
