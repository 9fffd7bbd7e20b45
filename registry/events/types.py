"""Event type names as stored, and their wire enum.

The store keeps the dotted names (readable in SQL and in the audit trail);
``EventService.Watch`` sends the ``EventType`` enum.
"""

from __future__ import annotations

from typing import Final

from mesh.v1 import events_pb2

AGENT_REGISTERED: Final = "agent.registered"
KEY_ROTATED: Final = "agent.key_rotated"
AGENT_REVOKED: Final = "agent.revoked"
AGENT_TERMINATED: Final = "agent.terminated"
SCORE_CHANGED: Final = "trust.score_changed"
TIER_CHANGED: Final = "trust.tier_changed"
RING_CHANGED: Final = "trust.ring_changed"
BUNDLE_CHANGED: Final = "bundle.changed"
KEY_COMPROMISED: Final = "agent.key_compromised"
ROTATION_REQUESTED: Final = "agent.rotation_requested"

TO_WIRE: Final[dict[str, int]] = {
    AGENT_REGISTERED: events_pb2.EVENT_TYPE_AGENT_REGISTERED,
    KEY_ROTATED: events_pb2.EVENT_TYPE_KEY_ROTATED,
    AGENT_REVOKED: events_pb2.EVENT_TYPE_AGENT_REVOKED,
    AGENT_TERMINATED: events_pb2.EVENT_TYPE_AGENT_TERMINATED,
    SCORE_CHANGED: events_pb2.EVENT_TYPE_SCORE_CHANGED,
    TIER_CHANGED: events_pb2.EVENT_TYPE_TIER_CHANGED,
    RING_CHANGED: events_pb2.EVENT_TYPE_RING_CHANGED,
    BUNDLE_CHANGED: events_pb2.EVENT_TYPE_BUNDLE_CHANGED,
    KEY_COMPROMISED: events_pb2.EVENT_TYPE_KEY_COMPROMISED,
    ROTATION_REQUESTED: events_pb2.EVENT_TYPE_ROTATION_REQUESTED,
}
FROM_WIRE: Final[dict[int, str]] = {wire: name for name, wire in TO_WIRE.items()}
