"""The Redis replay guard: atomic across processes, expires with the message, fails closed."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mesh.errors import MeshError
from mesh.replay import (
    MemoryReplayGuard,
    RedisReplayGuard,
    ReplayGuardUnavailable,
    replay_guard_from_config,
)


def _namespace() -> str:
    return f"test:{uuid.uuid4().hex}"


def test_a_nonce_is_accepted_once_per_sender(redis_url: str) -> None:
    guard = RedisReplayGuard(redis_url, _namespace())
    until = datetime.now(UTC) + timedelta(minutes=5)
    assert guard.check_and_remember("did:mesh:a", b"n" * 16, until)
    assert not guard.check_and_remember("did:mesh:a", b"n" * 16, until)
    assert guard.check_and_remember("did:mesh:b", b"n" * 16, until)
    assert guard.check_and_remember("did:mesh:a", b"m" * 16, until)


def test_the_key_expires_when_the_message_window_closes(redis_url: str) -> None:
    import redis

    guard = RedisReplayGuard(redis_url, _namespace())
    until = datetime.now(UTC) + timedelta(seconds=30)
    assert guard.check_and_remember("s", b"nonce", until)
    client = redis.Redis.from_url(redis_url)
    expiry_ms = client.pexpiretime(guard.key("s", b"nonce"))
    assert abs(expiry_ms - until.timestamp() * 1000) <= 1
    client.close()


def test_namespaces_are_separate(redis_url: str) -> None:
    until = datetime.now(UTC) + timedelta(minutes=1)
    one, two = RedisReplayGuard(redis_url, _namespace()), RedisReplayGuard(redis_url, _namespace())
    assert one.check_and_remember("s", b"n", until)
    assert two.check_and_remember("s", b"n", until)
    assert not one.check_and_remember("s", b"n", until)


def test_an_unreachable_redis_fails_closed() -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    guard = RedisReplayGuard("redis://127.0.0.1:1/0", _namespace(), socket_timeout=0.5)
    with pytest.raises(ReplayGuardUnavailable, match="did not answer"):
        guard.check_and_remember("s", b"n", datetime.now(UTC) + timedelta(minutes=1))


def test_a_bad_namespace_is_refused(redis_url: str) -> None:
    with pytest.raises(MeshError, match="invalid replay namespace"):
        RedisReplayGuard(redis_url, "has space")
    with pytest.raises(MeshError, match="invalid replay namespace"):
        RedisReplayGuard(redis_url, "")


def test_the_guard_is_chosen_by_configuration(redis_url: str) -> None:
    assert isinstance(replay_guard_from_config("memory"), MemoryReplayGuard)
    assert isinstance(replay_guard_from_config(None), MemoryReplayGuard)
    shared = replay_guard_from_config(redis_url, namespace=_namespace())
    assert isinstance(shared, RedisReplayGuard)
    with pytest.raises(MeshError, match="unknown replay guard") as info:
        replay_guard_from_config("memcached://x")
    assert "redis://" in (info.value.hint or "")


# -- two processes sharing one guard ------------------------------------------------------


def _race(url: str, namespace: str, nonces: list[bytes], start: object, out: object) -> None:
    guard = RedisReplayGuard(url, namespace)
    until = datetime.now(UTC) + timedelta(minutes=5)
    start.wait()  # type: ignore[attr-defined]
    won = [n for n in nonces if guard.check_and_remember("did:mesh:sender", n, until)]
    out.put((os.getpid(), won))  # type: ignore[attr-defined]


def test_two_processes_sharing_the_guard_accept_each_nonce_exactly_once(redis_url: str) -> None:
    namespace = _namespace()
    nonces = [os.urandom(16) for _ in range(500)]
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    # Both processes try every nonce, in opposite orders, at the same moment.
    procs = [
        ctx.Process(target=_race, args=(redis_url, namespace, nonces, start, out)),
        ctx.Process(target=_race, args=(redis_url, namespace, nonces[::-1], start, out)),
    ]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    won = [set(w) for _, w in results]
    assert won[0].isdisjoint(won[1])
    assert won[0] | won[1] == set(nonces)
    # A replay in this process of anything either of them accepted is refused.
    guard = RedisReplayGuard(redis_url, namespace)
    until = datetime.now(UTC) + timedelta(minutes=5)
    assert not any(guard.check_and_remember("did:mesh:sender", n, until) for n in nonces[:50])


def _verify_in_process(url: str, namespace: str, public_key: bytes, wire: str, out: object) -> None:
    from mesh.envelope import Envelope, EnvelopeError, StaticKeys, Verifier

    verifier = Verifier(
        StaticKeys.inception(public_key),
        audience="spiffe://test.mesh/service",
        replay=RedisReplayGuard(url, namespace),
    )
    try:
        verifier.verify(Envelope.from_json(wire))
    except EnvelopeError as exc:
        out.put(exc.reason)  # type: ignore[attr-defined]
        return
    out.put("accepted")  # type: ignore[attr-defined]


def test_a_message_accepted_by_one_process_is_a_replay_in_the_other(redis_url: str) -> None:
    from mesh.envelope import sign_message
    from mesh.keys import IdentityKey

    key = IdentityKey.generate()
    wire = sign_message(key, str(key.did()), "t", b"pay 10", "spiffe://test.mesh/service")
    namespace = _namespace()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    verdicts = []
    for _ in range(2):  # two processes of one service, one after the other
        p = ctx.Process(
            target=_verify_in_process,
            args=(redis_url, namespace, key.public_key, wire.to_json(), out),
        )
        p.start()
        verdicts.append(out.get(timeout=60))
        p.join(30)
    assert verdicts == ["accepted", "Replayed"]
