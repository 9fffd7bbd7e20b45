"""``mesh message``: sign a payload as an agent, verify a signed message as a peer.

``sign`` reads the payload on stdin and prints the signed message on stdout;
``verify`` reads a message (JSON envelope, JWS Compact or binary envelope —
detected from its first bytes) on stdin and, when every rule passes, prints
the payload exactly as signed (or ``--json``). A refused message exits 1 with
``error: <Reason>: <what happened> (<what to do>)`` on stderr, where
``<Reason>`` names the rule (MalformedMessage, UnknownKey, RevokedKey,
BadSignature, WrongAudience, LifetimeTooLong, NotYetValid, Expired, Replayed).
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import click

from mesh.cli._options import duration_callback, passphrase_option, read_passphrase
from mesh.ed25519 import check_public_key
from mesh.envelope import (
    ANY_AUDIENCE,
    Envelope,
    EnvelopeError,
    HistoryKeys,
    JwsMessage,
    KeyResolver,
    MalformedMessage,
    StaticKeys,
    VerifiedMessage,
    Verifier,
    parse_jws,
    sign_jws,
    sign_message,
)
from mesh.envelope._internal import b64url
from mesh.envelope.encoding import TAG
from mesh.envelope.jws import ALG_ED25519, ALG_EDDSA, DEFAULT_ALG, MAX_JWS_CHARS
from mesh.errors import MeshError
from mesh.keyhistory import KeyHistory
from mesh.keys import KEY_HISTORY_FILE, load_identity, read_key_history, read_public_key
from mesh.keys.keyfile import parse_public_key
from mesh.replay import replay_guard_from_config

# The binary form starts with the tag's 8-byte big-endian length, then the tag.
_BINARY_PREFIX = len(TAG).to_bytes(8, "big") + TAG
_MAX_INPUT_BYTES = MAX_JWS_CHARS + 1


@click.group("message")
def message() -> None:
    """Signed agent-to-agent messages: sign a payload, verify a message."""


@message.command("sign")
@click.option(
    "--key",
    "key_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Agent directory holding identity.key (and key-history.json, which names the DID).",
)
@click.option("--audience", required=True, help="Who the message is for (DID or SPIFFE ID).")
@click.option("--type", "payload_type", required=True, help="Payload type, e.g. application/json.")
@click.option(
    "--format",
    "form",
    type=click.Choice(["envelope", "jws", "binary"]),
    default="envelope",
    show_default=True,
    help="envelope: JSON; jws: JWS Compact; binary: the compact binary envelope.",
)
@click.option(
    "--ttl",
    default="5m",
    show_default=True,
    callback=duration_callback,
    help="How long the message stays valid (90s, 5m, 1h).",
)
@click.option(
    "--alg",
    type=click.Choice([ALG_EDDSA, ALG_ED25519]),
    default=DEFAULT_ALG,
    show_default=True,
    help="JWS alg name for Ed25519 (RFC 8037 EdDSA, or RFC 9864 Ed25519).",
)
@passphrase_option
def sign(
    key_dir: Path,
    audience: str,
    payload_type: str,
    form: str,
    ttl: timedelta,
    alg: str,
    passphrase_file: Path | None,
) -> None:
    """Sign the payload read from stdin; print the message on stdout."""
    key = load_identity(key_dir, read_passphrase(passphrase_file))
    history = read_key_history(key_dir)
    sender = str(history.did) if history is not None else str(key.did())
    payload = _read_stdin()
    if form == "jws":
        click.echo(sign_jws(key, sender, payload_type, payload, audience, ttl, alg=alg))
        return
    envelope = sign_message(key, sender, payload_type, payload, audience, ttl)
    if form == "binary":
        _write_binary(envelope.to_bytes())
    else:
        click.echo(envelope.to_json())


@message.command("verify")
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    help="The sender's public key: a file (identity.pub PEM, raw, base64url) or base64url "
    "text. Repeatable. Without --sender it must be the inception key that founds the DID.",
)
@click.option(
    "--sender",
    help="Trust --public-key for this DID (needed for a key the DID has rotated to).",
)
@click.option(
    "--key-history",
    type=click.Path(exists=True, path_type=Path),
    help="The sender's key-history.json (or agent directory): checks rotation and grace.",
)
@click.option(
    "--audience",
    multiple=True,
    help="Who we are; the message must be addressed to one of these. Without it the "
    "audience is not checked (a note says so).",
)
@click.option(
    "--max-skew",
    default="60s",
    show_default=True,
    callback=duration_callback,
    help="Allowed clock difference with the sender.",
)
@click.option(
    "--registry",
    "registry",
    multiple=True,
    envvar="MESH_VERIFY_REGISTRY",
    help="Resolve the sender through this registry (HOST:PORT; repeat for failover): its "
    "key history, status (revoked?) and compromised keys. Authenticates with --agent-dir "
    "(an agent's SVID) or else the operator credential in --data-dir.",
)
@click.option(
    "--registry-mtls",
    "registry_mtls",
    multiple=True,
    help="The registry's mutual-TLS address [default: the --registry port + 1].",
)
@click.option(
    "--agent-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="With --registry: call it as this agent (svid.0.pem, svid.0.key, bundle.0.pem).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".mesh"),
    show_default=True,
    help="With --registry and no --agent-dir: the registry's data dir (operator credential).",
)
@click.option(
    "--grace",
    default="24h",
    show_default=True,
    callback=duration_callback,
    help="With --registry: how long after a rotation messages signed before it by the old "
    "key are still accepted.",
)
@click.option(
    "--replay",
    default="memory",
    show_default=True,
    envvar="MESH_REPLAY",
    help="Replay guard: memory (this run only), or a Redis URL (redis://HOST:PORT/DB) "
    "shared by every verifier of the service, so a message is accepted once across runs.",
)
@click.option(
    "--replay-namespace",
    default="trustmesh:replay",
    show_default=True,
    help="With a Redis replay guard: the service's namespace (keys are <namespace>:...).",
)
@click.option("--json", "as_json", is_flag=True, help="Print sender, type, payload as JSON.")
def verify(
    public_keys: tuple[str, ...],
    sender: str | None,
    key_history: Path | None,
    audience: tuple[str, ...],
    max_skew: timedelta,
    registry: tuple[str, ...],
    registry_mtls: tuple[str, ...],
    agent_dir: Path | None,
    data_dir: Path,
    grace: timedelta,
    replay: str,
    replay_namespace: str,
    as_json: bool,
) -> None:
    """Verify the message read from stdin; print its payload (or --json) when it passes."""
    if registry:
        if public_keys or sender or key_history:
            raise click.UsageError(
                "give either --registry or --public-key/--sender/--key-history, not both"
            )
        keys: KeyResolver = _registry_resolver(registry, registry_mtls, agent_dir, data_dir, grace)
    else:
        keys = _resolver(public_keys, sender, key_history)
    if not audience:
        click.echo("note: the audience is not checked (pass --audience)", err=True)
    guard = replay_guard_from_config(replay, namespace=replay_namespace)
    verifier = Verifier(
        keys, audience=audience or ANY_AUDIENCE, max_skew=max_skew, replay=guard
    )
    try:
        verified = verifier.verify(_parse(_read_stdin()))
    except EnvelopeError as exc:
        click.echo(f"error: {exc.reason}: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(_as_json(verified), indent=2))
    else:
        _write_binary(verified.payload)


def _resolver(
    public_keys: tuple[str, ...], sender: str | None, key_history: Path | None
) -> KeyResolver:
    if key_history is not None:
        if public_keys or sender:
            raise click.UsageError("give either --key-history or --public-key, not both")
        return HistoryKeys([_load_history(key_history)])
    if not public_keys:
        raise click.UsageError("give the sender's --public-key (or its --key-history)")
    raw = [_public_key(value) for value in public_keys]
    if sender is None:
        return StaticKeys.inception(*raw)
    return StaticKeys({sender: raw})


def _registry_resolver(
    registry: tuple[str, ...],
    registry_mtls: tuple[str, ...],
    agent_dir: Path | None,
    data_dir: Path,
    grace: timedelta,
) -> KeyResolver:
    """A one-shot peer verifier: the sender is resolved through the registry (no stream)."""
    from mesh.agentdir import AgentDir
    from mesh.client.channel import TLSConfig
    from mesh.client.operator import operator_tls
    from mesh.verifier import PeerVerifier

    if agent_dir is not None:
        directory = AgentDir(agent_dir)
        chain, key = directory.read_svid()
        tls = TLSConfig(directory.read_bundle(), chain, key)
    else:
        tls = operator_tls(data_dir)
    return PeerVerifier.connect(
        list(registry),
        tls=tls,
        mtls_registry=list(registry_mtls) or None,
        watch=False,
        grace=grace,
    )


def _public_key(value: str) -> bytes:
    path = Path(value)
    if path.is_file():
        return read_public_key(path)
    if len(value) > 256:
        raise MeshError("--public-key is neither a file nor a base64url public key")
    return check_public_key(parse_public_key(value.encode("utf-8"), "--public-key"))


def _load_history(path: Path) -> KeyHistory:
    if path.is_dir():
        history = read_key_history(path)
        if history is None:
            raise MeshError(f"{path} has no {KEY_HISTORY_FILE}")
        return history
    return KeyHistory.from_json(path.read_bytes())


def _read_stdin() -> bytes:
    data = sys.stdin.buffer.read(_MAX_INPUT_BYTES + 1)
    if len(data) > _MAX_INPUT_BYTES:
        raise MeshError(f"stdin holds more than {_MAX_INPUT_BYTES} bytes; that is too large")
    return data


def _write_binary(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _parse(data: bytes) -> Envelope | JwsMessage:
    """Tell the wire form from its first bytes, then parse it (rule 1, shape)."""
    if data.startswith(_BINARY_PREFIX):
        return Envelope.from_bytes(data)
    text = data.strip()
    if text.startswith(b"{"):
        return Envelope.from_json(text)
    if text.count(b".") == 2:
        return parse_jws(text)
    raise MalformedMessage(
        "the input is neither a JSON envelope, a JWS Compact message nor a binary envelope",
        hint="pipe in what `mesh message sign` printed",
    )


def _as_json(verified: VerifiedMessage) -> dict[str, object]:
    try:
        text: str | None = verified.payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "sender": verified.sender,
        "kid": verified.kid,
        "type": verified.payload_type,
        "audience": verified.audience,
        "issued_at": verified.issued.isoformat(),
        "expires_at": verified.expires.isoformat(),
        "form": verified.form,
        "payload": text,
        "payload_b64url": b64url.encode(verified.payload),
    }
