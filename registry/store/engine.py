"""Opening the store: engine set-up for SQLite and PostgreSQL, and the ``Store``.

SQLite (the embedded default, ``<data_dir>/registry.db``):

* WAL journal, so readers never block the writer nor each other;
* ``synchronous=NORMAL`` by default (``StoreOptions.sqlite_synchronous``): in WAL
  mode a commit is then durable against a killed process but not against power
  loss, and is about 4x faster than ``FULL``. Use ``FULL`` where a power cut
  must not lose the last commits;
* foreign keys on; a busy timeout for other processes (e.g. ``mesh db`` run
  beside the server);
* one writer at a time: write transactions take a lock per database file
  (a thread lock inside the process, then ``<db>-writer.lock`` between
  processes, see :mod:`registry.filelock`) and then ``BEGIN IMMEDIATE``, so
  concurrent writers, ``--workers`` processes included, queue instead of
  failing with "database is locked" (SQLite's busy handler sleeps and retries
  blindly, up to 100 ms at a time, and a deferred transaction that later tries
  to write can deadlock). Readers take no lock.

PostgreSQL (``postgresql+psycopg://...``; ``postgresql://`` and ``postgres://``
mean the same): a connection pool with ``pool_pre_ping`` so connections the
server or a proxy dropped are replaced instead of failing a request, and a
connect timeout so an unreachable database fails fast. Any back end being
unreachable raises ``StoreUnavailable``.

All calls are blocking and thread-safe: one ``Store`` is shared by every worker
thread; each transaction or read view uses its own pooled connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import QueuePool

from registry.filelock import FileLock
from registry.store._internal.dberrors import translated
from registry.store._internal.group import (
    Batch,
    GroupCall,
    GroupStats,
    GroupWriter,
    Outcome,
    apply_calls,
    prepare_calls,
)
from registry.store._internal.unit import Unit
from registry.store.errors import InvalidArgument, StoreError, StoreUnavailable
from registry.store.records import AgentRecord, AuditRecord, EventRecord, Page
from registry.store.repos import audit as audit_repo
from registry.store.repos import events as events_repo
from registry.store.uow import ReadView, Transaction

SQLITE_FILE = "registry.db"
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
#: PostgreSQL NOTIFY channel: payload is the highest event seq of the committed transaction.
EVENTS_CHANNEL = "trustmesh_events"

_WRITE_OPTION = "trustmesh_write"

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Tuning knobs. ``None`` pool sizes pick per-back-end defaults."""

    #: SQLite ``PRAGMA synchronous``: NORMAL (default; survives a process kill,
    #: not a power loss) or FULL (survives power loss, ~4x slower commits).
    sqlite_synchronous: str = "NORMAL"
    #: How long a writer waits for the write lock (this and other processes).
    busy_timeout_seconds: float = 30.0
    pool_size: int | None = None
    max_overflow: int | None = None
    #: How long a caller waits for a pooled connection before StoreUnavailable.
    pool_timeout_seconds: float = 30.0
    #: PostgreSQL connect timeout: an unreachable server fails after this.
    connect_timeout_seconds: int = 5
    #: PostgreSQL ``lock_timeout``: a writer waiting longer than this for a row
    #: lock (e.g. the event counter) gives up with StoreUnavailable. 0 = never.
    pg_lock_timeout_seconds: float = 30.0
    #: PostgreSQL ``idle_in_transaction_session_timeout``: the server ends a
    #: session that sits inside a transaction this long (a frozen replica), so
    #: it cannot hold the event counter's lock forever. 0 = never.
    pg_idle_in_transaction_timeout_seconds: float = 60.0
    echo: bool = False


# One lock per SQLite file, shared by every Store on it in this process and, through
# its lock file, with every other process (workers, `mesh db` commands).
_SQLITE_WRITE_LOCKS: dict[str, FileLock] = {}
_SQLITE_WRITE_LOCKS_GUARD = threading.Lock()


