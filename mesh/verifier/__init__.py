"""Peer verification at scale: senders' keys from the registry, exact by its event stream.

    keys = PeerVerifier.connect("registry:8443", tls=tls).start()  # follows Watch
    verifier = Verifier(keys, audience=my_did, replay=replay_guard_from_config(setting))
    message = verifier.verify(Envelope.from_json(wire))

See docs/verification.md.
"""

from mesh.verifier.errors import KeyStatusUnavailable
from mesh.verifier.peer import (
    DEFAULT_GRACE,
    DEFAULT_MAX_STALENESS,
    WATCHED_TYPES,
    PeerVerifier,
)
from mesh.verifier.record import ResolutionError
from mesh.verifier.source import DIDSource, RegistrySource

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_MAX_STALENESS",
    "WATCHED_TYPES",
    "DIDSource",
    "KeyStatusUnavailable",
    "PeerVerifier",
    "RegistrySource",
    "ResolutionError",
]
