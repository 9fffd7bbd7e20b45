"""trustmesh agent-side library: identities, keys, signed messages, SVIDs, registry client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mesh.identity import AgentIdentity

__all__ = ["AgentIdentity"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a light module (mesh.errors, mesh.did) does not load key files
    # and cryptography.
    if name == "AgentIdentity":
        from mesh.identity import AgentIdentity

        return AgentIdentity
    raise AttributeError(f"module 'mesh' has no attribute {name!r}")
