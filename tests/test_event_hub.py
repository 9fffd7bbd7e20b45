"""The event hub's reader: prompt while streams are attached, lazy while none is.

A real store (SQLite) is the hub's source.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from registry.events.hub import EventFilter, EventHub, Subscriber
from registry.store import Store, open_store


def _append(store: Store, n: int) -> int:
    last = 0
    with store.transaction() as tx:
        for _ in range(n):
            last = tx.events.append("bundle.changed", None, {})
    return last


async def _eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def test_wakeups_wait_for_the_poll_until_a_stream_attaches(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    store.upgrade()

    async def scenario() -> None:
        hub = EventHub(store, poll_interval=30.0)
        await hub.start()
        try:
            start = hub.position
            last = await asyncio.to_thread(_append, store, 3)
            hub.notify()
            await asyncio.sleep(0.3)
            # Nobody watches: the wake-up did not make the hub read the table.
            assert hub.position == start

            subscriber = Subscriber(EventFilter())
            assert hub.attach(subscriber, start)
            # Attaching woke the reader: the three events arrive without waiting 30 s.
            assert await _eventually(lambda: len(subscriber.pending) == 3)
            assert hub.position == last

            # With a stream attached, each wake-up is read at once.
            newer = await asyncio.to_thread(_append, store, 1)
            hub.notify()
            assert await _eventually(lambda: hub.position == newer)
            assert [d.seq for d in subscriber.pending][-1] == newer
        finally:
            await hub.stop()

    try:
        asyncio.run(scenario())
    finally:
        store.close()
