"""``did:mesh`` identifiers: derivation from the inception key, parsing, validation."""

from mesh.did.did import DID, DID_METHOD, DID_PREFIX, ID_BYTES

__all__ = ["DID", "DID_METHOD", "DID_PREFIX", "ID_BYTES"]
