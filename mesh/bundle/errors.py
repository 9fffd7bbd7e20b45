"""The error every trust bundle problem raises."""

from __future__ import annotations

from mesh.errors import MeshError


class BundleError(MeshError):
    """A SPIFFE trust bundle is malformed, or an authority cannot be placed in one."""
