"""The error every SVID problem raises."""

from __future__ import annotations

from mesh.errors import MeshError


class SVIDError(MeshError):
    """An SVID is malformed or does not validate.

    ``rule`` names the checklist step that failed (for example ``"uri-san"`` or
    ``"exp"``), so callers can map failures to metrics or status codes without
    parsing messages.
    """

    def __init__(self, rule: str, message: str, *, hint: str | None = None) -> None:
        self.rule = rule
        super().__init__(message, hint=hint)
