"""Calls that arrive while the writer prepares a group join that group (prepared
too) instead of waiting for the next one; each item is prepared exactly once."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from registry.store import Batch, Store
from registry.store._internal.group import MAX_GROUP


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


class _Slow(Batch[int, int]):
    """Preparing item 0 waits until the test says go (more calls arrive meanwhile)."""

    def __init__(self) -> None:
        self.preparing = threading.Event()
        self.go = threading.Event()
        self.prepared: list[int] = []
        self.rounds: list[list[int]] = []

    def prepare(self, item: int) -> int:
        if item == 0:
            self.preparing.set()
            assert self.go.wait(30)
        self.prepared.append(item)
        return item * 10

    def apply_all(self, tx: Any, items: Sequence[int]) -> list[int]:
        self.rounds.append(list(items))
        return [i + 1 for i in items]

    def apply_one(self, tx: Any, item: int) -> int:
        return item + 1


def test_calls_arriving_during_preparation_join_the_group(store: Store) -> None:
    batch = _Slow()
    first = store.submit_batched(batch, 0)
    assert batch.preparing.wait(30)
    later = [store.submit_batched(batch, n) for n in range(1, 6)]
    plain = store.submit(lambda tx: "plain")
    batch.go.set()
    assert first.result(30) == 1
    assert [f.result(30) for f in later] == [11, 21, 31, 41, 51]
    assert plain.result(30) == "plain"
    assert batch.rounds == [[0, 10, 20, 30, 40, 50]]
    assert sorted(batch.prepared) == [0, 1, 2, 3, 4, 5], "each item prepared once"
    assert store.group_stats.groups == 1


def test_a_group_never_grows_past_its_limit(store: Store) -> None:
    batch = _Slow()
    first = store.submit_batched(batch, 0)
    assert batch.preparing.wait(30)
    later = [store.submit_batched(batch, n) for n in range(1, MAX_GROUP + 10)]
    batch.go.set()
    assert first.result(30) == 1
    assert [f.result(30) for f in later] == [n * 10 + 1 for n in range(1, MAX_GROUP + 10)]
    assert [len(r) for r in batch.rounds] == [MAX_GROUP, 10]
    assert sorted(batch.prepared) == list(range(MAX_GROUP + 10))
