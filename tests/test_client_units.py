"""Registry client pieces that need no server: addresses, backoff, renewal schedule, agent dir."""

from __future__ import annotations

import json
import os
import random
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mesh.agentdir import AgentDir, AgentDirError, AgentInfo
from mesh.cli._options import parse_duration
from mesh.client.channel import RetryPolicy, TLSConfig, parse_addresses
from mesh.client.errors import CredentialError
from mesh.client.operator import ttl_seconds
from mesh.client.renewal import failure_delay, renewal_delay, renewal_time
from mesh.errors import MeshError

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


# -- addresses -----------------------------------------------------------------------------


def test_addresses_from_strings_and_lists() -> None:
    assert parse_addresses("127.0.0.1:8443") == ("127.0.0.1:8443",)
    assert parse_addresses("a:1, b:2,a:1") == ("a:1", "b:2")
    assert parse_addresses(["a:1", "[::1]:8443"]) == ("a:1", "[::1]:8443")


@pytest.mark.parametrize("bad", ["", "host", "host:", ":80", "h:0", "h:65536", "h:x", "::1:80"])
def test_bad_addresses_are_named(bad: str) -> None:
    with pytest.raises(MeshError) as info:
        parse_addresses(bad)
    assert "HOST:PORT" in str(info.value)


# -- retry policy --------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    policy = RetryPolicy(rounds=6, initial_backoff=0.1, max_backoff=1.0, multiplier=2, jitter=0.5)
    rng = random.Random(7)
    for retry, base in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
        for _ in range(50):
            delay = policy.backoff(retry, rng)
            assert base * 0.5 <= delay <= base


def test_no_jitter_is_exact() -> None:
    policy = RetryPolicy(initial_backoff=0.25, multiplier=3, max_backoff=10, jitter=0)
    assert [policy.backoff(i, random.Random()) for i in range(3)] == [0.25, 0.75, 2.25]


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(rounds=0)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.5)


def test_tls_config_needs_a_certificate_and_a_key_pair() -> None:
    with pytest.raises(CredentialError):
        TLSConfig(b"not a pem")
    pem = b"-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"
    with pytest.raises(CredentialError):
        TLSConfig(pem, cert_chain_pem=pem)
    assert "secret" not in repr(TLSConfig(pem, pem, b"secret"))


# -- renewal schedule ----------------------------------------------------------------------


def test_renewal_happens_around_half_life() -> None:
    rng = random.Random(1)
    for _ in range(200):
        at = renewal_time(T0, T0 + HOUR, jitter=0.1, rng=rng)
        assert T0 + HOUR * 0.45 <= at <= T0 + HOUR * 0.55
    assert renewal_time(T0, T0 + HOUR, jitter=0, rng=rng) == T0 + HOUR / 2


def test_renewal_delay_counts_from_now_and_never_goes_negative() -> None:
    rng = random.Random(2)
    assert renewal_delay(T0, T0 + HOUR, T0, jitter=0, rng=rng) == 1800
    assert renewal_delay(T0, T0 + HOUR, T0 + timedelta(minutes=20), jitter=0, rng=rng) == 600
    assert renewal_delay(T0, T0 + HOUR, T0 + 2 * HOUR, jitter=0, rng=rng) == 0
    with pytest.raises(ValueError):
        renewal_time(T0, T0 + HOUR, jitter=0.9, rng=rng)


def test_failure_delay_backs_off_and_respects_expiry() -> None:
    rng = random.Random(3)
    now = T0 + HOUR / 2
    delays = [failure_delay(n, now, T0 + HOUR, rng) for n in range(1, 10)]
    assert 0.5 <= delays[0] <= 1.0
    assert all(d <= 60 for d in delays)
    assert max(delays[6:]) > 20  # grew to tens of seconds
    # Ten seconds of validity left: retry within a quarter of it (at least one second).
    near = failure_delay(9, T0 + HOUR - timedelta(seconds=10), T0 + HOUR, rng)
    assert near <= 2.5
    # Already expired: still bounded by the backoff cap.
    assert failure_delay(20, T0 + 2 * HOUR, T0 + HOUR, rng) <= 60


# -- durations and ttls --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("7d", 604800), ("1h30m", 5400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "0", "10x", "m", "1.5h", "-5m", "5m3", "0s"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(MeshError):
        parse_duration(bad)


def test_ttl_seconds() -> None:
    assert ttl_seconds(None) == 0
    assert ttl_seconds(timedelta(minutes=2)) == 120
    assert ttl_seconds(30) == 30
    for bad in (0, -1, timedelta(milliseconds=1500), 2**32):
        with pytest.raises(MeshError):
            ttl_seconds(bad)  # type: ignore[arg-type]


# -- agent directory -----------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_agent_dir_writes_with_modes(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        d = AgentDir(tmp_path / "a" / "b")
        d.write_svid(b"CHAIN", b"KEY")
        d.write_bundle(b"BUNDLE")
        info = AgentInfo("did:mesh:x", "spiffe://td/agent/x", "td", "127.0.0.1:8443")
        d.write_info(info)
    finally:
        os.umask(old)
    assert _mode(d.path) == 0o700
    assert _mode(d.svid_key) == 0o600
    assert _mode(d.svid) == 0o644
    assert _mode(d.bundle) == 0o644
    assert d.read_svid() == (b"CHAIN", b"KEY")
    assert d.read_bundle() == b"BUNDLE"
    assert d.read_info() == info
    assert json.loads(d.agent_json.read_text()) == {
        "did": "did:mesh:x",
        "spiffe_id": "spiffe://td/agent/x",
        "trust_domain": "td",
        "registry": "127.0.0.1:8443",
    }
    # Replacing leaves no temporary files behind.
    d.write_svid(b"CHAIN2", b"KEY2")
    assert sorted(p.name for p in d.path.iterdir()) == [
        "agent.json",
        "bundle.0.pem",
        "svid.0.key",
        "svid.0.pem",
    ]


def test_agent_dir_refuses_a_readable_svid_key(tmp_path: Path) -> None:
    d = AgentDir(tmp_path)
    d.write_svid(b"CHAIN", b"KEY")
    os.chmod(d.svid_key, 0o644)
    with pytest.raises(AgentDirError, match="chmod 600"):
        d.read_svid()


def test_agent_dir_before_registration(tmp_path: Path) -> None:
    d = AgentDir(tmp_path / "new")
    assert d.read_info() is None
    with pytest.raises(AgentDirError, match="mesh register"):
        d.read_svid()


@pytest.mark.parametrize(
    "text", ["not json", "[]", '{"did": "x"}', '{"did": 1, "spiffe_id": "s", "trust_domain": "t"}']
)
def test_bad_agent_json_is_named(tmp_path: Path, text: str) -> None:
    (tmp_path / "agent.json").write_text(text)
    with pytest.raises(AgentDirError, match=r"agent\.json"):
        AgentDir(tmp_path).read_info()
