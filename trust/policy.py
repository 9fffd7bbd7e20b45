"""The trust policy: factor weights, curve parameters, ring map and hysteresis, in YAML.

Defaults are built in (:meth:`Policy.default`); ``trust/default_policy.yaml``
ships the same values as a documented starting point. A policy file or mapping
only needs the keys it changes: it is merged key by key over the defaults.

Validation is strict and names the key path of every problem
(:class:`trust.errors.PolicyError`): unknown keys, wrong types (a boolean is not
a number), negative or non-finite numbers, weights that sum to zero, priors
outside [0, 1], a soft credential limit not below the hard one, severity weights
or tier rings out of order, an untrusted tier that is not sandboxed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from typing import Any

import yaml

from trust._internal.durations import DURATION_FORMS, format_duration, parse_duration
from trust._internal.yaml_load import DuplicateKeyError, UnhashableKeyError, load_yaml
from trust.errors import PolicyError
from trust.kernel import ScoringKernel
from trust.rings import ExecutionRing
from trust.signals import Severity
from trust.tiers import TIERS, Tier

POLICY_VERSION = 1
FACTOR_NAMES: tuple[str, ...] = (
    "success_rate",
    "error_budget_remaining",
    "violation_recency",
    "credential_age",
    "audit_log_completeness",
)
# A policy file larger than this is a mistake, not a policy.
_MAX_POLICY_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Weights:
    """Relative weight of each factor; normalised to sum to 1 when scoring."""

    success_rate: float
    error_budget_remaining: float
    violation_recency: float
    credential_age: float
    audit_log_completeness: float

    def as_tuple(self) -> tuple[float, ...]:
        """Weights in :data:`FACTOR_NAMES` order."""
        return (
            self.success_rate,
            self.error_budget_remaining,
            self.violation_recency,
            self.credential_age,
            self.audit_log_completeness,
        )

    def _check(self, path: str) -> None:
        for name, value in zip(FACTOR_NAMES, self.as_tuple(), strict=True):
            _check_number(value, f"{path}.{name}", low=0.0)
        if sum(self.as_tuple()) <= 0.0:
            raise PolicyError(
                path, "weights sum to 0", hint="give at least one factor a positive weight"
            )


@dataclass(frozen=True, slots=True)
class FadingFactorPolicy:
    """A reported fraction mapped through a linear ramp, fading to ``prior`` as it goes stale.

    ``ramp(v) = clamp((v - zero_at) / (full_at - zero_at), 0, 1)``;
    ``factor = prior + (ramp(v) - prior) * 2 ** (-age / staleness_half_life)``.
    """

    prior: float
    staleness_half_life: timedelta
    zero_at: float
    full_at: float
    # The half-life in seconds, computed once: scoring reads it for every agent.
    half_life_s: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "half_life_s", _seconds(self.staleness_half_life))

    def _check(self, path: str) -> None:
        _check_number(self.prior, f"{path}.prior", low=0.0, high=1.0)
        _check_duration(self.staleness_half_life, f"{path}.staleness_half_life", positive=True)
        _check_number(self.zero_at, f"{path}.zero_at", low=0.0, high=1.0)
        _check_number(self.full_at, f"{path}.full_at", low=0.0, high=1.0)
        if not self.zero_at < self.full_at:
            raise PolicyError(
                f"{path}.zero_at",
                f"zero_at ({self.zero_at}) must be below full_at ({self.full_at})",
            )


@dataclass(frozen=True, slots=True)
class SeverityWeights:
    """Penalty of a violation at age 0, by severity, each in [0, 1] and non-decreasing."""

    low: float
    medium: float
    high: float
    critical: float

    def of(self, severity: Severity) -> float:
        if severity is Severity.LOW:
            return self.low
        if severity is Severity.MEDIUM:
            return self.medium
        if severity is Severity.HIGH:
            return self.high
        return self.critical

    def _check(self, path: str) -> None:
        values = (self.low, self.medium, self.high, self.critical)
        names = ("low", "medium", "high", "critical")
        for name, value in zip(names, values, strict=True):
            _check_number(value, f"{path}.{name}", low=0.0, high=1.0)
        for i in range(1, 4):
            if values[i] < values[i - 1]:
                raise PolicyError(
                    f"{path}.{names[i]}",
                    f"severity weights are out of order: {names[i]} ({values[i]}) is below "
                    f"{names[i - 1]} ({values[i - 1]})",
                    hint="a more severe violation must weigh at least as much",
                )


@dataclass(frozen=True, slots=True)
class ViolationPolicy:
    """Violation recency: severity-weighted penalties decaying with a half-life.

    ``p_i = severity_weight_i * 2 ** (-age_i / half_life)``;
    ``clean = 1 - (1 - clean_record_prior) * 2 ** (-observed_for / clean_record_half_life)``;
    ``factor = clean * prod(1 - p_i)``.
    """

    half_life: timedelta
    clean_record_prior: float
    clean_record_half_life: timedelta
    severity_weights: SeverityWeights
    half_life_s: float = field(init=False, repr=False, compare=False)
    clean_record_half_life_s: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "half_life_s", _seconds(self.half_life))
        object.__setattr__(self, "clean_record_half_life_s", _seconds(self.clean_record_half_life))

    def _check(self, path: str) -> None:
        _check_duration(self.half_life, f"{path}.half_life", positive=True)
        _check_number(self.clean_record_prior, f"{path}.clean_record_prior", low=0.0, high=1.0)
        _check_duration(
            self.clean_record_half_life, f"{path}.clean_record_half_life", positive=True
        )
        self.severity_weights._check(f"{path}.severity_weights")


@dataclass(frozen=True, slots=True)
class CredentialPolicy:
    """Credential age: 1 up to ``soft_limit``, linear down to ``floor`` at ``hard_limit``."""

    prior: float
    soft_limit: timedelta
    hard_limit: timedelta
    floor: float
    soft_limit_s: float = field(init=False, repr=False, compare=False)
    hard_limit_s: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "soft_limit_s", _seconds(self.soft_limit))
        object.__setattr__(self, "hard_limit_s", _seconds(self.hard_limit))

    def _check(self, path: str) -> None:
        _check_number(self.prior, f"{path}.prior", low=0.0, high=1.0)
        _check_duration(self.soft_limit, f"{path}.soft_limit", positive=False)
        _check_duration(self.hard_limit, f"{path}.hard_limit", positive=True)
        if not self.soft_limit < self.hard_limit:
            raise PolicyError(
                f"{path}.hard_limit",
                f"hard_limit ({format_duration(self.hard_limit)}) must be after soft_limit "
                f"({format_duration(self.soft_limit)})",
            )
        _check_number(self.floor, f"{path}.floor", low=0.0, high=1.0)


@dataclass(frozen=True, slots=True)
class TierRings:
    """The most privileged execution ring each tier allows."""

    untrusted: ExecutionRing
    low: ExecutionRing
    medium: ExecutionRing
    high: ExecutionRing
    maximum: ExecutionRing

    def as_tuple(self) -> tuple[ExecutionRing, ...]:
        """Rings in tier order (untrusted first)."""
        return (self.untrusted, self.low, self.medium, self.high, self.maximum)

    def ring(self, tier: Tier) -> ExecutionRing:
        return self.as_tuple()[tier.rank]

    def _check(self, path: str) -> None:
        rings = self.as_tuple()
        for tier, ring in zip(TIERS, rings, strict=True):
            if not isinstance(ring, ExecutionRing):
                raise PolicyError(f"{path}.{tier.value}", "must be an ExecutionRing")
        if self.untrusted is not ExecutionRing.SANDBOX:
            raise PolicyError(
                f"{path}.untrusted",
                f"the untrusted tier is sandbox only, got {self.untrusted.label}",
            )
        for i in range(1, len(rings)):
            if rings[i] > rings[i - 1]:
                raise PolicyError(
                    f"{path}.{TIERS[i].value}",
                    f"ring thresholds are out of order: tier {TIERS[i].value} allows "
                    f"{rings[i].label}, less than tier {TIERS[i - 1].value} ({rings[i - 1].label})",
                    hint="a higher tier must allow the same ring or a more privileged one",
                )


@dataclass(frozen=True, slots=True)
class RingPolicy:
    """Which ring each tier allows, and the hysteresis on promotion."""

    tier_rings: TierRings
    promotion_margin: float
    promotion_hold: timedelta

    def _check(self, path: str) -> None:
        self.tier_rings._check(f"{path}.tier_rings")
        _check_number(self.promotion_margin, f"{path}.promotion_margin", low=0.0)
        if self.promotion_margin >= 200:
            raise PolicyError(
                f"{path}.promotion_margin",
                f"margin {self.promotion_margin} must be below 200 points (one tier's width)",
                hint="otherwise promotion into the maximum tier could never happen",
            )
        _check_duration(self.promotion_hold, f"{path}.promotion_hold", positive=False)


@dataclass(frozen=True, slots=True)
class RecomputePolicy:
    """When time alone has moved a score enough to recompute it (see trust.recompute)."""

    tolerance_points: float
    min_interval: timedelta

    def _check(self, path: str) -> None:
        _check_number(self.tolerance_points, f"{path}.tolerance_points", low=0.0)
        if self.tolerance_points <= 0:
            raise PolicyError(f"{path}.tolerance_points", "must be greater than 0")
        _check_duration(self.min_interval, f"{path}.min_interval", positive=False)


@dataclass(frozen=True, slots=True)
class AgtPolicy:
    """Settings for the AGT-style :class:`trust.TrustScorer` mapping."""

    violation_severity: Severity

    def _check(self, path: str) -> None:
        if not isinstance(self.violation_severity, Severity):
            raise PolicyError(f"{path}.violation_severity", "must be a Severity")


@dataclass(frozen=True, slots=True)
class Policy:
    """A complete, validated trust policy. Build with :meth:`default`, :meth:`load`,
    :meth:`from_yaml` or :meth:`from_mapping`; direct construction is validated too."""

    weights: Weights
    success_rate: FadingFactorPolicy
    error_budget_remaining: FadingFactorPolicy
    violation_recency: ViolationPolicy
    credential_age: CredentialPolicy
    audit_log_completeness: FadingFactorPolicy
    rings: RingPolicy
    recompute: RecomputePolicy
    agt: AgtPolicy
    # Weights divided by their sum, in FACTOR_NAMES order; computed once.
    normalised_weights: tuple[float, ...] = field(init=False, repr=False, compare=False)
    #: The policy's numbers flattened for scoring (trust.kernel); built once.
    kernel: ScoringKernel = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.weights._check("weights")
        self.success_rate._check("factors.success_rate")
        self.error_budget_remaining._check("factors.error_budget_remaining")
        self.violation_recency._check("factors.violation_recency")
        self.credential_age._check("factors.credential_age")
        self.audit_log_completeness._check("factors.audit_log_completeness")
        self.rings._check("rings")
        self.recompute._check("recompute")
        self.agt._check("agt")
        raw = self.weights.as_tuple()
        total = sum(raw)
        object.__setattr__(self, "normalised_weights", tuple(w / total for w in raw))
        object.__setattr__(self, "kernel", ScoringKernel(self))

    # -- construction ----------------------------------------------------------

    @classmethod
    def default(cls) -> Policy:
        """The built-in policy (identical to the packaged ``default_policy.yaml``)."""
        return _DEFAULT

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<mapping>") -> Policy:
        """Validate ``data`` (keys it omits keep their defaults) and build a policy."""
        if not isinstance(data, Mapping):
            raise PolicyError(
                "", f"a policy is a mapping, got {type(data).__name__}", source=source
            )
        merged = _DEFAULT.to_mapping()
        _merge(merged, data, "", source)
        try:
            return _build(merged)
        except PolicyError as error:
            raise PolicyError(error.path, error.problem, source=source, hint=error.hint) from None

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<yaml>") -> Policy:
        """Parse a YAML policy document (an empty document is the default policy)."""
        try:
            data = load_yaml(text)
        except DuplicateKeyError as error:
            raise PolicyError(
                "", str(error), source=source, hint="each key may appear once"
            ) from None
        except UnhashableKeyError as error:
            raise PolicyError("", str(error), source=source) from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or "malformed YAML"
            raise PolicyError("", f"not valid YAML{where}: {problem}", source=source) from None
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise PolicyError(
                "",
                f"a policy is a mapping of keys, got a YAML {type(data).__name__}",
                source=source,
            )
        return cls.from_mapping(data, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        """Read and validate a YAML policy file (the only I/O ``trust`` ever does)."""
        source = os.fspath(path)
        try:
            with open(source, "rb") as handle:
                raw = handle.read(_MAX_POLICY_BYTES + 1)
        except OSError as error:
            raise PolicyError(
                "",
                f"cannot read the file: {error.strerror or error}",
                source=source,
                hint="check the path and its permissions",
            ) from None
        if len(raw) > _MAX_POLICY_BYTES:
            raise PolicyError("", f"file is larger than {_MAX_POLICY_BYTES} bytes", source=source)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError("", "file is not UTF-8 text", source=source) from None
        return cls.from_yaml(text, source=source)

    # -- output ----------------------------------------------------------------

    def to_mapping(self) -> dict[str, Any]:
        """This policy as plain data in the YAML layout (``from_mapping`` round-trips it)."""

        def fading(f: FadingFactorPolicy) -> dict[str, Any]:
            return {
                "prior": f.prior,
                "staleness_half_life": format_duration(f.staleness_half_life),
                "zero_at": f.zero_at,
                "full_at": f.full_at,
            }

        v = self.violation_recency
        c = self.credential_age
        s = v.severity_weights
        return {
            "version": POLICY_VERSION,
            "weights": dict(zip(FACTOR_NAMES, self.weights.as_tuple(), strict=True)),
            "factors": {
                "success_rate": fading(self.success_rate),
                "error_budget_remaining": fading(self.error_budget_remaining),
                "violation_recency": {
                    "half_life": format_duration(v.half_life),
                    "clean_record_prior": v.clean_record_prior,
                    "clean_record_half_life": format_duration(v.clean_record_half_life),
                    "severity_weights": {
                        "low": s.low,
                        "medium": s.medium,
                        "high": s.high,
                        "critical": s.critical,
                    },
                },
                "credential_age": {
                    "prior": c.prior,
                    "soft_limit": format_duration(c.soft_limit),
                    "hard_limit": format_duration(c.hard_limit),
                    "floor": c.floor,
                },
                "audit_log_completeness": fading(self.audit_log_completeness),
            },
            "rings": {
                "tier_rings": {
                    t.value: r.label
                    for t, r in zip(TIERS, self.rings.tier_rings.as_tuple(), strict=True)
                },
                "promotion_margin": self.rings.promotion_margin,
                "promotion_hold": format_duration(self.rings.promotion_hold),
            },
            "recompute": {
                "tolerance_points": self.recompute.tolerance_points,
                "min_interval": format_duration(self.recompute.min_interval),
            },
            "agt": {"violation_severity": self.agt.violation_severity.value},
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_mapping(), sort_keys=False)

    # -- helpers used by the scoring code ---------------------------------------

    def ring_for_tier(self, tier: Tier) -> ExecutionRing:
        return self.rings.tier_rings.ring(tier)


def default_policy_yaml() -> str:
    """The text of the packaged ``trust/default_policy.yaml``."""
    return resources.files("trust").joinpath("default_policy.yaml").read_text("utf-8")


# -- validation helpers ----------------------------------------------------------


def _seconds(value: object) -> float:
    # Validation (with the key path) happens in Policy; here only a timedelta converts.
    return value.total_seconds() if isinstance(value, timedelta) else math.nan


def _check_number(value: object, path: str, *, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(path, f"must be a number, got {_kind(value)}")
    if not math.isfinite(value):
        raise PolicyError(path, f"must be a finite number, got {value!r}")
    if value < low:
        word = "negative" if low == 0 else f"below {low}"
        raise PolicyError(path, f"must not be {word}, got {value!r}")
    if high is not None and value > high:
        raise PolicyError(path, f"must be at most {high}, got {value!r}")


def _check_duration(value: object, path: str, *, positive: bool) -> None:
    if not isinstance(value, timedelta):
        raise PolicyError(path, f"must be a duration, got {_kind(value)}")
    if value < timedelta(0) or (positive and value == timedelta(0)):
        raise PolicyError(
            path, f"must be {'greater than 0' if positive else 'at least 0'}, got {value}"
        )


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _merge(base: dict[str, Any], over: Mapping[Any, Any], path: str, source: str) -> None:
    """Overlay ``over`` on ``base`` in place; unknown keys and shape changes are errors."""
    for key, value in over.items():
        if not isinstance(key, str):
            raise PolicyError(path, f"keys are names, got {_kind(key)} as a key", source=source)
        here = _join(path, key)
        if key not in base:
            raise PolicyError(
                here,
                "unknown key",
                source=source,
                hint="expected one of: " + ", ".join(base),
            )
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise PolicyError(
                    here,
                    f"must be a mapping, got {_kind(value)}",
                    source=source,
                    hint="keys: " + ", ".join(base[key]),
                )
            _merge(base[key], value, here, source)
        else:
            base[key] = value


def _num(m: Mapping[str, Any], key: str, path: str) -> float:
    value = m[key]
    _check_number(value, _join(path, key), low=-math.inf)
    return float(value)


def _dur(m: Mapping[str, Any], key: str, path: str) -> timedelta:
    value = m[key]
    here = _join(path, key)
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PolicyError(here, f"must be a duration ({DURATION_FORMS}), got {_kind(value)}")
    if isinstance(value, str):
        parsed = parse_duration(value)
        if parsed is None:
            raise PolicyError(here, f"{value[:40]!r} is not a duration ({DURATION_FORMS})")
        return parsed
    if not math.isfinite(value) or value < 0:
        raise PolicyError(here, f"must be a non-negative duration, got {value!r}")
    if value > 10 * 365 * 86400:
        raise PolicyError(here, f"{value!r} seconds is more than ten years")
    return timedelta(seconds=value)


def _ring(value: object, path: str) -> ExecutionRing:
    if isinstance(value, ExecutionRing):
        return value
    if isinstance(value, str):
        ring = ExecutionRing.parse(value)
        if ring is not None:
            return ring
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
        return ExecutionRing(value)
    raise PolicyError(
        path,
        f"{_kind(value)} is not an execution ring",
        hint="use kernel, system, user, sandbox (or 0..3)",
    )


def _severity(value: object, path: str) -> Severity:
    if isinstance(value, Severity):
        return value
    if isinstance(value, str):
        try:
            return Severity(value.lower())
        except ValueError:
            pass
    raise PolicyError(
        path,
        f"{_kind(value)} is not a severity",
        hint="use one of: " + ", ".join(s.value for s in Severity),
    )


def _build(m: Mapping[str, Any]) -> Policy:
    version = m["version"]
    if isinstance(version, bool) or version != POLICY_VERSION:
        raise PolicyError(
            "version",
            f"unsupported policy version {version!r}",
            hint=f"this release reads version {POLICY_VERSION}",
        )
    w = m["weights"]
    weights = Weights(*(_num(w, name, "weights") for name in FACTOR_NAMES))
    f = m["factors"]

    def fading(name: str) -> FadingFactorPolicy:
        path = f"factors.{name}"
        section = f[name]
        return FadingFactorPolicy(
            prior=_num(section, "prior", path),
            staleness_half_life=_dur(section, "staleness_half_life", path),
            zero_at=_num(section, "zero_at", path),
            full_at=_num(section, "full_at", path),
        )

    v = f["violation_recency"]
    vp = "factors.violation_recency"
    sw = v["severity_weights"]
    swp = f"{vp}.severity_weights"
    violation = ViolationPolicy(
        half_life=_dur(v, "half_life", vp),
        clean_record_prior=_num(v, "clean_record_prior", vp),
        clean_record_half_life=_dur(v, "clean_record_half_life", vp),
        severity_weights=SeverityWeights(
            low=_num(sw, "low", swp),
            medium=_num(sw, "medium", swp),
            high=_num(sw, "high", swp),
            critical=_num(sw, "critical", swp),
        ),
    )
    c = f["credential_age"]
    cp = "factors.credential_age"
    credential = CredentialPolicy(
        prior=_num(c, "prior", cp),
        soft_limit=_dur(c, "soft_limit", cp),
        hard_limit=_dur(c, "hard_limit", cp),
        floor=_num(c, "floor", cp),
    )
    r = m["rings"]
    tr = r["tier_rings"]
    tier_rings = TierRings(*(_ring(tr[t.value], f"rings.tier_rings.{t.value}") for t in TIERS))
    rings = RingPolicy(
        tier_rings=tier_rings,
        promotion_margin=_num(r, "promotion_margin", "rings"),
        promotion_hold=_dur(r, "promotion_hold", "rings"),
    )
    rc = m["recompute"]
    recompute = RecomputePolicy(
        tolerance_points=_num(rc, "tolerance_points", "recompute"),
        min_interval=_dur(rc, "min_interval", "recompute"),
    )
    agt = AgtPolicy(
        violation_severity=_severity(m["agt"]["violation_severity"], "agt.violation_severity")
    )
    return Policy(
        weights=weights,
        success_rate=fading("success_rate"),
        error_budget_remaining=fading("error_budget_remaining"),
        violation_recency=violation,
        credential_age=credential,
        audit_log_completeness=fading("audit_log_completeness"),
        rings=rings,
        recompute=recompute,
        agt=agt,
    )


_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)

_DEFAULT = Policy(
    weights=Weights(
        success_rate=0.25,
        error_budget_remaining=0.20,
        violation_recency=0.20,
        credential_age=0.15,
        audit_log_completeness=0.20,
    ),
    success_rate=FadingFactorPolicy(
        prior=0.5, staleness_half_life=24 * _HOUR, zero_at=0.5, full_at=1.0
    ),
    error_budget_remaining=FadingFactorPolicy(
        prior=0.5, staleness_half_life=24 * _HOUR, zero_at=0.0, full_at=1.0
    ),
    violation_recency=ViolationPolicy(
        half_life=7 * _DAY,
        clean_record_prior=0.5,
        clean_record_half_life=7 * _DAY,
        severity_weights=SeverityWeights(low=0.1, medium=0.3, high=0.6, critical=1.0),
    ),
    credential_age=CredentialPolicy(
        prior=0.5, soft_limit=30 * _DAY, hard_limit=45 * _DAY, floor=0.0
    ),
    audit_log_completeness=FadingFactorPolicy(
        prior=0.5, staleness_half_life=72 * _HOUR, zero_at=0.0, full_at=1.0
    ),
    rings=RingPolicy(
        tier_rings=TierRings(
            untrusted=ExecutionRing.SANDBOX,
            low=ExecutionRing.SANDBOX,
            medium=ExecutionRing.USER,
            high=ExecutionRing.SYSTEM,
            maximum=ExecutionRing.KERNEL,
        ),
        promotion_margin=25,
        promotion_hold=timedelta(minutes=10),
    ),
    recompute=RecomputePolicy(tolerance_points=5, min_interval=timedelta(minutes=1)),
    agt=AgtPolicy(violation_severity=Severity.MEDIUM),
)
