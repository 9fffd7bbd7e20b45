"""Registration challenges: minted without a store write, checked by MAC and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from registry.services._challenge import NONCE_BYTES, ChallengeMinter, load_or_create_key
from registry.status import RpcError

KEY = bytes(range(32))


def test_mint_and_check() -> None:
    minter = ChallengeMinter(KEY, "a.example", timedelta(minutes=5))
    now = datetime(2030, 1, 1, tzinfo=UTC)
    nonce, expires = minter.mint(now)
    assert len(nonce) == NONCE_BYTES == 32
    assert expires == now + timedelta(minutes=5)
    assert minter.check(nonce, now) == expires
    assert minter.mint(now)[0] != nonce


@pytest.mark.parametrize("flip", [0, 12, 15, 16, 31])
def test_any_changed_byte_is_refused(flip: int) -> None:
    minter = ChallengeMinter(KEY, "a.example", timedelta(minutes=5))
    now = datetime(2030, 1, 1, tzinfo=UTC)
    nonce = bytearray(minter.mint(now)[0])
    nonce[flip] ^= 1
    with pytest.raises(RpcError) as err:
        minter.check(bytes(nonce), now)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "unknown" in err.value.message


def test_expired_other_domain_other_key() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    minter = ChallengeMinter(KEY, "a.example", timedelta(minutes=5))
    nonce, _ = minter.mint(now)
    with pytest.raises(RpcError) as err:
        minter.check(nonce, now + timedelta(minutes=6))
    assert "expired" in err.value.message
    for other in (
        ChallengeMinter(KEY, "b.example", timedelta(minutes=5)),
        ChallengeMinter(bytes(32), "a.example", timedelta(minutes=5)),
    ):
        with pytest.raises(RpcError):
            other.check(nonce, now)


def test_key_file(tmp_path: Path) -> None:
    path = tmp_path / "challenge.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and (path.stat().st_mode & 0o777) == 0o600
    assert load_or_create_key(path) == key
    path.write_bytes(b"short")
    with pytest.raises(ValueError):
        load_or_create_key(path)
