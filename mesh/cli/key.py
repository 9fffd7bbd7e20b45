"""``mesh key``: make an agent's identity key on the agent, and inspect it.

``generate`` prints the DID on stdout (and nothing else), so scripts can write
``DID=$(mesh key generate --out ./agent)``. ``show`` reads only public files
(key-history.json, identity.pub) unless they are missing.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from mesh.errors import KeyFileError
from mesh.keyhistory import KeyHistory
from mesh.keys.identity_key import IdentityKey, key_id
from mesh.keys.keyfile import (
    KEY_HISTORY_FILE,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    read_key_history,
    read_private_key,
    read_public_key,
    save_identity,
)

_ENCRYPTION_HELP = (
    "File holding the passphrase that encrypts the private key (one trailing newline is ignored)."
)


@click.group("key")
def key() -> None:
    """Identity keys: generate an agent's Ed25519 key and DID, show them."""


@key.command("generate")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Agent directory to create (mode 0700); must not already hold a key.",
)
@click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=_ENCRYPTION_HELP,
)
@click.option("--json", "as_json", is_flag=True, help='Print {"did", "kid", "public_key"}.')
def generate(out: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Generate an identity key in OUT: identity.key, identity.pub, key-history.json."""
    passphrase = _read_passphrase(passphrase_file) if passphrase_file else None
    identity_key = IdentityKey.generate()
    key_path = save_identity(out, identity_key, passphrase)
    did = str(identity_key.did())
    if as_json:
        click.echo(
            json.dumps(
                {"did": did, "kid": identity_key.kid, "public_key": _b64u(identity_key.public_key)}
            )
        )
    else:
        click.echo(did)
    state = "encrypted" if passphrase else "unencrypted"
    click.echo(f"wrote {key_path} ({state}, mode 0600) and {out / KEY_HISTORY_FILE}", err=True)


@key.command("show")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--jwk", is_flag=True, help="Print the current public key as an OKP JWK with kid.")
@click.option("--json", "as_json", is_flag=True, help="Print DID, key and key history as JSON.")
@click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Only needed when the public files are missing. " + _ENCRYPTION_HELP,
)
def show(directory: Path, jwk: bool, as_json: bool, passphrase_file: Path | None) -> None:
    """Show the DID, current key and key history of the agent directory DIRECTORY."""
    history = read_key_history(directory)
    if history is not None:
        did, public_key = str(history.did), history.current.public_key
        pub_path = directory / PUBLIC_KEY_FILE
        if pub_path.exists() and read_public_key(pub_path) != public_key:
            click.echo(
                f"warning: {pub_path} is not the current key of {KEY_HISTORY_FILE}; "
                "load the identity once to finish an interrupted rotation",
                err=True,
            )
    else:
        public_key = _public_key_without_history(directory, passphrase_file)
        did = _did_of(public_key)
        click.echo(
            f"warning: {directory} has no {KEY_HISTORY_FILE}; the DID shown assumes this key "
            "is the inception key",
            err=True,
        )
    kid = key_id(public_key)
    if jwk:
        x = _b64u(public_key)
        click.echo(json.dumps({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid}))
        return
    if as_json:
        document: dict[str, Any] = {
            "did": did,
            "kid": kid,
            "public_key": _b64u(public_key),
            "key_history": _periods_json(history) if history is not None else None,
        }
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"did:        {did}")
    click.echo(f"kid:        {kid}")
    click.echo(f"public key: {_b64u(public_key)}")
    if history is not None:
        rotations = len(history) - 1
        plural = "" if rotations == 1 else "s"
        click.echo(f"keys:       {len(history)} ({rotations} rotation{plural})")
        for period in history.periods:
            until = _time(period.rotated_at) if period.rotated_at else "current"
            click.echo(f"  {period.index:>3}  {period.kid}  {_time(period.valid_from)} .. {until}")


def _public_key_without_history(directory: Path, passphrase_file: Path | None) -> bytes:
    pub_path = directory / PUBLIC_KEY_FILE
    if pub_path.exists():
        return read_public_key(pub_path)
    key_path = directory / PRIVATE_KEY_FILE
    if not key_path.exists():
        raise KeyFileError(
            f"{directory} holds no identity ({KEY_HISTORY_FILE}, {PUBLIC_KEY_FILE} and "
            f"{PRIVATE_KEY_FILE} are all missing)",
            hint=f"create one with `mesh key generate --out {directory}`",
        )
    passphrase = _read_passphrase(passphrase_file) if passphrase_file else None
    return read_private_key(key_path, passphrase).public_key


def _did_of(public_key: bytes) -> str:
    from mesh.did import DID

    return str(DID.from_public_key(public_key))


def _periods_json(history: KeyHistory) -> list[dict[str, Any]]:
    return [
        {
            "index": p.index,
            "kid": p.kid,
            "public_key": _b64u(p.public_key),
            "valid_from": _time(p.valid_from),
            "rotated_at": _time(p.rotated_at) if p.rotated_at else None,
        }
        for p in history.periods
    ]


def _read_passphrase(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the passphrase file {path}: {exc.strerror}") from None
    # One trailing newline is what `echo secret > file` adds; it is not part of the passphrase.
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise KeyFileError(
            f"the passphrase file {path} is empty",
            hint="write the passphrase into it, or leave out --passphrase-file",
        )
    return data


def _time(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
