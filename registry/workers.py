"""Several serving processes on one host: ``mesh serve --workers N``.

One registry process serves on one core at most: its event loop holds the GIL
for every call. With ``--workers N`` a supervisor runs N worker processes that
share the listening ports (``SO_REUSEPORT``; the kernel spreads *connections*,
so each agent's channel stays on one worker) and the data directory, and act
as one registry the way replicas do:

* **The store is the source of truth.** Every worker commits to it; SQLite
  serialises the writers of all processes (``BEGIN IMMEDIATE`` under a lock
  file beside the database, see :mod:`registry.store.engine`).
* **One worker runs the scheduled jobs**: the one holding ``DIR/leader.lock``
  (:class:`FileLeadership`). The kernel frees the lock when the holder exits,
  and another worker takes it within :data:`LEADER_PING` seconds. Over
  PostgreSQL the replicas' advisory-lock leadership decides instead, across
  hosts as well.
* **A commit wakes the other workers' event hubs at once**, by a datagram to
  their sockets (:class:`Wakeups`; abstract Unix sockets named after the data
  directory, so nothing is left on disk). PostgreSQL's NOTIFY does the same
  over PostgreSQL. The hubs also poll the event table, so a lost datagram only
  delays an event.
* **One CA, on disk.** A rotation made by one worker (scheduled on the leader,
  or ``mesh ca rotate`` reaching any worker) is loaded by the others within
  :data:`CA_FOLLOW_INTERVAL` seconds (:class:`CAFollower`).

The supervisor starts worker 0 first, which creates what a first start creates
(schema, CA, challenge key, operator credential), then the others. It forwards
SIGTERM and SIGINT, and restarts a worker that exits unexpectedly, with
backoff.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.filelock import FileLock
from registry.logs import get_logger
from registry.periodic import Periodic

_log = get_logger("registry.workers")

#: Set in a worker's environment: its index (0..N-1).
WORKER_INDEX_ENV = "MESH_WORKER_INDEX"
#: Set in a worker's environment: the descriptor it writes one byte to once serving.
READY_FD_ENV = "MESH_WORKER_READY_FD"
#: Set in a worker's environment: its supervisor's pid.
SUPERVISOR_ENV = "MESH_WORKER_SUPERVISOR"
_PR_SET_PDEATHSIG = 1
LEADER_FILE = "leader.lock"
LEADER_PING = 1.0
CA_FOLLOW_INTERVAL = 2.0
#: How long the supervisor waits for worker 0's first start (schema, CA).
FIRST_START_TIMEOUT = 120.0
RESTART_BACKOFF_MIN, RESTART_BACKOFF_MAX = 1.0, 30.0
#: A worker that ran this long before it died is restarted without delay growth.
STABLE_SECONDS = 60.0


@dataclass(frozen=True)
class Worker:
    """This process's place among the workers."""

    index: int
    count: int

    @classmethod
    def from_env(cls, count: int) -> Worker | None:
        """The worker this process is, when a supervisor started it."""
        text = os.environ.get(WORKER_INDEX_ENV, "")
        if count <= 1 or not text:
            return None
        return cls(int(text), count)


def metrics_listen_for(metrics_listen: str, worker: Worker | None) -> str:
    """Worker i serves its metrics on the configured port + i (Prometheus scrapes each)."""
    if not metrics_listen or worker is None:
        return metrics_listen
    host, _, port = metrics_listen.rpartition(":")
    if int(port) == 0:
        return metrics_listen
    return f"{host}:{int(port) + worker.index}"


# -- wake-ups between workers ------------------------------------------------------------


def _socket_name(data_dir: Path, index: int) -> bytes:
    # Abstract namespace (leading NUL): no file to clean up after a crash, no path limit.
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:24]
    return b"\0trustmesh-" + digest.encode() + f"-{index}".encode()


