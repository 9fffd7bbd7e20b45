"""A long-running agent that keeps its credentials young by itself.

    python examples/rotating_agent.py AGENT_DIR [AGENT_DIR ...]

For each registered agent directory (``mesh register --out DIR``): renews the
X.509-SVID at half life, rotates the identity key every 30 days (with jitter)
and whenever an operator asks (``mesh rotate-credentials``), and picks up new
trust bundles without a restart. Prints one line per rotation; stops on
SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from mesh.client import AgentClient, CredentialRotator, KeyRotation


def main(directories: list[str]) -> int:
    if not directories:
        print(__doc__, file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def rotated(result: KeyRotation) -> None:
        print(f"{result.did}: rotated to key {result.kid} (from {result.at:%H:%M:%S}Z)",
              flush=True)

    running = []
    for directory in directories:
        client = AgentClient(None, Path(directory))
        client.register()  # a restart: re-register with the key already in the directory
        client.start_renewal()
        running.append((client, CredentialRotator(client, on_rotated=rotated).start()))
        print(f"{client.info.did}: running", flush=True)
    stop.wait()
    for client, rotator in running:
        rotator.stop()
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
