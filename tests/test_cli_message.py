"""``mesh message sign`` / ``verify``: in process (CliRunner) and through the installed script."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mesh.cli.message import message
from mesh.envelope import sign_jws, sign_message
from mesh.envelope._internal import b64url
from mesh.errors import KeyFileError
from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey, save_identity

BOB = "spiffe://example.org/agent/bob"
ALICE_KEY = IdentityKey.from_seed(bytes(range(32)))
ALICE = str(ALICE_KEY.did())
NEW_KEY = IdentityKey.from_seed(bytes(range(2, 34)))
MALLORY_KEY = IdentityKey.from_seed(bytes(range(1, 33)))


def run(args: list[object], stdin: bytes = b"") -> Result:
    return CliRunner().invoke(message, [str(a) for a in args], input=stdin)


@pytest.fixture
def alice(tmp_path: Path) -> Path:
    directory = tmp_path / "alice"
    save_identity(directory, ALICE_KEY)
    return directory


def sign(directory: Path, payload: bytes, *extra: object) -> bytes:
    result = run(
        ["sign", "--key", directory, "--audience", BOB, "--type", "text/plain", *extra], payload
    )
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def verify(stdin: bytes, *args: object) -> Result:
    return run(["verify", *args], stdin)


@pytest.mark.parametrize("form", ["envelope", "jws", "binary"])
def test_sign_then_verify_prints_the_payload(alice: Path, form: str) -> None:
    payload = b"\x00 binary \xff payload\n"
    signed = sign(alice, payload, "--format", form)
    result = verify(signed, "--public-key", alice / "identity.pub", "--audience", BOB)
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == payload
    assert result.stderr == ""


def test_sign_prints_an_envelope_with_the_agents_did(alice: Path) -> None:
    document = json.loads(sign(alice, b"hello", "--ttl", "90s"))
    assert document["format"] == "trustmesh/envelope/v1"
    assert document["sender"] == ALICE
    assert document["kid"] == ALICE_KEY.kid
    assert document["audience"] == BOB
    assert document["payload_type"] == "text/plain"
    assert document["expires_at"] - document["issued_at"] == 90


def test_verify_json_output(alice: Path) -> None:
    signed = sign(alice, "héllo".encode(), "--format", "jws")
    key_text = b64url.encode(ALICE_KEY.public_key)
    result = verify(signed, "--public-key", key_text, "--audience", BOB, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["sender"] == ALICE
    assert document["type"] == "text/plain"
    assert document["payload"] == "héllo"
    assert document["form"] == "jws"
    binary = verify(sign(alice, b"\xff"), "--public-key", key_text, "--json")
    assert json.loads(binary.stdout)["payload"] is None
    assert json.loads(binary.stdout)["payload_b64url"] == "_w"


def test_missing_audience_is_noted(alice: Path) -> None:
    result = verify(sign(alice, b"x"), "--public-key", alice / "identity.pub")
    assert result.exit_code == 0
    assert "audience is not checked" in result.stderr


def reason(result: Result) -> str:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0].split(":")[1].strip()


def test_refusals_exit_1_and_name_the_rule(alice: Path, tmp_path: Path) -> None:
    pub = alice / "identity.pub"
    signed = sign(alice, b"x")
    assert reason(verify(signed, "--public-key", pub, "--audience", "carol")) == "WrongAudience"
    document = json.loads(signed)
    document["payload"] = b64url.encode(b"y")
    tampered = json.dumps(document).encode()
    assert reason(verify(tampered, "--public-key", pub)) == "BadSignature"
    mallory = b64url.encode(MALLORY_KEY.public_key)
    assert reason(verify(signed, "--public-key", mallory)) == "UnknownKey"
    old = sign_message(ALICE_KEY, ALICE, "t", b"x", BOB, now=datetime.now(UTC) - timedelta(hours=1))
    assert reason(verify(old.to_json().encode(), "--public-key", pub)) == "Expired"
    future = sign_jws(ALICE_KEY, ALICE, "t", b"x", BOB, now=datetime.now(UTC) + timedelta(hours=1))
    assert reason(verify(future.encode(), "--public-key", pub)) == "NotYetValid"
    long = sign(alice, b"x", "--ttl", "2h")
    assert reason(verify(long, "--public-key", pub)) == "LifetimeTooLong"
    assert reason(verify(b"garbage", "--public-key", pub)) == "MalformedMessage"
    assert reason(verify(b"{}", "--public-key", pub)) == "MalformedMessage"
    assert reason(verify(b"a.b.c", "--public-key", pub)) == "MalformedMessage"


def test_rotated_identity_signs_as_its_did(tmp_path: Path) -> None:
    directory = tmp_path / "alice"
    at = datetime.now(UTC) - timedelta(days=1)
    history = KeyHistory.incept(ALICE_KEY, at - timedelta(days=30)).rotate(ALICE_KEY, NEW_KEY, at)
    save_identity(directory, NEW_KEY, history=history)
    signed = sign(directory, b"x")
    assert json.loads(signed)["sender"] == ALICE
    assert json.loads(signed)["kid"] == NEW_KEY.kid
    new_pub = b64url.encode(NEW_KEY.public_key)
    # The new key does not found Alice's DID: it must be vouched for, or come with the history.
    assert reason(verify(signed, "--public-key", new_pub)) == "UnknownKey"
    assert verify(signed, "--public-key", new_pub, "--sender", ALICE).exit_code == 0
    assert verify(signed, "--key-history", directory).exit_code == 0
    assert verify(signed, "--key-history", directory / "key-history.json").exit_code == 0
    # The history also says the old key is past its grace.
    stale = sign_message(ALICE_KEY, ALICE, "t", b"x", BOB)
    assert reason(verify(stale.to_json().encode(), "--key-history", directory)) == "RevokedKey"


def test_passphrase_protected_key(tmp_path: Path) -> None:
    directory = tmp_path / "alice"
    save_identity(directory, ALICE_KEY, b"correct horse")
    secret = tmp_path / "passphrase"
    secret.write_text("correct horse\n")
    signed = sign(directory, b"x", "--passphrase-file", secret)
    assert verify(signed, "--public-key", directory / "identity.pub").exit_code == 0
    result = run(["sign", "--key", directory, "--audience", BOB, "--type", "t"], b"x")
    assert result.exit_code == 1
    assert isinstance(result.exception, KeyFileError)


def test_usage_errors_exit_2(alice: Path) -> None:
    signed = sign(alice, b"x")
    assert verify(signed).exit_code == 2
    assert (
        verify(signed, "--public-key", alice / "identity.pub", "--key-history", alice).exit_code
        == 2
    )
    bad_ttl = run(["sign", "--key", alice, "--audience", BOB, "--type", "t", "--ttl", "soon"])
    assert bad_ttl.exit_code == 2
    bad_form = run(["sign", "--key", alice, "--audience", BOB, "--type", "t", "--format", "xml"])
    assert bad_form.exit_code == 2


def test_a_bad_public_key_is_a_named_error(alice: Path) -> None:
    result = verify(sign(alice, b"x"), "--public-key", "not-a-key")
    assert result.exit_code == 1
    assert "base64url" in str(result.exception)


def test_installed_script_round_trip(alice: Path) -> None:
    mesh = Path(sys.executable).parent / "mesh"
    signed = subprocess.run(
        [
            mesh,
            "message",
            "sign",
            "--key",
            alice,
            "--audience",
            BOB,
            "--type",
            "t",
            "--format",
            "jws",
        ],
        input=b"over the wire",
        capture_output=True,
        check=True,
    ).stdout
    ok = subprocess.run(
        [mesh, "message", "verify", "--public-key", alice / "identity.pub", "--audience", BOB],
        input=signed,
        capture_output=True,
    )
    assert (ok.returncode, ok.stdout) == (0, b"over the wire")
    refused = subprocess.run(
        [mesh, "message", "verify", "--public-key", alice / "identity.pub", "--audience", "x"],
        input=signed,
        capture_output=True,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(b"error: WrongAudience: ")
