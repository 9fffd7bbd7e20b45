"""``mesh key generate`` / ``mesh key show``: in process (CliRunner) and the installed script."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from joserfc.jwk import OKPKey

from mesh.cli.key import key
from mesh.errors import KeyFileError
from mesh.keyhistory import KeyHistory
from mesh.keys import (
    KEY_HISTORY_FILE,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    load_identity,
    read_public_key,
)

MESH = Path(sys.executable).with_name("mesh")


def _run(*args: str | Path) -> tuple[int, str, str, BaseException | None]:
    result = CliRunner().invoke(key, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr, result.exception


def test_generate_prints_only_the_did(tmp_path: Path) -> None:
    out = tmp_path / "agent"
    code, stdout, stderr, _ = _run("generate", "--out", out)
    assert code == 0, stderr
    did = stdout.strip()
    assert did.startswith("did:mesh:") and "\n" not in did
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, KEY_HISTORY_FILE]
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / PRIVATE_KEY_FILE).stat().st_mode) == 0o600
    history = KeyHistory.from_json((out / KEY_HISTORY_FILE).read_text())
    assert str(history.did) == did
    loaded = load_identity(out)
    assert str(loaded.did()) == did
    assert "unencrypted" in stderr


def test_generate_json(tmp_path: Path) -> None:
    code, stdout, _, _ = _run("generate", "--out", tmp_path / "a", "--json")
    assert code == 0
    doc = json.loads(stdout)
    assert set(doc) == {"did", "kid", "public_key"}
    identity_key = load_identity(tmp_path / "a")
    assert doc["kid"] == identity_key.kid
    assert doc["did"] == str(identity_key.did())
    assert read_public_key(tmp_path / "a" / PUBLIC_KEY_FILE) == identity_key.public_key
    (tmp_path / "pk").write_text(doc["public_key"])
    assert read_public_key(tmp_path / "pk") == identity_key.public_key


def test_generate_with_passphrase_file(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_bytes(b"s3cret\n")
    code, _, stderr, _ = _run("generate", "--out", tmp_path / "a", "--passphrase-file", secret)
    assert code == 0 and "encrypted" in stderr
    pem = (tmp_path / "a" / PRIVATE_KEY_FILE).read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert load_identity(tmp_path / "a", b"s3cret").kid  # the trailing newline is not part of it
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_identity(tmp_path / "a", b"s3cret\n")


def test_generate_refuses_empty_passphrase_file(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_bytes(b"\n")
    code, _, _, exc = _run("generate", "--out", tmp_path / "a", "--passphrase-file", secret)
    assert code == 1
    assert isinstance(exc, KeyFileError) and "is empty" in str(exc)
    assert not (tmp_path / "a").exists()


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "a"
    assert _run("generate", "--out", out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, stdout, _, exc = _run("generate", "--out", out)
    assert code == 1 and stdout == ""
    assert isinstance(exc, KeyFileError) and "refusing to overwrite" in str(exc)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_generate_requires_out() -> None:
    code, _, stderr, _ = _run("generate")
    assert code == 2 and "--out" in stderr


def test_show_text_json_and_jwk(tmp_path: Path) -> None:
    out = tmp_path / "a"
    secret = tmp_path / "pass"
    secret.write_text("pw")
    _, stdout, _, _ = _run("generate", "--out", out, "--passphrase-file", secret, "--json")
    generated = json.loads(stdout)
    # The private key is encrypted, yet show needs no passphrase: it reads public files only.
    code, text, _, _ = _run("show", out)
    assert code == 0
    assert f"did:        {generated['did']}" in text
    assert f"kid:        {generated['kid']}" in text
    assert "keys:       1 (0 rotations)" in text

    code, stdout, _, _ = _run("show", out, "--json")
    doc = json.loads(stdout)
    assert {k: doc[k] for k in ("did", "kid", "public_key")} == generated
    [period] = doc["key_history"]
    assert period["kid"] == generated["kid"] and period["rotated_at"] is None

    code, stdout, _, _ = _run("show", out, "--jwk")
    jwk = json.loads(stdout)
    assert jwk == {"kty": "OKP", "crv": "Ed25519", "x": generated["public_key"], "kid": doc["kid"]}
    # A standard JOSE library computes the same RFC 7638 thumbprint.
    assert OKPKey.import_key(jwk).thumbprint() == jwk["kid"]


def test_show_after_rotation(tmp_path: Path) -> None:
    from mesh.identity import AgentIdentity

    identity = AgentIdentity.generate("a")
    identity.save(tmp_path)
    first_kid = identity.kid
    identity.rotate()
    identity.save(tmp_path)
    code, stdout, _, _ = _run("show", tmp_path, "--json")
    doc = json.loads(stdout)
    assert doc["did"] == identity.did and doc["kid"] == identity.kid
    assert [p["kid"] for p in doc["key_history"]] == [first_kid, identity.kid]
    assert doc["key_history"][0]["rotated_at"] == doc["key_history"][1]["valid_from"]
    code, text, _, _ = _run("show", tmp_path)
    assert code == 0 and "keys:       2 (1 rotation)" in text


def test_show_without_public_files_needs_the_passphrase(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("pw")
    out = tmp_path / "a"
    _, stdout, _, _ = _run("generate", "--out", out, "--passphrase-file", secret, "--json")
    generated = json.loads(stdout)
    (out / KEY_HISTORY_FILE).unlink()
    (out / PUBLIC_KEY_FILE).unlink()
    code, _, _, exc = _run("show", out)
    assert code == 1 and isinstance(exc, KeyFileError)
    assert "no passphrase was given" in str(exc)
    code, stdout, stderr, _ = _run("show", out, "--json", "--passphrase-file", secret)
    assert code == 0
    doc = json.loads(stdout)
    assert doc["did"] == generated["did"] and doc["key_history"] is None
    assert "no key-history.json" in stderr


def test_show_an_empty_directory(tmp_path: Path) -> None:
    code, _, _, exc = _run("show", tmp_path)
    assert code == 1 and isinstance(exc, KeyFileError)
    assert "holds no identity" in str(exc) and "mesh key generate" in str(exc)


def test_show_refuses_a_tampered_history(tmp_path: Path) -> None:
    from mesh.errors import KeyHistoryError

    _run("generate", "--out", tmp_path / "a")
    path = tmp_path / "a" / KEY_HISTORY_FILE
    doc = json.loads(path.read_text())
    doc["entries"][0]["at"] = "2020-01-01T00:00:00Z"
    path.write_text(json.dumps(doc))
    code, _, _, exc = _run("show", tmp_path / "a")
    assert code == 1 and isinstance(exc, KeyHistoryError)
    assert "entry 0: rule 'signature'" in str(exc)


# -- the installed console script -------------------------------------------------------------


def _mesh(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(
        [str(MESH), *map(str, args)], capture_output=True, text=True, timeout=60, env=env
    )


def test_installed_script(tmp_path: Path) -> None:
    assert MESH.exists(), f"the mesh console script is not installed beside {sys.executable}"
    out = tmp_path / "agent"
    first = _mesh("key", "generate", "--out", out)
    assert first.returncode == 0, first.stderr
    did = first.stdout.strip()
    assert did.startswith("did:mesh:")
    again = _mesh("key", "generate", "--out", out)
    assert again.returncode == 1
    assert again.stderr.startswith("error: ") and "refusing to overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    shown = _mesh("key", "show", out, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["did"] == did
    insecure = out / PRIVATE_KEY_FILE
    insecure.chmod(0o644)
    # show reads the public files only, so it still works; loading the key does not.
    assert _mesh("key", "show", out).returncode == 0
    (out / PUBLIC_KEY_FILE).unlink()
    (out / KEY_HISTORY_FILE).unlink()
    refused = _mesh("key", "show", out)
    assert refused.returncode == 1 and f"chmod 600 {insecure}" in refused.stderr
