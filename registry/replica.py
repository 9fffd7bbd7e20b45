"""Running several registry processes over one PostgreSQL database.

Three things make N ``mesh serve`` processes behave as one registry:

* **Shared secrets.** Every replica must sign with the same CA (an SVID issued
  by replica 1 is presented to replica 3), mint challenges replica 2 accepts,
  and serve the one operator credential the principal table knows. That
  material (``ca/``, ``challenge.key``, ``operator/operator.key``) lives in
  the first replica's data directory and is copied, sealed with AES-256-GCM
  under a key derived (scrypt) from the operator's replica key, into the
  ``replica_secrets`` table. Later replicas unpack it before they open their
  CA; a CA rotation on one replica is pushed there and pulled by the others
  within :data:`SYNC_INTERVAL` seconds (:meth:`Replication.sync`). One CA for
  all replicas keeps the bundle small and the CA schedule single-minded; the
  database only ever holds ciphertext.
* **Leadership.** Exactly one replica runs the scheduled jobs: the one holding
  a session-level advisory lock (:data:`LEADER_KEY`) on a dedicated connection.
  The holder pings every second; the connection sets ``idle_session_timeout``,
  so a holder that dies *or freezes* loses the lock within
  :data:`LEADER_TIMEOUT` seconds and another replica takes over. The recompute
  keeps its own advisory lock too, so even a leader that wakes up from a freeze
  cannot run a recompute beside its successor's.
* **Cross-replica wake-ups.** Each commit that appends events sends ``NOTIFY``
  on :data:`registry.store.EVENTS_CHANNEL`; every replica ``LISTEN``s on a
  dedicated connection and wakes its event hub at once. The event table stays
  the source of truth (the hub also polls), so a missed notification only
  delays an event, never loses it.

SQLite is the single-process case: none of this runs there.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import text

from mesh.errors import MeshError
from registry.logs import get_logger
from registry.periodic import Periodic
from registry.store import EVENTS_CHANNEL, Store

_log = get_logger("registry.replica")

#: Session advisory lock held by the replica that runs the scheduled jobs
#: (first 8 bytes of sha256("trustmesh.leader") as a signed int64).
LEADER_KEY = 0x5A0E3C71B2D94F18
#: Transaction advisory lock serialising pushes and pulls of the shared secrets.
SECRETS_KEY = 0x1D7C2E4B9A306F55
#: A leader that has not pinged for this long is cut off by PostgreSQL.
LEADER_TIMEOUT = 10.0
LEADER_PING = 1.0
SYNC_INTERVAL = 5.0
#: Prefix of the leader connection's application_name (``<prefix> pid=<pid>``).
LEADER_APPLICATION = "trustmesh-leader"

SECRETS_ROW = "bundle"
_MAGIC = b"TMRS1"
_AAD = b"trustmesh/replica-secrets/v1"
_SALT_BYTES, _NONCE_BYTES = 16, 12
#: What every replica shares, relative to the data directory.
_SHARED_FILES = ("challenge.key", "operator/operator.key")
_SHARED_DIRS = ("ca",)


class ReplicaKeyError(MeshError):
    """The replica key is missing, too short, or not the one the database was sealed with."""


# -- sealing -------------------------------------------------------------------------


def _derive(passphrase: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**14, r=8, p=1).derive(passphrase)


def seal(passphrase: bytes, payload: bytes) -> bytes:
    """``payload`` encrypted and authenticated under ``passphrase`` (scrypt + AES-256-GCM)."""
    salt, nonce = secrets.token_bytes(_SALT_BYTES), secrets.token_bytes(_NONCE_BYTES)
    return _MAGIC + salt + nonce + AESGCM(_derive(passphrase, salt)).encrypt(nonce, payload, _AAD)


def unseal(passphrase: bytes, sealed: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag

    head = len(_MAGIC)
    if not sealed.startswith(_MAGIC) or len(sealed) < head + _SALT_BYTES + _NONCE_BYTES + 16:
        raise ReplicaKeyError(
            "the shared replica secrets in the database are not in a known format",
            hint="upgrade this replica to the version the other replicas run",
        )
    salt = sealed[head : head + _SALT_BYTES]
    nonce = sealed[head + _SALT_BYTES : head + _SALT_BYTES + _NONCE_BYTES]
    try:
        return AESGCM(_derive(passphrase, salt)).decrypt(
            nonce, sealed[head + _SALT_BYTES + _NONCE_BYTES :], _AAD
        )
    except InvalidTag:
        raise ReplicaKeyError(
            "the replica key does not open the shared secrets in the database",
            hint="give every replica the same replica key (MESH_REPLICA_KEY) as the first one",
        ) from None


def pack(data_dir: Path) -> tuple[int, bytes]:
    """(CA bundle sequence, JSON of every shared file with its mode) from ``data_dir``."""
    files: dict[str, list[Any]] = {}
    paths = [data_dir / name for name in _SHARED_FILES]
    for directory in _SHARED_DIRS:
        root = data_dir / directory
        if root.is_dir():
            paths.extend(sorted(p for p in root.iterdir() if p.is_file()))
    for path in paths:
        name = path.name
        if name == ".lock" or name.endswith(".tmp") or not path.exists():
            continue
        relative = str(path.relative_to(data_dir))
        content = base64.b64encode(path.read_bytes()).decode()
        files[relative] = [path.stat().st_mode & 0o777, content]
    manifest = json.loads(base64.b64decode(files["ca/manifest.json"][1]))
    return int(manifest["sequence"]), json.dumps(files, sort_keys=True).encode()


def unpack(data_dir: Path, payload: bytes) -> int:
    """Write the shared files into ``data_dir`` (the CA manifest last); its CA sequence."""
    from registry.ca._internal.files import atomic_write, ensure_private_dir
    from registry.ca.keystore import KeyStore

    files: dict[str, list[Any]] = json.loads(payload)
    for directory in ("", *_SHARED_DIRS, "operator"):
        ensure_private_dir(data_dir / directory if directory else data_dir)
    keystore = KeyStore(data_dir / "ca")
    with keystore.locked():
        order = sorted(files, key=lambda name: name == "ca/manifest.json")
        for relative in order:
            mode, content = files[relative]
            target = (data_dir / relative).resolve()
            if data_dir.resolve() not in target.parents:
                raise ReplicaKeyError(f"the shared secrets name a path outside: {relative}")
            atomic_write(target, base64.b64decode(content), mode=int(mode))
        wanted = {data_dir / name for name in files}
        for stale in (data_dir / "ca").iterdir():
            if stale.is_file() and stale.name != ".lock" and stale not in wanted:
                stale.unlink()
    manifest = json.loads(base64.b64decode(files["ca/manifest.json"][1]))
    return int(manifest["sequence"])


def replica_key(config: Any) -> bytes | None:
    """The operator's replica key from the environment variable the config names."""
    name = getattr(config, "replica_key_env", "") or "MESH_REPLICA_KEY"
    value = os.environ.get(name, "")
    if not value:
        return None
    if len(value) < 16:
        raise ReplicaKeyError(
            f"{name} is too short ({len(value)} characters)",
            hint="use at least 16 random characters, e.g. `openssl rand -base64 32`",
        )
    return value.encode("utf-8")


