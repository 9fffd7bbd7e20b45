"""Key history: an agent's keys under its DID, as a log anyone can verify from the inception key.

Each rotation is signed by the current key and by the next key; entries are
hash-chained and bound to the DID. The JSON format is specified in docs/identity.md.
"""

from mesh.keyhistory.entry import Entry, Inception, Rotation
from mesh.keyhistory.history import FORMAT, KeyHistory
from mesh.keyhistory.period import KeyPeriod, KeyStatus

__all__ = [
    "FORMAT",
    "Entry",
    "Inception",
    "KeyHistory",
    "KeyPeriod",
    "KeyStatus",
    "Rotation",
]
