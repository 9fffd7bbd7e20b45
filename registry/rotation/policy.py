"""How old an agent's identity key may get, and what a compromise blocks. Pure.

The limits are the trust policy's credential-age factor (trust/): past the
soft limit (default 30 days, the rotation period) the factor, and so the
score, falls; past the hard limit (default 45 days) the registry issues no
X.509-SVID until the agent rotates. A key marked compromised gets none at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mesh.rotation import ROTATION_REQUIRED
from registry.store.records import AgentKeyRecord

# A rotation entry may carry a time at most this far ahead of the registry's clock.
MAX_FUTURE_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class RotationPolicy:
    period: timedelta = timedelta(days=30)
    hard_limit: timedelta = timedelta(days=45)

    @classmethod
    def from_trust_policy(cls, policy: Any) -> RotationPolicy:
        c = policy.credential_age
        return cls(period=c.soft_limit, hard_limit=c.hard_limit)

    @classmethod
    def from_config(cls, config: Any) -> RotationPolicy:
        from trust import Policy

        if getattr(config, "trust_policy_file", ""):
            return cls.from_trust_policy(Policy.load(config.trust_policy_file))
        return cls.from_trust_policy(Policy.default())


def key_age(key: AgentKeyRecord, now: datetime) -> timedelta:
    return max(timedelta(0), now - key.valid_from)


def svid_refusal(key: AgentKeyRecord | None, now: datetime, policy: RotationPolicy) -> str | None:
    """Why an agent whose current key is ``key`` gets no SVID now, or None."""
    if key is None:
        return None
    if key.compromised_at is not None and key.compromised_at <= now:
        return (
            f"{ROTATION_REQUIRED}: key {key.kid} was marked compromised as of "
            f"{key.compromised_at.isoformat()}; rotate to a new key "
            "(`mesh rotate-credentials AGENT_DIR`), then renew"
        )
    age = key_age(key, now)
    if age >= policy.hard_limit:
        return (
            f"{ROTATION_REQUIRED}: key {key.kid} is {_days(age)} old, past the "
            f"{_days(policy.hard_limit)} limit; rotate it (`mesh rotate-credentials AGENT_DIR`), "
            "then renew"
        )
    return None


def _days(value: timedelta) -> str:
    days = value.total_seconds() / 86400
    return f"{days:.1f} days" if days < 10 else f"{days:.0f} days"


__all__ = ["MAX_FUTURE_SKEW", "RotationPolicy", "key_age", "svid_refusal"]
