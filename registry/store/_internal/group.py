"""Group commit: many callers' writes applied in one transaction (see ``Store.submit``).

Callers queue calls; one writer thread takes every call queued so far (up to
``MAX_GROUP``) and the store applies them in one transaction. While that
transaction commits, new calls queue up and form the next group, so the group
size follows the load: one call when idle, dozens under many concurrent
writers, with no timer and no added latency.

Before the transaction, the writer runs each batch item's ``prepare`` (CPU
work such as checking a proof and signing a certificate), outside any lock:
doing it here rather than in a pool of worker threads saves a thread hand-off
per call and the GIL contention of many threads. Calls that arrive while a
group is being prepared join it (and are prepared too), up to ``MAX_GROUP``:
they would otherwise wait for the next group. Inside the transaction each
plain call runs in its own SAVEPOINT, so one that fails rolls back alone.
Calls of the same :class:`Batch` are first tried all together with
set-based statements (one INSERT for all their rows, and so
on), in one savepoint; when the batch says some items cannot go that way
(:class:`Refused`) the savepoint is rolled back, the rest are tried together
again, and the refused ones run one by one (``apply_one``), each in its own
savepoint, to get their own precise result or error.
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from registry.store.errors import StoreError

#: Most calls applied in one transaction (bounds how long one commit holds the writer).
MAX_GROUP = 256
#: Set-based attempts per batch before every remaining item goes one by one.
BATCH_ROUNDS = 3

I = TypeVar("I")  # noqa: E741 - the item type of a batch
R = TypeVar("R")

_SAVEPOINT = "SAVEPOINT trustmesh_call"
_RELEASE = "RELEASE SAVEPOINT trustmesh_call"
_ROLLBACK_TO = "ROLLBACK TO SAVEPOINT trustmesh_call"


@dataclass
class GroupStats:
    """Counters of the group commits of one store (written by its writer thread only)."""

    #: Transactions committed (or failed) by the writer thread.
    groups: int = 0
    #: Calls they carried.
    calls: int = 0
    #: Batch items written by a set-based ``apply_all``.
    batched: int = 0
    #: Calls run one by one in their own savepoint (plain calls, refused batch items).
    one_by_one: int = 0
    #: Groups whose transaction failed as a whole.
    failed_groups: int = 0
    #: The largest group so far.
    largest: int = 0


class Refused(Exception):
    """Raised by :meth:`Batch.apply_all`: these items (indexes into its list) must
    go one by one. Everything ``apply_all`` wrote is rolled back."""

    def __init__(self, indexes: Collection[int]) -> None:
        super().__init__(f"{len(indexes)} item(s) need the one-by-one path")
        self.indexes = frozenset(indexes)


class Batch(ABC, Generic[I, R]):
    """Writes of one kind that many callers make at once (e.g. first registrations).

    ``prepare`` turns a submitted item into the item to write; the writer
    thread calls it before opening the group's transaction, and an exception
    fails that item alone (nothing was written for it). ``apply_all`` writes
    every item with set-based statements and returns one result per item, or
    raises :class:`Refused` naming the items that cannot go that way (a
    conflict it cannot attribute precisely, a duplicate within the group
    ...). ``apply_one`` is the exact, item-by-item path and defines
    what each item's result or error is; ``apply_all`` must agree with it for
    every item it accepts. Both run on the writer thread inside the group's
    transaction; any other exception from ``apply_all`` sends every item one
    by one.
    """

    def prepare(self, item: I) -> I:
        return item

    @abstractmethod
    def apply_all(self, tx: Any, items: Sequence[I]) -> list[R]:
        """Every item written set-based, a result each (or :class:`Refused`)."""

    @abstractmethod
    def apply_one(self, tx: Any, item: I) -> R:
        """One item written exactly; its result, or its own precise error."""


class GroupCall:
    """One queued call: plain work, or an item of a batch; and its caller's future."""

    __slots__ = ("batch", "future", "item", "prepared", "work")

    def __init__(
        self,
        work: Callable[[Any], Any] | None,
        batch: Batch[Any, Any] | None = None,
        item: Any = None,
    ) -> None:
        self.work = work
        self.batch = batch
        self.item = item
        #: ``item`` is the prepared item (``Batch.prepare`` ran), or there is nothing to prepare.
        self.prepared = batch is None
        self.future: Future[Any] = Future()

    def run_one(self, tx: Any) -> Any:
        if self.batch is not None:
            return self.batch.apply_one(tx, self.item)
        assert self.work is not None
        return self.work(tx)

    def succeed(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


#: (call, succeeded, result or error)
Outcome = tuple[GroupCall, bool, Any]


def prepare_calls(calls: list[GroupCall]) -> list[GroupCall]:
    """Run each batch item's ``prepare`` (outside the transaction) once; the calls
    still to apply. A call whose preparation fails is answered with its error now."""
    ready = []
    for call in calls:
        if not call.prepared:
            assert call.batch is not None
            try:
                call.item = call.batch.prepare(call.item)
            except Exception as error:
                call.fail(error)
                continue
            call.prepared = True
        ready.append(call)
    return ready


def apply_calls(unit: Any, tx: Any, calls: list[GroupCall], stats: GroupStats) -> list[Outcome]:
    """Apply a group's calls inside the open transaction of ``unit``.

    A failure to roll back to a savepoint (the connection is gone) propagates:
    the whole group then fails.
    """
    outcomes: list[Outcome] = []
    batches: dict[int, list[GroupCall]] = {}
    for call in calls:
        if call.batch is None:
            outcomes.append(_in_savepoint(unit, tx, call))
            stats.one_by_one += 1
        else:
            batches.setdefault(id(call.batch), []).append(call)
    for members in batches.values():
        outcomes.extend(_apply_batch(unit, tx, members, stats))
    return outcomes


def _in_savepoint(unit: Any, tx: Any, call: GroupCall) -> Outcome:
    mark = unit.mark()
    unit.driver_execute(_SAVEPOINT)
    try:
        value = call.run_one(tx)
        unit.driver_execute(_RELEASE)
    except Exception as error:
        _roll_back(unit, mark)
        return call, False, error
    return call, True, value


def _apply_batch(
    unit: Any, tx: Any, members: list[GroupCall], stats: GroupStats
) -> list[Outcome]:
    batch = members[0].batch
    assert batch is not None
    outcomes: list[Outcome] = []
    one_by_one: list[GroupCall] = []
    pending = members
    for _ in range(BATCH_ROUNDS):
        if not pending:
            break
        mark = unit.mark()
        unit.driver_execute(_SAVEPOINT)
        try:
            results = batch.apply_all(tx, [call.item for call in pending])
            if len(results) != len(pending):
                raise StoreError("a batch returned a wrong number of results")
            unit.driver_execute(_RELEASE)
        except Refused as refused:
            _roll_back(unit, mark)
            if not refused.indexes:
                break
            one_by_one += [c for i, c in enumerate(pending) if i in refused.indexes]
            pending = [c for i, c in enumerate(pending) if i not in refused.indexes]
            continue
        except Exception:
            _roll_back(unit, mark)
            break
        outcomes += [(call, True, value) for call, value in zip(pending, results, strict=True)]
        stats.batched += len(pending)
        pending = []
    one_by_one += pending
    outcomes += [_in_savepoint(unit, tx, call) for call in one_by_one]
    stats.one_by_one += len(one_by_one)
    return outcomes


def _roll_back(unit: Any, mark: Any) -> None:
    unit.driver_execute(_ROLLBACK_TO)
    unit.driver_execute(_RELEASE)
    unit.restore(mark)


class GroupWriter:
    """A queue and the daemon thread that drains it into ``apply(calls)``."""

    def __init__(self, apply: Callable[[list[GroupCall]], None]) -> None:
        self._apply = apply
        self._queue: queue.SimpleQueue[GroupCall | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="store-group-commit", daemon=True)
        self._thread.start()

    def submit(self, call: GroupCall) -> Future[Any]:
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed", hint="open the store again")
            self._queue.put(call)
        return call.future

    @property
    def queued(self) -> int:
        """Calls waiting for the writer (not counting the group being applied)."""
        return self._queue.qsize()

    def close(self, timeout: float = 30.0) -> None:
        """Apply what is queued, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            calls, stopping = self._take([first])
            _delivering.callbacks = []
            try:
                # Prepare outside the transaction; the calls that arrived meanwhile
                # join this group (prepared too) rather than wait for the next one:
                # a bigger group for the same wait, and the commit's cost shared
                # by more calls.
                calls = prepare_calls(calls)
                while not stopping and len(calls) < MAX_GROUP:
                    more, stopping = self._take([], MAX_GROUP - len(calls))
                    if not more:
                        break
                    calls += prepare_calls(more)
                if calls:
                    self._apply(calls)
            except BaseException as error:  # the store fails each call itself; belt and braces
                for call in calls:
                    call.fail(error)
            finally:
                callbacks, _delivering.callbacks = _delivering.callbacks, None
                for callback in callbacks:
                    try:
                        callback()
                    except Exception:  # noqa: S112 - one waiter's bug must not stop the others
                        continue

    def _take(self, calls: list[GroupCall], limit: int = MAX_GROUP) -> tuple[list[GroupCall], bool]:
        """``calls`` plus what is queued, up to ``limit`` in all; and whether the
        queue said stop (``close``)."""
        while len(calls) < limit:
            try:
                call = self._queue.get_nowait()
            except queue.Empty:
                break
            if call is None:
                return calls, True
            calls.append(call)
        return calls, False


# The group writer thread sets ``callbacks`` while it applies a group and resolves its
# futures: see :func:`when_delivered`.
_delivering = threading.local()


def when_delivered(callback: Callable[[], None]) -> None:
    """Run ``callback`` once the group whose futures are being resolved has resolved
    them all; at once when not called from the group writer (a future's
    done-callback runs on the thread that resolves it).

    For waking another thread's event loop: one wake-up for a whole group rather
    than one each time that loop drains the results resolved so far (each wake-up
    is a syscall that hands the GIL to the woken thread mid-delivery).
    """
    pending = getattr(_delivering, "callbacks", None)
    if pending is None:
        callback()
    else:
        pending.append(callback)
