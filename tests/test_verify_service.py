"""VerifyService against the real registry: verdicts per rule, revocation, batches, authz."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import grpc
import pytest
from fixtures_registry import RunningRegistry

from mesh.envelope import sign_jws, sign_message
from mesh.v1 import agents_pb2, verify_pb2, verify_pb2_grpc

ME = "spiffe://test.mesh/agent/me"


def stub(channel: grpc.Channel) -> verify_pb2_grpc.VerifyServiceStub:
    return verify_pb2_grpc.VerifyServiceStub(channel)


def envelope_json(agent: object, payload: bytes = b"hi", audience: str = ME) -> str:
    return sign_message(agent.identity, agent.did, "text/plain", payload, audience).to_json()  # type: ignore[attr-defined]


def test_a_valid_message_gets_a_valid_verdict_with_its_fields(registry: RunningRegistry) -> None:
    alice = registry.register("verify/alice")
    envelope = sign_message(alice.identity, alice.did, "text/plain", b"hi", ME)
    for caller in (registry.operator(), registry.register("verify/bob").channel()):
        verdict = stub(caller).Verify(
            verify_pb2.VerifyRequest(
                message=verify_pb2.SignedMessage(envelope_json=envelope.to_json()),
                audiences=[ME],
            ),
            timeout=30,
        )
        assert verdict.valid, verdict.message
        assert verdict.reason == verify_pb2.VERIFY_REASON_VALID
        assert (verdict.sender, verdict.kid) == (alice.did, alice.identity.kid)
        assert verdict.nonce == envelope.nonce
        assert verdict.expires_at.seconds == envelope.expires_at


def test_every_wire_form_is_accepted(registry: RunningRegistry) -> None:
    alice = registry.register("verify/forms")
    envelope = sign_message(alice.identity, alice.did, "t", b"x", ME)
    jws = sign_jws(alice.identity, alice.did, "t", b"x", ME)
    response = stub(registry.operator()).VerifyBatch(
        verify_pb2.VerifyBatchRequest(
            messages=[
                verify_pb2.SignedMessage(envelope_binary=envelope.to_bytes()),
                verify_pb2.SignedMessage(jws=jws),
            ],
            audiences=[ME],
        ),
        timeout=30,
    )
    assert [v.valid for v in response.verdicts] == [True, True]


def test_a_batch_gets_one_verdict_per_message_in_order(registry: RunningRegistry) -> None:
    alice = registry.register("verify/batch")
    stranger = registry.register("verify/stranger")
    good = sign_message(alice.identity, alice.did, "t", b"x", ME)
    forged = sign_message(stranger.identity, alice.did, "t", b"x", ME)  # wrong key for alice
    tampered = good.to_json().replace('"payload":"eA"', '"payload":"eQ"')
    unknown = sign_message(stranger.identity, stranger.did, "t", b"x", ME)
    elsewhere = sign_message(alice.identity, alice.did, "t", b"x", "spiffe://test.mesh/agent/x")
    items = [
        verify_pb2.SignedMessage(envelope_json=good.to_json()),
        verify_pb2.SignedMessage(envelope_json=forged.to_json()),
        verify_pb2.SignedMessage(envelope_json=tampered),
        verify_pb2.SignedMessage(envelope_json="{not json"),
        verify_pb2.SignedMessage(envelope_json=elsewhere.to_json()),
        verify_pb2.SignedMessage(),
        verify_pb2.SignedMessage(envelope_json=unknown.to_json()),
    ]
    # A batch large enough to be split across the worker threads keeps its order.
    items = items * 20
    response = stub(registry.operator()).VerifyBatch(
        verify_pb2.VerifyBatchRequest(messages=items, audiences=[ME]), timeout=60
    )
    expected = [
        "Valid",
        "UnknownKey",  # alice has no key with the stranger's kid
        "BadSignature",
        "MalformedMessage",
        "WrongAudience",
        "MalformedMessage",
        "Valid",
    ] * 20
    assert [v.reason_name for v in response.verdicts] == expected
    assert response.verdicts[2].reason == verify_pb2.VERIFY_REASON_BAD_SIGNATURE
    assert all(v.message for v in response.verdicts if not v.valid)


def test_a_binary_batch_carries_each_messages_fields_in_order(registry: RunningRegistry) -> None:
    alice = registry.register("verify/binary")
    bob = registry.register("verify/binary-b")
    signed = [
        sign_message(
            (alice, bob)[i % 2].identity, (alice, bob)[i % 2].did, f"t/{i}", b"%d" % i, ME
        )
        for i in range(300)
    ]
    items = []
    for i, envelope in enumerate(signed):
        wire = envelope.to_bytes()
        if i % 7 == 3:
            wire = wire[:-1]  # truncated
        elif i % 7 == 5:
            wire = wire[:-1] + bytes([wire[-1] ^ 1])  # signature damaged
        items.append(verify_pb2.SignedMessage(envelope_binary=wire))
    response = stub(registry.operator()).VerifyBatch(
        verify_pb2.VerifyBatchRequest(messages=items, audiences=[ME]), timeout=60
    )
    assert len(response.verdicts) == len(signed)
    for i, (envelope, verdict) in enumerate(zip(signed, response.verdicts, strict=True)):
        expected = {3: "MalformedMessage", 5: "BadSignature"}.get(i % 7, "Valid")
        assert verdict.reason_name == expected
        assert verdict.valid == (expected == "Valid")
        if expected == "MalformedMessage":
            assert "truncated" in verdict.message
            assert not verdict.sender
            continue
        assert (verdict.sender, verdict.kid, verdict.payload_type, verdict.audience) == (
            envelope.sender, envelope.kid, envelope.payload_type, envelope.audience
        )
        assert verdict.issued_at.seconds == envelope.issued_at
        assert verdict.expires_at.seconds == envelope.expires_at
        assert verdict.nonce == envelope.nonce


def test_a_revocation_is_honoured_by_the_next_call(registry: RunningRegistry) -> None:
    alice = registry.register("verify/revoked")
    service = stub(registry.operator())
    first = verify_pb2.SignedMessage(envelope_json=envelope_json(alice, b"1"))
    assert service.Verify(verify_pb2.VerifyRequest(message=first), timeout=30).valid
    registry.agents(registry.operator()).RevokeAgent(
        agents_pb2.RevokeAgentRequest(did=alice.did, reason="test"), timeout=30
    )
    second = verify_pb2.SignedMessage(envelope_json=envelope_json(alice, b"2"))
    verdict = service.Verify(verify_pb2.VerifyRequest(message=second), timeout=30)
    assert not verdict.valid
    assert verdict.reason == verify_pb2.VERIFY_REASON_REVOKED_KEY
    assert "revoked" in verdict.message


def test_batch_size_is_bounded_with_a_precise_error(registry: RunningRegistry) -> None:
    alice = registry.register("verify/bounds")
    item = verify_pb2.SignedMessage(envelope_json=envelope_json(alice))
    service = stub(registry.operator())
    assert len(
        service.VerifyBatch(verify_pb2.VerifyBatchRequest(messages=[item] * 1000), timeout=60)
        .verdicts
    ) == 1000
    for size, words in ((1001, "holds 1001 messages; at most 1000"), (0, "is empty")):
        with pytest.raises(grpc.RpcError) as info:
            service.VerifyBatch(verify_pb2.VerifyBatchRequest(messages=[item] * size), timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "messages" in info.value.details() and words in info.value.details()


def test_bad_requests_are_invalid_argument(registry: RunningRegistry) -> None:
    service = stub(registry.operator())
    cases = [
        (verify_pb2.VerifyRequest(), "message: is required"),
        (
            verify_pb2.VerifyRequest(
                message=verify_pb2.SignedMessage(jws="a.b.c"), audiences=[""]
            ),
            "audiences[0]",
        ),
        (
            verify_pb2.VerifyRequest(
                message=verify_pb2.SignedMessage(jws="a.b.c"), audiences=["x"] * 17
            ),
            "audiences: holds 17",
        ),
    ]
    for request, words in cases:
        with pytest.raises(grpc.RpcError) as info:
            service.Verify(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in info.value.details()
    # Hostile bytes in a message are a verdict, not an error.
    verdict = service.Verify(
        verify_pb2.VerifyRequest(message=verify_pb2.SignedMessage(envelope_binary=os.urandom(300))),
        timeout=30,
    )
    assert verdict.reason == verify_pb2.VERIFY_REASON_MALFORMED_MESSAGE


def test_any_authenticated_caller_and_no_one_else(registry: RunningRegistry) -> None:
    alice = registry.register("verify/authz")
    request = verify_pb2.VerifyRequest(
        message=verify_pb2.SignedMessage(envelope_json=envelope_json(alice))
    )
    with pytest.raises(grpc.RpcError) as info:
        stub(registry.anonymous()).Verify(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        stub(registry.anonymous()).VerifyBatch(
            verify_pb2.VerifyBatchRequest(messages=[request.message]), timeout=30
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # A revoked agent can no longer call.
    caller = registry.register("verify/caller")
    registry.agents(registry.operator()).RevokeAgent(
        agents_pb2.RevokeAgentRequest(did=caller.did, reason="test"), timeout=30
    )
    with pytest.raises(grpc.RpcError) as info:
        stub(caller.channel()).Verify(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_rotation_is_honoured_by_the_next_call(registry: RunningRegistry) -> None:
    import time
    from datetime import UTC, datetime, timedelta

    from mesh.keys import IdentityKey
    from mesh.v1 import rotation_pb2, rotation_pb2_grpc

    alice = registry.register("verify/rotating")
    service = stub(registry.operator())

    def verdict(key: IdentityKey, at: datetime) -> str:
        wire = sign_message(key, alice.did, "t", b"x", ME, now=at).to_json()
        request = verify_pb2.VerifyRequest(message=verify_pb2.SignedMessage(envelope_json=wire))
        return str(service.Verify(request, timeout=30).reason_name)

    assert verdict(alice.identity, datetime.now(UTC)) == "Valid"
    time.sleep(1.5)  # issued-at has whole seconds: the key must predate the probe below
    new, at = IdentityKey.generate(), datetime.now(UTC)
    assert alice.history is not None
    rotation_pb2_grpc.KeyServiceStub(alice.channel()).RotateKey(
        rotation_pb2.RotateKeyRequest(
            key_history=alice.history.rotate(alice.identity, new, at).to_json()
        ),
        timeout=30,
    )
    assert verdict(alice.identity, at - timedelta(seconds=1)) == "Valid"
    assert verdict(alice.identity, at + timedelta(seconds=1)) == "RevokedKey"
    assert verdict(new, at + timedelta(seconds=1)) == "Valid"


def test_batch_verdicts_encode_as_the_protobuf_library_encodes_them() -> None:
    """The batch path's pieced-together encoding is byte for byte the library's."""
    from mesh.envelope import Envelope, StaticKeys, Verifier
    from mesh.keys import IdentityKey
    from registry.services.verify import _batch_part, _make_verdict, _NotChecked, _verdict

    keys = [IdentityKey.generate() for _ in range(3)]
    verifier = Verifier(
        StaticKeys.inception(*(k.public_key for k in keys[:2])),
        audience=[ME, "spiffe://test.mesh/agent/other"],
        replay=_NotChecked(),
    )
    signed = [
        sign_message(
            keys[i % 3], str(keys[i % 3].did()), ("t", "application/json")[i % 2],
            b"%d" % i, (ME, "spiffe://test.mesh/agent/other", "spiffe://x/y")[i % 4 % 3],
            now=datetime(1970, 1, 1, tzinfo=UTC) if i == 4 else None,
        )
        for i in range(40)
    ]
    items = [verify_pb2.SignedMessage(envelope_binary=e.to_bytes()) for e in signed]
    items += [
        verify_pb2.SignedMessage(envelope_json=signed[0].to_json()),
        verify_pb2.SignedMessage(jws="x.y.z"),
        verify_pb2.SignedMessage(),
        verify_pb2.SignedMessage(envelope_binary=b""),
        verify_pb2.SignedMessage(envelope_binary=signed[1].to_bytes()[:-3]),
    ]
    encoded = _batch_part(verifier, items, 0, len(items))
    expected = verify_pb2.VerifyBatchResponse(
        verdicts=[_verdict(verifier, item, _make_verdict) for item in items]
    )
    assert encoded == expected.SerializeToString()
    names = {v.reason_name for v in expected.verdicts}
    assert {"Valid", "UnknownKey", "WrongAudience", "MalformedMessage", "Expired"} <= names
    assert Envelope.from_bytes(items[0].envelope_binary) == signed[0]
