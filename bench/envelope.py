"""Signed-message throughput on one core, and what verification costs over the bare signature.

Prints one flat JSON object:

* ``envelope_sign_per_s``: :func:`sign_message` (fresh nonce, signed bytes, Ed25519 sign).
* ``raw_pynacl_verify_per_s``: PyNaCl ``crypto_sign_open`` over the same signed bytes: the
  bare strict Ed25519 check, nothing else.
* ``envelope_verify_per_s``: :meth:`Verifier.verify` on decoded envelopes: the whole
  checklist (shape, key, signature, audience, time, replay) with a static key table.
* ``envelope_verify_ratio``: envelope / raw (1.0 = free; the target is >= 0.85).
* ``envelope_json_decode_verify_per_s``: ``Envelope.from_json`` then verify (the wire path).
* ``jws_sign_per_s``, ``jws_verify_per_s``: the JWS Compact form, parse included.

Raw and envelope verification run interleaved in small alternating chunks over the
same messages and are timed in CPU seconds of this process, so load from other
processes hits both alike; the ratio is the median of the per-chunk ratios. Rates
swing run to run, the ratio much less.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from nacl.bindings import crypto_sign_open

from mesh.envelope import (
    Envelope,
    StaticKeys,
    Verifier,
    sign_jws,
    sign_message,
    verify_jws,
)
from mesh.keys import IdentityKey
from mesh.replay import MemoryReplayGuard

AUDIENCE = "spiffe://bench.example/agent/receiver"
PAYLOAD = os.urandom(256)
MESSAGES = 12_000
CHUNK = 100


def rate(fn: Callable[[], object], seconds: float = 1.0) -> float:
    fn()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def timed(fn: Callable[[Sequence[object]], None], items: Sequence[object]) -> float:
    """CPU seconds this process spent on ``fn(items)``: immune to time spent preempted."""
    start = time.process_time()
    fn(items)
    return time.process_time() - start


def verifier(key: IdentityKey) -> Verifier:
    return Verifier(
        StaticKeys.inception(key.public_key),
        audience=AUDIENCE,
        max_lifetime=timedelta(hours=1),
        replay=MemoryReplayGuard(max_entries=10 * MESSAGES),
    )


def main() -> None:
    key = IdentityKey.generate()
    sender = str(key.did())
    results: dict[str, float] = {}

    results["envelope_sign_per_s"] = rate(
        lambda: sign_message(key, sender, "application/octet-stream", PAYLOAD, AUDIENCE)
    )
    results["jws_sign_per_s"] = rate(
        lambda: sign_jws(key, sender, "application/octet-stream", PAYLOAD, AUDIENCE)
    )

    # Every verified message needs its own nonce, or the replay rule refuses it.
    envelopes = [
        sign_message(key, sender, "application/octet-stream", PAYLOAD, AUDIENCE)
        for _ in range(MESSAGES)
    ]
    public_key = key.public_key
    check = verifier(key)

    def raw(chunk: Sequence[object]) -> None:
        for envelope in chunk:
            assert isinstance(envelope, Envelope)
            crypto_sign_open(envelope.signature + envelope.signed_bytes, public_key)

    def full(chunk: Sequence[object]) -> None:
        verify = check.verify
        for envelope in chunk:
            verify(envelope)  # type: ignore[arg-type]

    raw(envelopes[:200])  # warm up both paths outside the measurement
    verifier(key).verify(envelopes[0])
    raw_time = full_time = 0.0
    ratios = []
    for index in range(0, MESSAGES, CHUNK):
        chunk = envelopes[index : index + CHUNK]
        if (index // CHUNK) % 2:
            full_chunk = timed(full, chunk)
            raw_chunk = timed(raw, chunk)
        else:
            raw_chunk = timed(raw, chunk)
            full_chunk = timed(full, chunk)
        raw_time += raw_chunk
        full_time += full_chunk
        ratios.append(raw_chunk / full_chunk)
    results["raw_pynacl_verify_per_s"] = MESSAGES / raw_time
    results["envelope_verify_per_s"] = MESSAGES / full_time
    # The median of per-chunk ratios: a chunk that another process preempted is an outlier.
    results["envelope_verify_ratio"] = statistics.median(ratios)

    wires = [
        sign_message(key, sender, "application/octet-stream", PAYLOAD, AUDIENCE).to_json()
        for _ in range(3000)
    ]
    decode_check = verifier(key)
    start = time.perf_counter()
    for wire in wires:
        decode_check.verify(Envelope.from_json(wire))
    results["envelope_json_decode_verify_per_s"] = len(wires) / (time.perf_counter() - start)

    tokens = [
        sign_jws(key, sender, "application/octet-stream", PAYLOAD, AUDIENCE) for _ in range(3000)
    ]
    jws_check = verifier(key)
    start = time.perf_counter()
    for token in tokens:
        verify_jws(token, jws_check)
    results["jws_verify_per_s"] = len(tokens) / (time.perf_counter() - start)

    print(
        json.dumps(
            {k: round(v, 3) if k.endswith("ratio") else round(v, 1) for k, v in results.items()}
        )
    )


if __name__ == "__main__":
    main()
