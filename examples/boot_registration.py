"""Boot registration, end to end, against a running registry.

Start a registry first (it writes ./.mesh/bundle.pem and the operator credential)::

    mesh serve                       # TLS on 127.0.0.1:8443, mTLS on 127.0.0.1:8444
    python examples/boot_registration.py

What it does, as an operator and then as an agent booting:

1. operator: create a one-time join token bound to an agent name;
2. agent: register into a fresh directory (the Ed25519 identity key is made
   there, the registry signs a CSR for a P-256 key also made there);
3. agent: restart (a new client over the same directory) and re-register with
   the existing key, no token: same DID;
4. agent: renew the X.509-SVID once (new P-256 key, mTLS with the current SVID);
5. agent: fetch a JWT-SVID and validate it against the trust bundle.

It prints what happened, never key material or the bearer tokens themselves.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from mesh.bundle import Bundle
from mesh.client import AgentClient, OperatorClient
from mesh.errors import MeshError
from mesh.svid import parse_and_validate_jwt_svid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", default="127.0.0.1:8443", help="TLS address HOST:PORT")
    parser.add_argument("--registry-mtls", default=None, help="mTLS address [default: port + 1]")
    parser.add_argument("--data-dir", type=Path, default=Path(".mesh"), help="registry data dir")
    parser.add_argument("--name", default="examples/boot-agent", help="agent name for the token")
    args = parser.parse_args()

    try:
        run(args.registry, args.registry_mtls, args.data_dir, args.name)
    except MeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run(registry: str, registry_mtls: str | None, data_dir: Path, name: str) -> None:
    with OperatorClient.from_data_dir(data_dir, registry, mtls_registry=registry_mtls) as operator:
        created = operator.create_token(name, ttl=timedelta(minutes=5))
        print(f"operator: join token {created.info.id} for {name!r}, "
              f"expires {created.info.expires_at:%H:%M:%S}Z")

        with tempfile.TemporaryDirectory(prefix="mesh-agent-") as tmp:
            agent_dir = Path(tmp) / "agent"
            bootstrap_bundle = data_dir / "bundle.pem"

            with AgentClient(
                registry, agent_dir, bootstrap_bundle, mtls_registry=registry_mtls
            ) as agent:
                first = agent.register(created.token)
                print(f"agent:    registered {first.did} (created={first.created})")
                print(f"          SPIFFE ID {first.spiffe_id}")
                print(f"          X.509-SVID serial {first.serial_number:x}, "
                      f"valid until {first.not_after:%H:%M:%S}Z")
                print(f"          wrote {', '.join(sorted(p.name for p in agent_dir.iterdir()))}")

            # A restart: nothing but the directory survives.
            with AgentClient(None, agent_dir) as agent:
                again = agent.register()
                print(f"agent:    re-registered with its existing key: same DID "
                      f"{again.did == first.did}, created={again.created}")

                renewed = agent.renew()
                print(f"agent:    renewed: serial {renewed.serial_number:x}, "
                      f"valid until {renewed.not_after:%H:%M:%S}Z")

                jwt = agent.fetch_jwt_svid_details("examples/billing-api", ttl=60)
                bundle = Bundle.parse(agent.trust_bundle().spiffe_bundle, first.trust_domain)
                checked = parse_and_validate_jwt_svid(jwt.token, bundle, "examples/billing-api")
                print(f"agent:    JWT-SVID for {checked.audience[0]!r}: sub {checked.spiffe_id}, "
                      f"kid {checked.kid}, expires {checked.expiry:%H:%M:%S}Z; "
                      "signature verified against the trust bundle")

        status = operator.get_agent(first.did).status.value
        print(f"operator: agent {first.did} is {status}")


if __name__ == "__main__":
    raise SystemExit(main())
