"""Why the peer verifier could not establish a sender's keys."""

from __future__ import annotations

from mesh.envelope.errors import UnknownKey


class KeyStatusUnavailable(UnknownKey):
    """Rule 2, key: the sender's key status is not known well enough to accept anything.

    The registry is unreachable and the cached keys are older than the
    verifier's ``max_staleness`` (or were never fetched): the verifier fails
    closed rather than accept a key that may have been revoked meanwhile.
    """
