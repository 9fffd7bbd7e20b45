"""An agent's Ed25519 identity keys: generation, key ids, key files."""

from mesh.keys.identity_key import IdentityKey, key_id
from mesh.keys.keyfile import (
    KEY_HISTORY_FILE,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    load_identity,
    read_key_history,
    read_private_key,
    read_public_key,
    save_identity,
    write_private_key,
    write_public_key,
)

__all__ = [
    "KEY_HISTORY_FILE",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "IdentityKey",
    "key_id",
    "load_identity",
    "read_key_history",
    "read_private_key",
    "read_public_key",
    "save_identity",
    "write_private_key",
    "write_public_key",
]
