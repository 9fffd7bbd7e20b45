"""Peer verification: two agents exchange signed messages; one is revoked; its next is refused.

Start a registry first (it writes ./.mesh/bundle.pem and the operator credential)::

    mesh serve                       # TLS on 127.0.0.1:8443, mTLS on 127.0.0.1:8444
    python examples/peer_verification.py

What it does:

1. operator: join tokens for two agents, alice and bob; each registers into its
   own fresh directory (identity key made there);
2. each agent verifies the other's messages with a :class:`PeerVerifier` that
   resolves senders through the registry with the agent's own X.509-SVID, and a
   replay guard (``--replay memory`` or ``--replay redis://127.0.0.1:6379/0``);
3. alice and bob exchange a few messages; a replayed message is refused;
4. operator: revoke alice;
5. alice's next message to bob is refused (RevokedKey); and alice, revoked, can
   no longer resolve anyone through the registry (KeyStatusUnavailable).

An agent may watch only its own events, so an agent's verifier cannot follow
the registry's stream: it asks the registry again whenever its answer is older
than ``--max-staleness`` (0 here: every message, so the revocation is seen at
once). A gateway with an enforcer credential (``mesh principal create
enforcer NAME``; ``--gateway-dir DIR``) follows the stream instead and answers
from memory, learning of the revocation within milliseconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from mesh.agentdir import AgentDir
from mesh.client import AgentClient, OperatorClient
from mesh.client.channel import TLSConfig
from mesh.envelope import Envelope, EnvelopeError, Verifier, sign_message
from mesh.errors import MeshError
from mesh.keys import IdentityKey, load_identity
from mesh.replay import replay_guard_from_config
from mesh.verifier import PeerVerifier


class Peer:
    """One agent: its identity, and how it verifies what others send it."""

    def __init__(self, name: str, did: str, key: IdentityKey, verifier: Verifier) -> None:
        self.name, self.did, self.key, self.verifier = name, did, key, verifier

    def send(self, to: Peer, text: str) -> str:
        return sign_message(
            self.key, self.did, "text/plain", text.encode(), to.did, ttl=timedelta(minutes=5)
        ).to_json()

    def receive(self, wire: str) -> None:
        try:
            message = self.verifier.verify(Envelope.from_json(wire))
        except EnvelopeError as exc:
            print(f"  {self.name} REFUSED: {exc.reason}: {exc.message}")
            return
        print(f"  {self.name} accepted from {message.sender[:24]}...: "
              f"{message.payload.decode()!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", default="127.0.0.1:8443", help="TLS address HOST:PORT")
    parser.add_argument("--registry-mtls", default=None, help="mTLS address [default: port + 1]")
    parser.add_argument("--data-dir", type=Path, default=Path(".mesh"), help="registry data dir")
    parser.add_argument("--replay", default="memory", help="memory, or a redis:// URL")
    parser.add_argument("--max-staleness", type=float, default=0.0,
                        help="seconds an agent's verifier may answer from its cache")
    parser.add_argument("--gateway-dir", type=Path, default=None,
                        help="enforcer credential dir: bob's verifier follows the event stream")
    args = parser.parse_args()
    try:
        run(args)
    except MeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> None:
    registry, mtls = args.registry, args.registry_mtls
    with OperatorClient.from_data_dir(args.data_dir, registry, mtls_registry=mtls) as operator, \
            tempfile.TemporaryDirectory(prefix="mesh-peers-") as tmp:
        peers: dict[str, Peer] = {}
        verifiers: list[PeerVerifier] = []
        for name in ("alice", "bob"):
            token = operator.create_token(f"examples/{name}", ttl=timedelta(minutes=5))
            directory = Path(tmp) / name
            with AgentClient(registry, directory, args.data_dir / "bundle.pem",
                             mtls_registry=mtls) as agent:
                did = agent.register(token.token).did
            print(f"{name}: registered {did}")
            keys = _verifier_keys(args, directory, name)
            verifiers.append(keys)
            replay = replay_guard_from_config(args.replay, namespace=f"examples:{name}")
            verifier = Verifier(keys, audience=did, replay=replay)
            peers[name] = Peer(name, did, load_identity(directory), verifier)
        alice, bob = peers["alice"], peers["bob"]

        print("exchange:")
        hello = alice.send(bob, "hello bob")
        bob.receive(hello)
        alice.receive(bob.send(alice, "hello alice"))
        print("replay of alice's first message:")
        bob.receive(hello)

        operator.revoke_agent(alice.did, reason="examples/peer_verification: compromised host")
        print(f"operator: revoked {alice.did}")
        if args.gateway_dir is not None:
            time.sleep(0.1)  # the event reaches the gateway's stream within milliseconds
        print("after the revocation:")
        bob.receive(alice.send(bob, "it's alice again"))
        alice.receive(bob.send(alice, "bye alice"))
        for keys in verifiers:
            keys.stop()


def _verifier_keys(args: argparse.Namespace, directory: Path, name: str) -> PeerVerifier:
    if name == "bob" and args.gateway_dir is not None:
        root = args.gateway_dir
        tls = TLSConfig.from_files(
            root / "bundle.pem", root / "enforcer.pem", root / "enforcer.key"
        )
        keys = PeerVerifier.connect(args.registry, tls=tls, mtls_registry=args.registry_mtls)
        keys.start()
        if not keys.wait_synced(10):
            raise MeshError("the gateway's verifier could not follow the registry's events")
        print(f"{name}: verifying through a gateway that follows the event stream")
        return keys
    agent_dir = AgentDir(directory)
    chain, key = agent_dir.read_svid()
    tls = TLSConfig(agent_dir.read_bundle(), chain, key)
    # An agent's SVID does not follow the stream (an agent may watch only itself).
    return PeerVerifier.connect(
        args.registry, tls=tls, mtls_registry=args.registry_mtls,
        max_staleness=timedelta(seconds=args.max_staleness),
    )


if __name__ == "__main__":
    raise SystemExit(main())
