"""The registry's durable store: SQLite (embedded) or PostgreSQL (replicas).

    store = open_store(config.database_url or None, config.data_dir)
    store.upgrade()
    with store.transaction() as tx:
        tx.agents.create(did=did, name=name, spiffe_id=sid)
        tx.events.append("agent.registered", did, {...})
        tx.audit.append(actor, "agent.register", did, {...})

Many concurrent writers share transactions through ``store.submit(work)``
(group commit; ``store.submit_batched`` for set-based batches).

Synchronous and thread-safe: call it from worker threads. Errors are the
named exceptions of ``registry.store.errors``; results are the dataclasses of
``registry.store.records``.
"""

from registry.store._internal.dberrors import SchemaNotReady
from registry.store._internal.group import Batch, Refused
from registry.store.audit import GENESIS_HASH, verify_audit_chain
from registry.store.engine import (
    EVENTS_CHANNEL,
    Store,
    StoreOptions,
    default_database_url,
    open_store,
)
from registry.store.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    StoreError,
    StoreUnavailable,
)
from registry.store.migrate import head_revision, upgrade
from registry.store.records import (
    AgentKeyRecord,
    AgentRecord,
    AuditRecord,
    AuditVerification,
    ChallengeRecord,
    EventRecord,
    JoinTokenRecord,
    Page,
    PrincipalRecord,
    SvidRecord,
)
from registry.store.repos.tokens import hash_token
from registry.store.uow import ReadView, Transaction

__all__ = [
    "EVENTS_CHANNEL",
    "GENESIS_HASH",
    "AgentKeyRecord",
    "AgentRecord",
    "AlreadyExists",
    "AuditRecord",
    "AuditVerification",
    "Batch",
    "ChallengeRecord",
    "Conflict",
    "EventRecord",
    "FailedPrecondition",
    "InvalidArgument",
    "JoinTokenRecord",
    "NotFound",
    "Page",
    "PrincipalRecord",
    "ReadView",
    "Refused",
    "SchemaNotReady",
    "Store",
    "StoreError",
    "StoreOptions",
    "StoreUnavailable",
    "SvidRecord",
    "Transaction",
    "default_database_url",
    "hash_token",
    "head_revision",
    "open_store",
    "upgrade",
    "verify_audit_chain",
]
