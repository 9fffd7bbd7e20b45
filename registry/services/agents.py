"""AgentService: resolve, read, list, revoke and terminate agents."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mesh.v1 import agents_pb2, agents_pb2_grpc, types_pb2
from registry.interceptor import current_principal
from registry.scoring.state import current_state
from registry.services import _validate as check
from registry.services._runtime import PB_TO_STATUS, Runtime, agent_pb, key_pb, timestamp
from registry.status import invalid, not_found
from registry.store.errors import InvalidArgument


class AgentService(agents_pb2_grpc.AgentServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def ResolveDID(
        self, request: agents_pb2.ResolveDIDRequest, context: Any
    ) -> agents_pb2.ResolveDIDResponse:
        did = str(check.did("did", request.did))
        return await self._rt.run(self._resolve, did)

    def _resolve(self, did: str) -> agents_pb2.ResolveDIDResponse:
        with self._rt.store.read() as view:
            agent = view.agents.find(did)
            if agent is None:
                raise not_found(f"did: {did} is not registered here")
            keys = view.keys.list_for_agent(did)
            history = view.keys.history(did)
        return agents_pb2.ResolveDIDResponse(
            agent=agent_pb(agent, keys[-1] if keys else None),
            keys=[key_pb(k) for k in keys],
            key_history=history or "",
            resolved_at=timestamp(datetime.now(UTC)),
        )

    async def GetAgent(self, request: agents_pb2.GetAgentRequest, context: Any) -> types_pb2.Agent:
        did = str(check.did("did", request.did))
        return await self._rt.run(self._get, did)

    def _get(self, did: str) -> types_pb2.Agent:
        with self._rt.store.read() as view:
            agent = view.agents.find(did)
            if agent is None:
                raise not_found(f"did: {did} is not registered here")
            return agent_pb(agent, view.keys.current(did))

    async def ListAgents(
        self, request: agents_pb2.ListAgentsRequest, context: Any
    ) -> agents_pb2.ListAgentsResponse:
        size = check.page_size("page_size", request.page_size)
        token = check.page_token("page_token", request.page_token)
        status: str | None = None
        if request.status != types_pb2.AGENT_STATUS_UNSPECIFIED:
            if request.status not in PB_TO_STATUS:
                raise invalid(
                    "status",
                    f"unknown AgentStatus {request.status}; use ACTIVE, REVOKED, TERMINATED "
                    "or UNSPECIFIED for all",
                )
            status = PB_TO_STATUS[request.status]
        return await self._rt.run(self._list, status, size, token)

    def _list(
        self, status: str | None, size: int, token: str | None
    ) -> agents_pb2.ListAgentsResponse:
        with self._rt.store.read() as view:
            try:
                page = view.agents.list(status=status, page_size=size, page_token=token)
            except InvalidArgument:
                # The store refuses a page token it did not make; name the field.
                raise invalid(
                    "page_token", "is not a page token from a previous ListAgents response"
                ) from None
            agents = [agent_pb(a, view.keys.current(a.did)) for a in page.items]
        return agents_pb2.ListAgentsResponse(
            agents=agents, next_page_token=page.next_page_token or ""
        )

    async def RevokeAgent(
        self, request: agents_pb2.RevokeAgentRequest, context: Any
    ) -> types_pb2.Agent:
        did = str(check.did("did", request.did))
        reason = check.printable("reason", request.reason, check.MAX_REASON_BYTES)
        actor = current_principal().actor
        return await self._rt.run(self._transition, did, reason, actor, "revoke")

    async def TerminateAgent(
        self, request: agents_pb2.TerminateAgentRequest, context: Any
    ) -> types_pb2.Agent:
        did = str(check.did("did", request.did))
        reason = check.printable("reason", request.reason, check.MAX_REASON_BYTES)
        actor = current_principal().actor
        return await self._rt.run(self._transition, did, reason, actor, "terminate")

    def _transition(self, did: str, reason: str, actor: str, action: str) -> types_pb2.Agent:
        with self._rt.store.transaction() as tx:
            if tx.agents.find(did) is None:
                raise not_found(f"did: {did} is not registered here")
            if action == "revoke":
                agent = tx.agents.revoke(did, reason)
                event = "agent.revoked"
            else:
                agent = tx.agents.terminate(did, reason)
                event = "agent.terminated"
            tx.events.append(
                event,
                did,
                {"did": did, "reason": reason, "by": actor, "state": dict(current_state(tx, did))},
            )
            tx.audit.append(actor, f"agent.{action}", did, {"reason": reason})
            current = tx.keys.current(did)
        return agent_pb(agent, current)
