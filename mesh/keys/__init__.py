"""An agent's Ed25519 identity keys: generation, key ids, key files."""

from mesh.keys.identity_key import IdentityKey, key_id

__all__ = ["IdentityKey", "key_id"]
