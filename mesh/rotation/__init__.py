"""Identity key rotation on the agent side: when to rotate, and which key signs when.

* :func:`rotation_due_at` — when an agent should rotate a key made at a given
  time: the rotation period (default 30 days) minus a random jitter, so a
  fleet that was enrolled together does not rotate in the same second.
* :class:`RotatingSigner` — the key to sign with at an instant, across a
  rotation: the old key until the rotation time, the new key from then on, so
  no message is ever signed with a key its verifiers would not accept.
* :data:`ROTATION_REQUIRED` — how the registry's refusals that a rotation
  cures begin (the key is past the hard age limit, or compromised).

The registry enforces the policy; see docs/rotation.md.
"""

from mesh.rotation.schedule import (
    DEFAULT_JITTER,
    DEFAULT_PERIOD,
    ROTATION_REQUIRED,
    RotationSchedule,
    key_age,
    next_rotation_time,
    rotation_due_at,
)
from mesh.rotation.signer import RotatingSigner

__all__ = [
    "DEFAULT_JITTER",
    "DEFAULT_PERIOD",
    "ROTATION_REQUIRED",
    "RotatingSigner",
    "RotationSchedule",
    "key_age",
    "next_rotation_time",
    "rotation_due_at",
]
