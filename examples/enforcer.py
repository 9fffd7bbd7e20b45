"""An enforcer gating two tools; a reporter lowers an agent's success rate; after the
pushed demotion the privileged tool call is refused.

Start a registry first (it writes ./.mesh/bundle.pem and the operator credential)::

    mesh serve                       # TLS on 127.0.0.1:8443, mTLS on 127.0.0.1:8444
    python examples/enforcer.py

What it does:

1. operator: an enforcer and a reporter credential (`mesh principal create`, run
   here because the example shares the registry's host and data dir);
2. operator: a join token; an agent registers into a fresh directory;
3. the enforcer subscribes (snapshot, then the live tail) and gates two tools:
   ``read_docs`` needs ring 3 (sandbox), ``deploy`` needs ring 2 (user); a
   ``TrustMonitor`` watches the agent with ``min_trust_score=400``;
4. operator: recompute -> the agent is scored (medium, ring 2): both tools run;
5. reporter: success rate 5 %, error budget gone, a critical violation;
   operator: recompute (what the scheduler does every minute) -> the registry
   demotes the agent to the sandbox in the same transaction as the event;
6. the enforcer receives the event: ``@monitor.on_low_trust`` fires, ``deploy``
   is refused with RingDenied, ``read_docs`` still runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

from mesh.client import AgentClient, OperatorClient
from mesh.client.operator import operator_tls
from mesh.client.trust import TrustClient, ViolationReport, credential_tls
from mesh.enforcer import Enforcer, LowTrust, RingDenied, TrustMonitor
from mesh.errors import MeshError


def principal(args: argparse.Namespace, kind: str, out: Path) -> None:
    """`mesh principal create` (server-side: needs the registry's data dir)."""
    command = [
        sys.executable, "-c", "from mesh.cli import main; main()", "principal", "create",
        "--kind", kind, "--name", f"example-{kind}-{uuid.uuid4().hex[:8]}", "--out", str(out),
        "--data-dir", str(args.data_dir), "--trust-domain", args.trust_domain,
    ]
    if args.database_url:
        command += ["--database-url", args.database_url]
    subprocess.run(command, check=True, capture_output=True, text=True)


def run(args: argparse.Namespace) -> None:
    registry, mtls = args.registry, args.registry_mtls
    with tempfile.TemporaryDirectory(prefix="mesh-enforcer-") as tmp:
        root = Path(tmp)
        principal(args, "enforcer", root / "enforcer")
        principal(args, "reporter", root / "reporter")
        print("operator: created an enforcer and a reporter credential")

        with OperatorClient.from_data_dir(args.data_dir, registry, mtls_registry=mtls) as ops:
            token = ops.create_token("examples/worker", ttl=timedelta(minutes=5))
        with AgentClient(registry, root / "agent", args.data_dir / "bundle.pem",
                         mtls_registry=mtls) as agent:
            did = agent.register(token.token).did
        print(f"agent: registered {did}")

        enforcer = Enforcer.from_dir(root / "enforcer", registry, mtls_registry=mtls)
        monitor = TrustMonitor(enforcer)
        monitor.watch(did, min_trust_score=400)
        demoted = threading.Event()

        @monitor.on_low_trust
        def quarantine(alert: LowTrust) -> None:
            print(f"monitor: {alert.agent_did} fell to {alert.score} "
                  f"(< {alert.min_trust_score}); it now runs in ring {alert.ring}")
            demoted.set()

        @enforcer.gate(3)
        def read_docs(agent_did: str, page: str) -> str:
            return f"read {page}"

        @enforcer.gate(2)
        def deploy(agent_did: str, service: str) -> str:
            return f"deployed {service}"

        operator = TrustClient(registry, tls=operator_tls(args.data_dir), mtls_registry=mtls)
        reporter = TrustClient(registry, tls=credential_tls(root / "reporter", "reporter"),
                               mtls_registry=mtls)
        with monitor, operator, reporter:
            if not enforcer.wait_synced(30):
                raise MeshError(f"the enforcer could not subscribe: {enforcer.last_error}")
            done = operator.recompute([did])
            enforcer.wait_for(done["last_sequence"], 10)
            report = operator.trust_report(did)
            print(f"registry: {did} scored {report.score} ({report.tier}), "
                  f"ring {report.effective_ring}")
            print(f"tool: {read_docs(agent_did=did, page='runbook')}")
            print(f"tool: {deploy(agent_did=did, service='billing')}")

            reporter.report_signals(
                did,
                report_id=uuid.uuid4().hex,
                success_rate=0.05,
                error_budget_remaining=0.0,
                violations=[ViolationReport("critical", "wrote outside its sandbox")],
            )
            print("reporter: success rate 5%, error budget exhausted, one critical violation")
            started = time.perf_counter()
            operator.recompute([did])
            if not demoted.wait(10):
                raise MeshError("the demotion was not pushed within 10 s")
            print(f"enforcer: demotion received {1000 * (time.perf_counter() - started):.0f} ms "
                  "after the recompute was asked for")
            print(f"tool: {read_docs(agent_did=did, page='runbook')}")
            try:
                deploy(agent_did=did, service="billing")
            except RingDenied as denied:
                print(f"tool: deploy refused: {denied}")
            else:
                raise MeshError("deploy ran after the demotion")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", default="127.0.0.1:8443", help="TLS address HOST:PORT")
    parser.add_argument("--registry-mtls", default=None, help="mTLS address [default: port + 1]")
    parser.add_argument("--data-dir", type=Path, default=Path(".mesh"), help="registry data dir")
    parser.add_argument("--trust-domain", default="mesh.local", help="the registry's trust domain")
    parser.add_argument("--database-url", default="", help="the registry's database URL")
    args = parser.parse_args()
    try:
        run(args)
    except (MeshError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(f"error: {exc} {detail}".strip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
