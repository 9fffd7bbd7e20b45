#!/usr/bin/env bash
# Monthly credential rotation, the way cron runs it.
#
# The crontab line (03:17 on the 1st of every month). Without a terminal the
# command prints plain lines, and its exit status says whether every agent
# asked has rotated (0) or not (1: some failed or are still pending):
#
#   17 3 1 * *  mesh rotate-credentials --all --older-than 30d --wait 15m --data-dir /var/lib/mesh --registry 10.0.0.5:8443 >>/var/log/mesh-rotation.log 2>&1 || logger -t mesh "credential rotation incomplete"
#
# This script plays the whole month on this machine: a registry, three running
# agents (examples/rotating_agent.py: they rotate when asked, through their own
# event stream), one agent that is not running, then the cron command. What it
# prints (DIDs and key ids differ every run):
#
#   $ mesh rotate-credentials --all --older-than 1s ...
#   asked 4 agent(s) to rotate (campaign 5-8)
#   rotated 0/4 failed 0 pending 4
#   rotated 3/4 failed 0 pending 1
#              campaign 5-8
#   ┏━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━┳━━━━┓
#   ┃ ROTATED ┃ PENDING ┃ FAILED ┃ OF ┃
#   ┡━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━╇━━━━┩
#   │ 3       │ 1       │ 0      │ 4  │
#   └─────────┴─────────┴────────┴────┘
#   ┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━┓
#   ┃ DID                                  ┃ STATE   ┃ KEY                                         ┃ DETAIL ┃
#   ┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━┩
#   │ did:mesh:wrmpPXJaAFq9yDLG53UYmxDAvVd │ pending │ n8m22DXJzqdmElVO25nYJBm_GNbClWql_6pzFK_TGsc │ -      │
#   └──────────────────────────────────────┴─────────┴─────────────────────────────────────────────┴────────┘
#   not all rotated: 1 pending, 0 failed (of 4)
#   exit status: 1
#
# The stopped agent rotates its own directory (mesh rotate-credentials DIR),
# and the next run finds nobody due:
#
#   rotated did:mesh:wrmpPXJaAFq9yDLG53UYmxDAvVd: n8m22DXJ... -> VL_XyO6Z... at 2026-11-24 02:09:03Z
#   no agent is due for rotation
#   exit status: 0
#
# Needs: the trustmesh package installed (`mesh` on PATH) and a free port.
set -euo pipefail

MESH=${MESH:-mesh}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
PORT=${PORT:-18443}
REGISTRY="127.0.0.1:$PORT"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

OP=(--registry "$REGISTRY" --data-dir "$WORK/registry")

echo "# a registry in $WORK/registry"
MESH_LOG_LEVEL=warning "$MESH" serve --data-dir "$WORK/registry" --listen "$REGISTRY" \
  --trust-domain example.mesh >"$WORK/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [ -f "$WORK/registry/operator/operator.pem" ] && break
  sleep 0.1
done
sleep 0.5

echo "# four agents register; three of them run"
for i in 1 2 3 4; do
  token=$("$MESH" token create --name "demo/agent-$i" "${OP[@]}" 2>/dev/null)
  "$MESH" register --registry "$REGISTRY" --bundle "$WORK/registry/bundle.pem" \
    --token "$token" --out "$WORK/agent-$i" >/dev/null 2>&1
done
"$PYTHON" "$HERE/rotating_agent.py" "$WORK/agent-1" "$WORK/agent-2" "$WORK/agent-3" \
  >"$WORK/agents.log" 2>&1 &
pids+=($!)
sleep 3  # the agents connect to their event streams

echo "# the monthly cron job (keys older than 1s here; 30d in real life)"
echo "\$ mesh rotate-credentials --all --older-than 1s ..."
status=0
"$MESH" rotate-credentials --all --older-than 1s --wait 10s "${OP[@]}" || status=$?
echo "exit status: $status"

echo "# what the running agents printed"
cat "$WORK/agents.log"

echo "# the stopped agent rotates its own directory; the next run finds nobody due"
"$MESH" rotate-credentials "$WORK/agent-4"
status=0
"$MESH" rotate-credentials --all --older-than 1m "${OP[@]}" || status=$?
echo "exit status: $status"

echo "# key age and history of one agent"
did=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["did"])' \
  "$WORK/agent-1/agent.json")
"$MESH" agent show "$did" "${OP[@]}"
