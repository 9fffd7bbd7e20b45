"""Errors raised by ``trust``.

``TrustError`` is the one base of this package. It derives from
:class:`mesh.errors.MeshError` (the project's single root, a pure module with no
dependencies) so a caller that catches ``MeshError`` also catches every trust
error, and ``str(error)`` is a complete, actionable message.
"""

from __future__ import annotations

from mesh.errors import MeshError


class TrustError(MeshError):
    """Base of every error raised by ``trust``."""


class PolicyError(TrustError):
    """A trust policy (YAML file or mapping) is invalid.

    ``path`` is the dotted key path of the offending value (for example
    ``weights.success_rate`` or ``rings.tier_rings.high``); ``source`` names the
    file or ``<mapping>``.
    """

    def __init__(
        self, path: str, problem: str, *, source: str = "<mapping>", hint: str | None = None
    ) -> None:
        self.path = path
        self.problem = problem
        self.source = source
        where = f"key '{path}'" if path else "top level"
        super().__init__(f"trust policy {source}: {where}: {problem}", hint=hint)


class SignalError(TrustError):
    """A trust input (signal) is malformed: out of range, naive timestamp, wrong type."""


class UnknownFactorError(TrustError):
    """A factor name given to :class:`trust.TrustScorer` is not one it knows."""
