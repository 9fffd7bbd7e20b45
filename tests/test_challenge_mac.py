"""The challenge MAC is HMAC-SHA256 computed from precomputed keyed states: it must
equal the standard library's HMAC for every key and nonce body."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime, timedelta

import pytest

from registry.services._challenge import MAC_BYTES, NONCE_BYTES, RANDOM_BYTES, TAG, ChallengeMinter


@pytest.mark.parametrize("trust_domain", ["td", "bench.mesh", "x" * 200])
def test_the_mac_is_hmac_sha256(trust_domain: str) -> None:
    for _ in range(200):
        key = os.urandom(32)
        minter = ChallengeMinter(key, trust_domain, timedelta(minutes=5))
        nonce, _ = minter.mint()
        body = nonce[: RANDOM_BYTES + 4]
        expected = hmac.new(key, TAG + trust_domain.encode() + body, hashlib.sha256).digest()
        assert nonce[RANDOM_BYTES + 4 :] == expected[:MAC_BYTES]
        assert len(nonce) == NONCE_BYTES
        minter.check(nonce)


def test_a_nonce_of_another_key_or_domain_is_refused() -> None:
    from registry.status import RpcError

    key = os.urandom(32)
    nonce, _ = ChallengeMinter(key, "a.td", timedelta(minutes=5)).mint()
    for other in (ChallengeMinter(os.urandom(32), "a.td", timedelta(minutes=5)),
                  ChallengeMinter(key, "b.td", timedelta(minutes=5))):
        with pytest.raises(RpcError):
            other.check(nonce, datetime.now(UTC))