def _sqlite_write_lock(path: Path) -> FileLock:
    with _SQLITE_WRITE_LOCKS_GUARD:
        lock = _SQLITE_WRITE_LOCKS.get(str(path))
        if lock is None:
            lock = _SQLITE_WRITE_LOCKS[str(path)] = FileLock(
                path.with_name(path.name + "-writer.lock"), keep_open=False
            )
        return lock


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Store:
    """The registry's durable store. Create with :func:`open_store`."""

    def __init__(
        self,
        engine: Engine,
        *,
        options: StoreOptions,
        clock: Callable[[], datetime] = _utc_now,
        write_lock: FileLock | None = None,
    ) -> None:
        self._engine = engine
        self._options = options
        self._clock = clock
        self._write_lock = write_lock
        self._listeners: list[Callable[[int], None]] = []
        self._listeners_lock = threading.Lock()
        self._local = threading.local()
        self._group_writer: GroupWriter | None = None
        #: Counters of group commits (``submit``), for tests, benches and metrics.
        self.group_stats = GroupStats()

    # -- facts ---------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        """Either "sqlite" or "postgresql"."""
        return self._engine.dialect.name

    @property
    def url(self) -> str:
        """The database URL with any password hidden (safe to log)."""
        return self._engine.url.render_as_string(hide_password=True)

    def now(self) -> datetime:
        value = self._clock()
        if value.tzinfo is None:
            raise StoreError("the store clock returned a naive datetime")
        return value.astimezone(UTC)

    # -- units of work -------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A read-write unit of work; commits on normal exit, rolls back on error.

        Not re-entrant: opening a second transaction on the same thread while
        one is open raises StoreError (it would wait on the first one's locks
        forever). ``store.read()`` inside a transaction is fine.
        """
        if getattr(self._local, "in_transaction", False):
            raise StoreError(
                "a store transaction is already open on this thread",
                hint="use the open transaction's repositories instead of opening another",
            )
        self._local.in_transaction = True
        try:
            with self._transaction() as tx:
                yield tx
        finally:
            self._local.in_transaction = False

    @contextmanager
    def _transaction(self) -> Iterator[Transaction]:
        with self._write_unit() as unit:
            yield Transaction(unit)
        if unit.last_event_seq is not None:
            self._notify(unit.last_event_seq)

    @contextmanager
    def _write_unit(self) -> Iterator[Unit]:
        """One write transaction: the commit-time rows, then COMMIT; any error rolls
        all of it back. The one path by which the store writes."""
        with self._writer():
            with translated():
                conn = self._engine.connect()
            try:
                if self.dialect == "sqlite":
                    conn.execution_options(**{_WRITE_OPTION: True})
                with translated():
                    db_tx = conn.begin()
                unit = Unit(conn, now=self.now(), dialect=self.dialect, writable=True)
                try:
                    yield unit
                    self._before_commit(unit, conn)
                except BaseException:
                    unit.close()
                    _quiet_rollback(db_tx)
                    raise
                unit.close()
                with translated():
                    db_tx.commit()
            finally:
                _quiet_close(conn)

    def _before_commit(self, unit: Unit, conn: Connection) -> None:
        """Write the rows queued for commit time, then (PostgreSQL) the NOTIFY."""
        # Counter order (events before audit), as _internal.sequence requires.
        events_repo.flush_pending(unit)
        audit_repo.flush_pending(unit)
        if unit.last_event_seq is not None and self.dialect == "postgresql":
            with translated():
                # Delivered at commit, to every replica that LISTENs.
                conn.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": EVENTS_CHANNEL, "payload": str(unit.last_event_seq)},
                )

    # -- group commit --------------------------------------------------------

    def submit(self, work: Callable[[Transaction], T]) -> Future[T]:
        """Run ``work(tx)`` in a shared write transaction; a future of its result.

        Calls submitted while a group is being committed are applied together
        by one writer thread in ONE transaction (one BEGIN, one COMMIT, one
        fsync where the back end syncs), each in its own SAVEPOINT: a call that
        raises rolls back only its own writes and its future gets its own
        exception; the others commit. Futures are resolved after the COMMIT
        (or with the commit's error for every call of the group, none of whose
        writes then exist). Everything ``store.transaction()`` guarantees holds
        per call: its writes, events and audit entries commit together or not
        at all, event seqs are in commit order without gaps, the audit chain
        stays linked. ``tx.events.append_at_commit`` / ``tx.audit.append_at_commit``
        let a whole group share one counter update and one insert.

        ``work`` runs on the writer thread: it must not block on other
        threads nor open another transaction, and should only touch the store
        (do CPU-heavy work before submitting, or in ``Batch.prepare``). All
        calls of a group share ``tx.now``, taken when the group starts. Append
        events with ``events.append_at_commit`` there (audit entries are always
        appended at commit): the immediate ``events.append`` works too, but takes
        the counter row inside the call's savepoint and holds it for the rest of
        the group's transaction.
        """
        return self._group().submit(GroupCall(work))

    def submit_batched(self, batch: Batch[I, R], item: I) -> Future[R]:
        """Like :meth:`submit`, for an item of ``batch``: the writer thread first runs
        ``batch.prepare(item)`` outside the transaction, then the items of one batch
        in a group are written together with set-based statements
        (``batch.apply_all``), falling back to ``batch.apply_one`` for the items it
        refuses. Same guarantees per item as :meth:`submit`."""
        return self._group().submit(GroupCall(None, batch, item))

    def write(self, work: Callable[[Transaction], T]) -> T:
        """:meth:`submit` and wait: ``work(tx)``'s result once committed, or its error."""
        if getattr(self._local, "in_transaction", False):
            raise StoreError(
                "a store transaction is already open on this thread",
                hint="use the open transaction's repositories instead of opening another",
            )
        return self.submit(work).result()

    @property
    def queued_writes(self) -> int:
        """Calls submitted and not yet taken by the writer thread."""
        writer = self._group_writer
        return 0 if writer is None else writer.queued

    def _group(self) -> GroupWriter:
        writer = self._group_writer
        if writer is None:
            with self._listeners_lock:
                if self._group_writer is None:
                    self._group_writer = GroupWriter(self._apply_group)
                writer = self._group_writer
        return writer

    def _apply_group(self, calls: list[GroupCall]) -> None:
        """Apply ``calls`` in one transaction, each in a savepoint (see :meth:`submit`)."""
        calls = prepare_calls(calls)
        if not calls:
            return
        outcomes: list[Outcome] = []
        unit: Unit | None = None
        stats = self.group_stats
        stats.groups += 1
        stats.calls += len(calls)
        stats.largest = max(stats.largest, len(calls))
        self._local.in_transaction = True
        try:
            with self._write_unit() as unit:
                outcomes = apply_calls(unit, Transaction(unit), calls, stats)
        except BaseException as error:
            # Nothing of the group exists: each call fails with the group's error.
            stats.failed_groups += 1
            for call in calls:
                call.fail(error)
            return
        finally:
            self._local.in_transaction = False
        for call, ok, value in outcomes:
            if ok:
                call.succeed(value)
            else:
                call.fail(value)
        if unit is not None and unit.last_event_seq is not None:
            self._notify(unit.last_event_seq)

    @contextmanager
    def read(self) -> Iterator[ReadView]:
        """Read-only repositories on one consistent snapshot (never blocks writers)."""
        with translated():
            conn = self._engine.connect()
        try:
            if self.dialect == "postgresql":
                # One snapshot for the whole view (e.g. a Watch snapshot plus its seq).
                conn.execution_options(isolation_level="REPEATABLE READ")
            with translated():
                db_tx = conn.begin()
            unit = Unit(conn, now=self.now(), dialect=self.dialect, writable=False)
            try:
                yield ReadView(unit)
            finally:
                unit.close()
                _quiet_rollback(db_tx)
        finally:
            _quiet_close(conn)

    @contextmanager
    def _writer(self) -> Iterator[None]:
        lock = self._write_lock
        if lock is None:
            yield
            return
        try:
            acquired = lock.acquire(timeout=self._options.busy_timeout_seconds)
        except OSError as error:  # the lock file beside the database cannot be opened
            raise StoreUnavailable(
                f"cannot open the database write lock {lock.path}: {error.strerror}",
                hint="the database's directory must be writable by the registry",
            ) from error
        if not acquired:
            raise StoreUnavailable(
                "timed out waiting for the database write lock",
                hint="the registry is overloaded or a transaction is stuck; retry shortly",
            )
        try:
            yield
        finally:
            lock.release()

    # -- commit listeners ----------------------------------------------------

    def add_commit_listener(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call ``listener(last_seq)`` after each commit that appended events.

        It runs on the committing thread, so it must be quick and must not raise
        (e.g. ``loop.call_soon_threadsafe(hub.notify)``). Returns a function
        that removes the listener. Other replicas learn of events through
        ``EVENTS_CHANNEL`` (PostgreSQL NOTIFY) or by polling.
        """
        with self._listeners_lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def _notify(self, seq: int) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(seq)
            except Exception:  # noqa: S112 - a listener's bug must not fail a committed write
                continue

    # -- schema --------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to ``revision`` (default: the newest). Safe to run
        from several replicas at once: PostgreSQL serialises them on an advisory
        lock, SQLite on its write lock."""
        from registry.store.migrate import run_upgrade

        with self._writer():
            run_upgrade(self._engine, revision)

    def schema_revision(self) -> str | None:
        """The migration revision the database is at (None: not migrated)."""
        from registry.store.migrate import current_revision

        return current_revision(self._engine)

    def check_schema(self) -> None:
        """Raise SchemaNotReady unless the database is at the newest revision."""
        from registry.store.migrate import check_at_head

        check_at_head(self._engine)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial query."""
        with translated(), self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        """Finish queued group commits and close every pooled connection. The store
        may not be used afterwards."""
        writer = self._group_writer
        if writer is not None:
            writer.close()
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- read helpers (each in its own read view) ----------------------------

    def get_agent(self, did: str) -> AgentRecord:
        with self.read() as view:
            return view.agents.get(did)

    def find_agent(self, did: str) -> AgentRecord | None:
        with self.read() as view:
            return view.agents.find(did)

    def list_agents(
        self, *, status: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Page[AgentRecord]:
        with self.read() as view:
            return view.agents.list(status=status, page_size=page_size, page_token=page_token)

    def events_since(self, after_seq: int, limit: int = 1000) -> list[EventRecord]:
        with self.read() as view:
            return view.events.since(after_seq, limit=limit)

    def latest_event_seq(self) -> int:
        with self.read() as view:
            return view.events.latest_seq()

    #: Same as :meth:`latest_event_seq`.
    latest_seq = latest_event_seq

    def audit_rows(self, *, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        with self.read() as view:
            return view.audit.rows(after_seq=after_seq, limit=limit)


def _quiet_rollback(db_tx: Any) -> None:
    # The connection may already be gone (that is why we are rolling back);
    # the original error is the one worth raising.
    try:
        if db_tx.is_active:
            db_tx.rollback()
    except Exception:  # noqa: S110
        pass


def _quiet_close(conn: Connection) -> None:
    try:
        conn.close()
    except Exception:  # noqa: S110
        pass


# -- opening -----------------------------------------------------------------


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{(Path(data_dir) / SQLITE_FILE).resolve()}"


def open_store(
    database_url: str | None,
    data_dir: Path,
    *,
    options: StoreOptions | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Store:
    """Open (not migrate) the store: ``database_url``, or SQLite in ``data_dir``.

    Nothing connects yet; the first use (usually :meth:`Store.upgrade`) does,
    and raises StoreUnavailable if the database cannot be reached. Bad URLs
    and options raise InvalidArgument.
    """
    options = options or StoreOptions()
    url = _parse_url(database_url or default_database_url(data_dir))
    backend = url.get_backend_name()
    if backend == "sqlite":
        engine, lock = _sqlite_engine(url, options)
    elif backend == "postgresql":
        engine, lock = _postgres_engine(url, options), None
    else:
        raise InvalidArgument(
            f"unsupported database {backend!r}",
            hint="use sqlite:///path/registry.db or postgresql+psycopg://user@host/db",
        )
    return Store(engine, options=options, clock=clock or _utc_now, write_lock=lock)


def _parse_url(raw: str) -> URL:
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    try:
        return make_url(raw)
    except ArgumentError as error:
        raise InvalidArgument(
            "the database URL is malformed",
            hint="e.g. sqlite:///var/lib/mesh/registry.db or postgresql+psycopg://mesh@db/mesh",
        ) from error


def _sqlite_engine(url: URL, options: StoreOptions) -> tuple[Engine, FileLock]:
    if url.drivername not in ("sqlite", "sqlite+pysqlite"):
        raise InvalidArgument(f"unsupported SQLite driver {url.drivername!r}; use sqlite:///")
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        raise InvalidArgument(
            "the registry needs a SQLite database file, not an in-memory database",
            hint="use sqlite:///path/to/registry.db",
        )
    sync = options.sqlite_synchronous.upper()
    if sync not in SYNCHRONOUS_MODES:
        raise InvalidArgument(
            f"sqlite_synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}; got {sync!r}"
        )
    path = Path(database).expanduser().resolve()
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
    except OSError as error:
        raise StoreUnavailable(
            f"cannot create the data directory {path.parent}: {error}"
        ) from error
    busy_ms = int(options.busy_timeout_seconds * 1000)
    engine = create_engine(
        url.set(drivername="sqlite+pysqlite", database=str(path)),
        poolclass=QueuePool,
        pool_size=options.pool_size if options.pool_size is not None else 8,
        max_overflow=options.max_overflow if options.max_overflow is not None else 64,
        pool_timeout=options.pool_timeout_seconds,
        connect_args={"check_same_thread": False, "timeout": options.busy_timeout_seconds},
        echo=options.echo,
    )

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (see on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {sync}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE_OPTION):
            # Take the write lock now, not at the first write: no deadlock on upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine, _sqlite_write_lock(path)


def _postgres_engine(url: URL, options: StoreOptions) -> Engine:
    if url.drivername in ("postgresql", "postgresql+psycopg"):
        url = url.set(drivername="postgresql+psycopg")
    else:
        raise InvalidArgument(
            f"unsupported PostgreSQL driver {url.drivername!r}",
            hint="use postgresql+psycopg:// (psycopg 3)",
        )
    connect_args: dict[str, Any] = {
        "connect_timeout": options.connect_timeout_seconds,
        "application_name": "trustmesh-registry",
    }
    settings = []
    if options.pg_lock_timeout_seconds > 0:
        settings.append(f"-c lock_timeout={int(options.pg_lock_timeout_seconds * 1000)}")
    if options.pg_idle_in_transaction_timeout_seconds > 0:
        ms = int(options.pg_idle_in_transaction_timeout_seconds * 1000)
        settings.append(f"-c idle_in_transaction_session_timeout={ms}")
    if settings:
        # Startup options; a pooler that refuses them (PgBouncer in transaction
        # mode) needs both timeouts set to 0 here and configured on the server.
        connect_args["options"] = " ".join(settings)
    return create_engine(
        url,
        pool_size=options.pool_size if options.pool_size is not None else 10,
        max_overflow=options.max_overflow if options.max_overflow is not None else 20,
        pool_timeout=options.pool_timeout_seconds,
        pool_pre_ping=True,
        connect_args=connect_args,
        echo=options.echo,
    )
