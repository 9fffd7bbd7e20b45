"""Keeping an agent's credentials young without a restart: :class:`CredentialRotator`.

Beside the SVID renewal loop of :class:`mesh.client.AgentClient`, one thread:

* rotates the identity key when it reaches the rotation period (default 30
  days, minus a per-key random jitter of up to 6 h so a fleet enrolled
  together does not rotate in the same second);
* rotates at once when an operator asks (``mesh rotate-credentials``): the
  request arrives as a ``ROTATION_REQUESTED`` event on the agent's own Watch
  stream (an agent may watch only itself);
* re-fetches the trust bundle every ``bundle_refresh`` (default 5 min, the
  bundle's refresh hint), so a CA published for rotation is trusted long
  before it signs, without a restart (every SVID renewal also brings it).

The schedule is a pure function (:mod:`mesh.rotation.schedule`); ``clock`` and
``wait`` are injectable, and :meth:`CredentialRotator.check` runs one pass, so
tests drive it in compressed time. APScheduler is a server-side dependency;
the agent side needs only this one thread.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import grpc

from mesh.client.agent import AgentClient
from mesh.client.rotation_types import KeyRotation
from mesh.errors import MeshError
from mesh.keys import read_key_history
from mesh.rotation import RotationSchedule, next_rotation_time
from mesh.v1 import events_pb2
from mesh.watch import Subscription

log = logging.getLogger(__name__)

DEFAULT_BUNDLE_REFRESH = timedelta(minutes=5)
_RETRY_FIRST, _RETRY_MAX = 1.0, 300.0

Wait = Callable[[float], bool]


class CredentialRotator:
    """Rotates one agent's identity key on schedule and on request; refreshes its bundle."""

    def __init__(
        self,
        client: AgentClient,
        schedule: RotationSchedule | None = None,
        *,
        watch: bool = True,
        bundle_refresh: timedelta | None = DEFAULT_BUNDLE_REFRESH,
        clock: Callable[[], datetime] | None = None,
        wait: Wait | None = None,
        seed: int | None = None,
        on_rotated: Callable[[KeyRotation], None] | None = None,
        on_error: Callable[[MeshError], None] | None = None,
    ) -> None:
        self.client = client
        self.schedule = schedule or RotationSchedule()
        self._watch = watch
        self._bundle_refresh = bundle_refresh
        self._clock = clock or client._clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._wait: Wait = wait or self._wake_or_timeout
        self._seed = random.SystemRandom().randrange(2**32) if seed is None else seed
        self._on_rotated = on_rotated
        self._on_error = on_error
        self._requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscription: Subscription | None = None
        self._bundle_at: datetime | None = None
        self.rotations = 0
        self.last_error: MeshError | None = None

    # -- one pass (what the thread does; tests call it directly) -----------------------

    def due_at(self) -> datetime:
        """When the current key is due for rotation."""
        history = read_key_history(self.client.dir.path)
        if history is None:
            raise MeshError(f"{self.client.dir.path} has no key-history.json")
        return next_rotation_time(history, self.schedule, self._seed)

    def request(self) -> None:
        """Rotate at the next pass (what a ROTATION_REQUESTED event does)."""
        self._requested.set()
        self._wake.set()

    def check(self) -> KeyRotation | None:
        """Rotate if the key is due or a rotation was requested; refresh the bundle if due."""
        now = self._clock()
        if self._bundle_refresh is not None and (
            self._bundle_at is None or now >= self._bundle_at + self._bundle_refresh
        ):
            self._bundle_at = now
            self.client.refresh_bundle()
        if not self._requested.is_set() and now < self.due_at():
            return None
        self._requested.clear()
        result = self.client.rotate_key()
        self.rotations += 1
        if self._on_rotated is not None:
            self._on_rotated(result)
        return result

    # -- the thread ----------------------------------------------------------------------

    def start(self) -> CredentialRotator:
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        if self._watch:
            self._subscription = Subscription(
                self._watch_channel,
                _RequestHandler(self),
                agent_dids=[self.client.info.did],
                types=[events_pb2.EVENT_TYPE_ROTATION_REQUESTED],
                name="mesh-rotation-requests",
            ).start()
        self._thread = threading.Thread(target=self._run, name="mesh-key-rotation", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._subscription is not None:
            self._subscription.stop()
            self._subscription = None
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None

    def __enter__(self) -> CredentialRotator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wake_or_timeout(self, seconds: float) -> bool:
        woken = self._wake.wait(seconds)
        self._wake.clear()
        return woken

    def _next_delay(self, failures: int) -> float:
        if self._requested.is_set():
            return 0.0
        now = self._clock()
        delay = (self.due_at() - now).total_seconds()
        if self._bundle_refresh is not None and self._bundle_at is not None:
            delay = min(delay, (self._bundle_at + self._bundle_refresh - now).total_seconds())
        if failures:
            delay = min(delay, min(_RETRY_MAX, _RETRY_FIRST * 2.0 ** min(failures - 1, 16)))
        return max(0.0, delay)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                delay = self._next_delay(failures)
            except MeshError as exc:
                self._report(exc)
                delay = _RETRY_MAX
            self._wait(delay)
            if self._stop.is_set():
                return
            try:
                self.check()
            except MeshError as exc:
                failures += 1
                self._report(exc)
                continue
            failures = 0

    def _report(self, exc: MeshError) -> None:
        self.last_error = exc
        log.warning("key rotation: %s", exc)
        if self._on_error is not None:
            self._on_error(exc)

    def _watch_channel(self) -> grpc.Channel:
        tls = self.client._agent_channel().tls
        address = self.client.mtls_addresses[0]
        return grpc.secure_channel(address, tls.credentials(), options=tls.options())


class _RequestHandler:
    """The rotator's side of its own Watch stream: rotation requests only."""

    def __init__(self, rotator: CredentialRotator) -> None:
        self._rotator = rotator
        self._position = 0

    def position(self) -> int:
        return self._position

    def reset(self) -> None:
        self._position = 0

    def begin_snapshot(self) -> None:
        self._position = 0

    def snapshot(self, state: events_pb2.AgentState) -> None:
        pass

    def snapshot_done(self, sequence: int) -> None:
        self._position = sequence

    def event(self, event: events_pb2.Event) -> None:
        self._position = max(self._position, event.sequence)
        if event.type != events_pb2.EVENT_TYPE_ROTATION_REQUESTED:
            return
        try:
            details = json.loads(event.details_json or "{}")
        except ValueError:
            details = {}
        asked_kid = details.get("kid") if isinstance(details, dict) else None
        history = read_key_history(self._rotator.client.dir.path)
        if history is not None and asked_kid and asked_kid != history.current.kid:
            return  # asked about a key this agent has already rotated away from
        self._rotator.request()

    def connected(self) -> None:
        pass

    def disconnected(self, reason: str) -> None:
        log.info("rotation requests: stream down (%s); resuming", reason)


__all__ = ["DEFAULT_BUNDLE_REFRESH", "CredentialRotator"]
