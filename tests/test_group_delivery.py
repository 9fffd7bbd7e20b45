"""A group's results reach an event loop with one wake-up: the store's writer thread
resolves every future of the group first, then wakes the loops that wait on them
(``group.when_delivered``), instead of waking a loop each time it has drained what
was resolved so far."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from registry.services._runtime import _Landing
from registry.store import Store
from registry.store._internal.group import when_delivered


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


def _hold(store: Store) -> threading.Event:
    started, release = threading.Event(), threading.Event()

    def hold(tx: Any) -> None:
        started.set()
        assert release.wait(30)

    store.submit(hold)
    assert started.wait(30)
    return release


def test_callbacks_run_once_every_future_of_the_group_is_resolved(store: Store) -> None:
    release = _hold(store)
    futures = [store.submit(lambda tx, i=i: i) for i in range(20)]
    seen: list[list[bool]] = []
    threads: set[str] = set()

    def after() -> None:
        threads.add(threading.current_thread().name)
        seen.append([f.done() for f in futures])

    for f in futures:
        f.add_done_callback(lambda _f: when_delivered(after))
    release.set()
    assert [f.result(30) for f in futures] == list(range(20))
    assert len(seen) == 20
    assert all(all(done) for done in seen), "a callback ran before the group was resolved"
    assert threads == {"store-group-commit"}


def test_outside_the_writer_the_callback_runs_at_once() -> None:
    ran: list[str] = []
    when_delivered(lambda: ran.append(threading.current_thread().name))
    assert ran == [threading.current_thread().name]


def test_a_group_wakes_the_loop_once(store: Store) -> None:
    wakes = 0

    class Counting(_Landing):
        def _deliver(self) -> None:
            nonlocal wakes
            wakes += 1
            super()._deliver()

    async def main() -> list[int]:
        landing = Counting(asyncio.get_running_loop())
        release = _hold(store)
        waits = [landing.wait(store.submit(lambda tx, i=i: i)) for i in range(30)]
        tasks = [asyncio.ensure_future(w) for w in waits]
        await asyncio.sleep(0)
        release.set()
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == list(range(30))
    assert wakes == 1


def test_a_failing_callback_does_not_stop_the_others(store: Store) -> None:
    release = _hold(store)
    futures = [store.submit(lambda tx, i=i: i) for i in range(3)]
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("a waiter's bug")

    futures[0].add_done_callback(lambda _f: when_delivered(boom))
    futures[1].add_done_callback(lambda _f: when_delivered(lambda: ran.append(1)))
    release.set()
    assert [f.result(30) for f in futures] == [0, 1, 2]
    store.write(lambda tx: None)  # the writer goes on
    assert ran == [1]