class Wakeups:
    """Datagrams between the workers of one data directory: "the event table grew"."""

    def __init__(self, data_dir: Path, worker: Worker, wake: Callable[[], None]) -> None:
        self._names = [_socket_name(data_dir, i) for i in range(worker.count)]
        self._own = self._names[worker.index]
        self._others = [n for i, n in enumerate(self._names) if i != worker.index]
        self._wake = wake
        self._receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="worker-wakeups", daemon=True)
        #: Datagrams received (for tests and diagnostics).
        self.received = 0

    def start(self) -> None:
        # A predecessor of this worker that crashed frees the name with its socket.
        self._receiver.bind(self._own)
        self._thread.start()

    def send(self) -> None:
        """Wake every other worker (safe from any thread; never blocks, never raises)."""
        for name in self._others:
            with contextlib.suppress(OSError):  # not up (yet), or its queue is full
                self._sender.sendto(b"e", name)

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        self._receiver.close()
        self._sender.close()
        os.close(self._stop_r)
        os.close(self._stop_w)

    def _run(self) -> None:
        fd = self._receiver.fileno()
        while True:
            ready, _, _ = select.select([fd, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            # Many datagrams, one wake-up: the hub reads everything new anyway.
            with contextlib.suppress(BlockingIOError):
                while True:
                    self._receiver.recv(16, socket.MSG_DONTWAIT)
                    self.received += 1
            self._wake()


# -- leadership and the CA ---------------------------------------------------------------


class FileLeadership(Periodic):
    """Holds ``DIR/leader.lock`` while it can; :attr:`is_leader` says whether it does."""

    def __init__(self, data_dir: Path, *, ping: float = LEADER_PING) -> None:
        super().__init__("worker-leader", ping, immediately=True)
        self._lock = FileLock(data_dir / LEADER_FILE)
        #: How many times this process became the leader.
        self.terms = 0

    @property
    def is_leader(self) -> bool:
        return self._lock.held

    def tick(self) -> None:
        if not self._lock.held and self._lock.try_acquire():
            self.terms += 1
            _log.info("worker.leader", pid=os.getpid())

    def finish(self) -> None:
        self._lock.close()


class CAFollower(Periodic):
    """Loads the CA again when another worker changed it on disk."""

    def __init__(
        self, ca: Any, on_change: Callable[[], None] | None, *,
        interval: float = CA_FOLLOW_INTERVAL,
    ) -> None:
        super().__init__("worker-ca", interval)
        self._ca = ca
        self._on_change = on_change

    def tick(self) -> None:
        try:
            changed = self._ca.reload()
        except Exception as exc:  # a rotation being written: next turn
            _log.warning("worker.ca_reload_failed", error=str(exc))
            return
        if changed:
            _log.info("worker.ca_reloaded", sequence=int(self._ca.sequence))
            if self._on_change is not None:
                self._on_change()


class Siblings:
    """This worker's part in the group: following the CA and, unless the database
    already carries them (``replicated``: PostgreSQL's advisory-lock leadership
    and NOTIFY span the workers), leadership and wake-ups."""

    def __init__(self, data_dir: Path, worker: Worker, *, replicated: bool) -> None:
        self.worker = worker
        self._data_dir = data_dir
        self._replicated = replicated
        self.leadership = None if replicated else FileLeadership(data_dir)
        self.wakeups: Wakeups | None = None
        self._follower: CAFollower | None = None

    def start(
        self, *, ca: Any, wake: Callable[[], None], on_ca_change: Callable[[], None] | None
    ) -> None:
        if not self._replicated:
            self.wakeups = Wakeups(self._data_dir, self.worker, wake)
            self.wakeups.start()
        if self.leadership is not None:
            self.leadership.start()
        self._follower = CAFollower(ca, on_ca_change)
        self._follower.start()

    def notify(self) -> None:
        """A local commit appended events: wake the other workers (if it is ours to)."""
        if self.wakeups is not None:
            self.wakeups.send()

    def is_leader(self) -> bool:
        return self.leadership is None or self.leadership.is_leader

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.stop()
        if self.leadership is not None:
            self.leadership.stop()
        if self.wakeups is not None:
            self.wakeups.stop()


# -- the supervisor ----------------------------------------------------------------------


class _Child:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = RESTART_BACKOFF_MIN
        self.restart_at = 0.0


class Supervisor:
    """Runs ``count`` workers of ``argv`` (the ``mesh`` arguments) until told to stop."""

    def __init__(self, argv: list[str], count: int, grace: float) -> None:
        self._argv = argv
        self._children = [_Child(i) for i in range(count)]
        self._grace = grace
        self._stopping = threading.Event()

    def _spawn(self, child: _Child, ready_fd: int | None = None) -> None:
        env = {**os.environ, WORKER_INDEX_ENV: str(child.index), SUPERVISOR_ENV: str(os.getpid())}
        pass_fds: tuple[int, ...] = ()
        if ready_fd is not None:
            env[READY_FD_ENV] = str(ready_fd)
            pass_fds = (ready_fd,)
        # The same program and arguments as this one (sys.executable, our own argv).
        child.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "mesh", *self._argv], env=env, pass_fds=pass_fds
        )
        child.started = time.monotonic()
        _log.info("worker.started", index=child.index, pid=child.proc.pid)

    def _first_start(self) -> int | None:
        """Start worker 0 and wait until it serves; its exit code if it never does."""
        read_fd, write_fd = os.pipe()
        try:
            self._spawn(self._children[0], write_fd)
        finally:
            os.close(write_fd)
        proc = self._children[0].proc
        assert proc is not None
        deadline = time.monotonic() + FIRST_START_TIMEOUT
        try:
            while not self._stopping.is_set():
                ready, _, _ = select.select([read_fd], [], [], 0.2)
                if ready:
                    if os.read(read_fd, 1):
                        return None
                    # Closed without a byte: it exited (or is exiting).
                    return proc.wait()
                if proc.poll() is not None:
                    return proc.returncode
                if time.monotonic() > deadline:
                    _log.error("worker.first_start_timeout", seconds=FIRST_START_TIMEOUT)
                    proc.kill()
                    return proc.wait() or 1
            return None
        finally:
            os.close(read_fd)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _s, _f: self._stopping.set())
        failed = self._first_start()
        if failed is not None:
            return failed
        if self._stopping.is_set():  # told to stop while worker 0 was starting
            return self._stop_all()
        for child in self._children[1:]:
            self._spawn(child)
        while not self._stopping.wait(0.2):
            self._tend()
        return self._stop_all()

    def _tend(self) -> None:
        now = time.monotonic()
        for child in self._children:
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                ran = now - child.started
                child.backoff = (
                    RESTART_BACKOFF_MIN if ran > STABLE_SECONDS
                    else min(child.backoff * 2, RESTART_BACKOFF_MAX)
                )
                child.restart_at = now + (0.0 if ran > STABLE_SECONDS else child.backoff)
                _log.error("worker.exited", index=child.index, code=proc.returncode,
                           restart_in=round(child.restart_at - now, 1))
                child.proc = None
            if child.proc is None and now >= child.restart_at:
                self._spawn(child)

    def _stop_all(self) -> int:
        running = [c.proc for c in self._children if c.proc is not None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._grace + 10.0
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log.error("worker.kill", pid=proc.pid)
                proc.kill()
                proc.wait()
        return 0


def follow_supervisor() -> None:
    """In a worker: stop (SIGTERM, so gracefully) when the supervisor dies, even by
    kill -9, rather than serve on as an orphan nobody restarts or stops."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor's SIGTERM only
        return
    supervisor = os.environ.get(SUPERVISOR_ENV, "")
    if supervisor and os.getppid() != int(supervisor):  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def announce_ready() -> None:
    """In a worker: tell the supervisor it serves (once; a no-op elsewhere)."""
    text = os.environ.pop(READY_FD_ENV, "")
    if text:
        fd = int(text)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
