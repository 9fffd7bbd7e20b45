"""The in-memory replay guard: remembers until expiry, fails closed when full, thread-safe."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from mesh.replay import MemoryReplayGuard, ReplayGuard, ReplayGuardFull

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


def test_a_nonce_is_accepted_once_per_sender() -> None:
    guard = MemoryReplayGuard(clock=Clock())
    until = T0 + timedelta(minutes=5)
    assert guard.check_and_remember("did:mesh:a", b"n" * 16, until)
    assert not guard.check_and_remember("did:mesh:a", b"n" * 16, until)
    assert not guard.check_and_remember("did:mesh:a", b"n" * 16, until + timedelta(hours=1))
    assert guard.check_and_remember("did:mesh:b", b"n" * 16, until)
    assert guard.check_and_remember("did:mesh:a", b"m" * 16, until)
    assert len(guard) == 3


def test_a_nonce_is_forgotten_when_its_window_closes_not_before() -> None:
    clock = Clock()
    guard = MemoryReplayGuard(clock=clock)
    until = T0 + timedelta(seconds=10)
    assert guard.check_and_remember("s", b"n", until)
    clock.now = until.timestamp() - 0.001
    assert not guard.check_and_remember("s", b"n", until)
    clock.now = until.timestamp()
    assert guard.check_and_remember("s", b"n", until + timedelta(seconds=10))
    assert len(guard) == 1


def test_a_fractional_expiry_is_rounded_up() -> None:
    clock = Clock()
    guard = MemoryReplayGuard(clock=clock)
    until = T0 + timedelta(seconds=10, milliseconds=1)
    assert guard.check_and_remember("s", b"n", until)
    clock.now = until.timestamp() + 0.5
    assert not guard.check_and_remember("s", b"n", until)
    clock.now = (T0 + timedelta(seconds=11)).timestamp()
    assert guard.check_and_remember("s", b"n", until)


def test_expired_entries_are_dropped_oldest_first() -> None:
    clock = Clock()
    guard = MemoryReplayGuard(clock=clock)
    for i in range(100):
        assert guard.check_and_remember("s", i.to_bytes(2, "big"), T0 + timedelta(seconds=i + 1))
    clock.now = (T0 + timedelta(seconds=50)).timestamp()
    assert guard.check_and_remember("s", b"new", T0 + timedelta(seconds=500))
    assert len(guard) == 51  # nonces 50..99 and the new one
    assert not guard.check_and_remember("s", (50).to_bytes(2, "big"), T0)
    assert guard.check_and_remember("s", (48).to_bytes(2, "big"), T0 + timedelta(seconds=60))


def test_a_full_guard_fails_closed_and_reopens_as_entries_expire() -> None:
    clock = Clock()
    guard = MemoryReplayGuard(max_entries=3, clock=clock)
    until = T0 + timedelta(seconds=30)
    for nonce in (b"1", b"2", b"3"):
        assert guard.check_and_remember("s", nonce, until)
    with pytest.raises(ReplayGuardFull, match="refusing new messages"):
        guard.check_and_remember("s", b"4", until)
    # Full, yet still remembering: the held nonces are replays, not new messages.
    for nonce in (b"1", b"2", b"3"):
        assert not guard.check_and_remember("s", nonce, until)
    clock.now = until.timestamp()
    assert guard.check_and_remember("s", b"4", until + timedelta(seconds=30))
    assert len(guard) == 1


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryReplayGuard(max_entries=0)


def test_concurrent_deliveries_of_one_nonce_are_accepted_once() -> None:
    guard = MemoryReplayGuard()
    until = datetime.now(UTC) + timedelta(minutes=5)
    for round_ in range(20):
        nonce = round_.to_bytes(16, "big")
        barrier = threading.Barrier(16)
        results: list[bool] = []
        lock = threading.Lock()

        def deliver(nonce: bytes = nonce, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            accepted = guard.check_and_remember("did:mesh:a", nonce, until)
            with lock:
                results.append(accepted)

        threads = [threading.Thread(target=deliver) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [False] * 15 + [True]


def test_concurrent_distinct_nonces_are_all_remembered() -> None:
    guard = MemoryReplayGuard(max_entries=8 * 2000)
    until = datetime.now(UTC) + timedelta(minutes=5)
    accepted = [0] * 8

    def worker(index: int) -> None:
        for i in range(2000):
            if guard.check_and_remember(f"s{index}", i.to_bytes(4, "big"), until):
                accepted[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert accepted == [2000] * 8
    assert len(guard) == 16000
    with pytest.raises(ReplayGuardFull):
        guard.check_and_remember("s0", b"one more", until)


def test_the_memory_guard_satisfies_the_protocol() -> None:
    guard: ReplayGuard = MemoryReplayGuard()
    assert guard.check_and_remember("s", b"n", datetime.now(UTC) + timedelta(seconds=5))