def postgres_conninfo(store: Store) -> str:
    """A libpq URI for ``store``'s database (for dedicated, non-pooled connections)."""
    url = store.engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


# -- the replica -------------------------------------------------------------------------


class Replication:
    """This process's part in a replicated registry (inactive on SQLite)."""

    def __init__(self, store: Store, data_dir: Path, key: bytes | None) -> None:
        self.store = store
        self.data_dir = data_dir
        self.enabled = store.dialect == "postgresql"
        self.key = key if self.enabled else None
        self.leadership: Leadership | None = None
        self.listener: EventListener | None = None
        self._syncer: _CASync | None = None
        self._ca: Any = None
        self._on_ca_change: Callable[[], None] | None = None
        #: CA sequence last seen in the database (pushed or pulled).
        self.version = 0

    # -- shared secrets ---------------------------------------------------------------

    @contextlib.contextmanager
    def bootstrap(self) -> Iterator[None]:
        """Around the CA's first open: unpack the shared secrets if the database
        has them; otherwise, once the block has created them here, seal them in.

        Replicas starting together serialise on an advisory lock, so exactly one
        creates the CA and the others load it.
        """
        if self.key is None:
            if self.enabled:
                _log.warning(
                    "replica.secrets_not_shared",
                    hint="set MESH_REPLICA_KEY on every replica to run more than one",
                )
            yield
            return
        with self.store.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SECRETS_KEY})
            row = conn.execute(
                text("SELECT version, sealed FROM replica_secrets WHERE name = :n"),
                {"n": SECRETS_ROW},
            ).first()
            if row is not None:
                self.version = unpack(self.data_dir, unseal(self.key, bytes(row.sealed)))
                _log.info("replica.secrets_loaded", ca_sequence=self.version)
            yield
            if row is None:
                version, payload = pack(self.data_dir)
                conn.execute(
                    text(
                        "INSERT INTO replica_secrets (name, version, sealed, updated_at) "
                        "VALUES (:n, :v, :s, :t)"
                    ),
                    {"n": SECRETS_ROW, "v": version, "s": seal(self.key, payload),
                     "t": datetime.now(UTC)},
                )
                self.version = version
                _log.info("replica.secrets_shared", ca_sequence=version)

    def sync(self) -> str | None:
        """Push this replica's CA if it is newer than the database's, pull it if
        older. Returns "pushed", "pulled" or None."""
        if self.key is None or self._ca is None:
            return None
        ca = self._ca
        changed = False
        with self.store.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SECRETS_KEY})
            stored = conn.execute(
                text("SELECT version FROM replica_secrets WHERE name = :n"), {"n": SECRETS_ROW}
            ).scalar_one_or_none()
            local = int(ca.sequence)
            if stored is None or stored < local:
                version, payload = pack(self.data_dir)
                conn.execute(
                    text(
                        "UPDATE replica_secrets SET version = :v, sealed = :s, updated_at = :t "
                        "WHERE name = :n"
                    ),
                    {"n": SECRETS_ROW, "v": version, "s": seal(self.key, payload),
                     "t": datetime.now(UTC)},
                )
                self.version = version
                _log.info("replica.ca_pushed", ca_sequence=version)
                return "pushed"
            if stored > local:
                sealed = conn.execute(
                    text("SELECT sealed FROM replica_secrets WHERE name = :n"), {"n": SECRETS_ROW}
                ).scalar_one()
                self.version = unpack(self.data_dir, unseal(self.key, bytes(sealed)))
                changed = ca.reload()
                _log.info("replica.ca_pulled", ca_sequence=self.version)
        if changed and self._on_ca_change is not None:
            self._on_ca_change()
        return "pulled" if changed else None

    # -- running ---------------------------------------------------------------------------

    def start(
        self, *, ca: Any, wake: Callable[[], None], on_ca_change: Callable[[], None] | None = None
    ) -> None:
        """Start the leader election, the LISTEN connection and the CA sync
        (``on_ca_change`` runs after a pulled CA was loaded, e.g. to re-issue the
        serving certificate and trust the new anchors at once)."""
        if not self.enabled:
            return
        self._ca = ca
        self._on_ca_change = on_ca_change
        conninfo = postgres_conninfo(self.store)
        self.leadership = Leadership(conninfo)
        self.leadership.start()
        self.listener = EventListener(conninfo, wake)
        self.listener.start()
        if self.key is not None:
            self._syncer = _CASync(self)
            self._syncer.start()

    def is_leader(self) -> bool:
        """Should this process run the scheduled jobs now? (Always, on SQLite.)"""
        return self.leadership is None or self.leadership.is_leader

    def stop(self) -> None:
        if self.leadership is not None:
            self.leadership.stop()
        if self.listener is not None:
            self.listener.stop()
        if self._syncer is not None:
            self._syncer.stop()


