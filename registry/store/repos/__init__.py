"""Repositories: one per table family, reached through a transaction or a read view."""

from registry.store.repos.agents import AgentReader, AgentRepository
from registry.store.repos.audit import AuditReader, AuditRepository
from registry.store.repos.challenges import ChallengeReader, ChallengeRepository
from registry.store.repos.events import EventReader, EventRepository
from registry.store.repos.keys import KeyReader, KeyRepository
from registry.store.repos.principals import PrincipalReader, PrincipalRepository
from registry.store.repos.svids import SvidReader, SvidRepository
from registry.store.repos.tokens import TokenReader, TokenRepository

__all__ = [
    "AgentReader",
    "AgentRepository",
    "AuditReader",
    "AuditRepository",
    "ChallengeReader",
    "ChallengeRepository",
    "EventReader",
    "EventRepository",
    "KeyReader",
    "KeyRepository",
    "PrincipalReader",
    "PrincipalRepository",
    "SvidReader",
    "SvidRepository",
    "TokenReader",
    "TokenRepository",
]