class _CASync(Periodic):
    """:meth:`Replication.sync` every :data:`SYNC_INTERVAL` seconds."""

    def __init__(self, replication: Replication) -> None:
        super().__init__("replica-sync", SYNC_INTERVAL)
        self._replication = replication

    def tick(self) -> None:
        try:
            self._replication.sync()
        except Exception as exc:  # the database is away: next turn
            _log.warning("replica.sync_failed", error=str(exc))


def _connect(conninfo: str, application: str) -> Any:
    import psycopg

    return psycopg.connect(
        conninfo,
        autocommit=True,
        connect_timeout=5,
        application_name=application,
        # Notice a vanished server (or network) within ~10 s.
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
    )


class Leadership(Periodic):
    """Holds :data:`LEADER_KEY` while it can; :attr:`is_leader` says whether it does."""

    def __init__(self, conninfo: str, *, ping: float = LEADER_PING,
                 timeout: float = LEADER_TIMEOUT) -> None:
        super().__init__("replica-leader", ping, immediately=True)
        self._conninfo = conninfo
        self._timeout = timeout
        self._conn: Any = None
        self._leader = False
        self.application = f"{LEADER_APPLICATION} pid={os.getpid()}"
        #: How many times this process became the leader.
        self.terms = 0

    @property
    def is_leader(self) -> bool:
        return self._leader

    def tick(self) -> None:
        try:
            self._step()
        except Exception as exc:
            if self._leader:
                _log.warning("replica.leadership_lost", error=str(exc))
            self._leader = False
            self._drop()

    def finish(self) -> None:
        self._release()

    def _step(self) -> None:
        if self._conn is None:
            import psycopg

            self._conn = _connect(self._conninfo, self.application)
            # A leader that stops pinging (dead or frozen) is cut off, freeing the lock.
            # (PostgreSQL 14+; before that only a dead leader's lock is freed, by TCP.)
            ms = int(self._timeout * 1000)
            try:
                self._conn.execute(f"SET idle_session_timeout = {ms}")
            except psycopg.errors.UndefinedObject:
                _log.warning("replica.no_idle_session_timeout",
                             hint="a frozen leader keeps the lock until its connection drops")
        if self._leader:
            self._conn.execute("SELECT 1")
            return
        got = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_KEY,)).fetchone()
        if got and got[0]:
            self._leader = True
            self.terms += 1
            _log.info("replica.leader", application=self.application)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _release(self) -> None:
        was = self._leader
        self._leader = False
        if was and self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (LEADER_KEY,))
        self._drop()


class EventListener:
    """``LISTEN`` on the events channel; calls ``wake()`` for each notification and
    once after every (re)connect, since notifications sent while away are gone."""

    def __init__(self, conninfo: str, wake: Callable[[], None]) -> None:
        self._conninfo = conninfo
        self._wake = wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-listen", daemon=True)
        self.notifications = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            conn = None
            try:
                conn = _connect(self._conninfo, "trustmesh-listen")
                conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                self._wake()
                backoff = 0.1
                while not self._stop.is_set():
                    for _ in conn.notifies(timeout=1.0):
                        self.notifications += 1
                        self._wake()
                    if conn.closed or conn.broken:
                        break
            except Exception as exc:
                _log.debug("replica.listen_failed", error=str(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (for tools and tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
