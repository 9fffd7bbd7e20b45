"""KeyService and CAService: credential rotation (see docs/rotation.md, docs/authorization.md).

KeyService.RotateKey is PUBLIC: over mTLS the calling agent may rotate only
itself; without a client certificate the history's own signatures (by the
current and the next key) authenticate it, as a key authenticates a
re-registration — that is how an agent whose SVID lapsed past the key age
limit gets back. Every other RPC here is for operators.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped]

from mesh.v1 import rotation_pb2, rotation_pb2_grpc, types_pb2
from registry.auth import Authenticator, PrincipalKind
from registry.interceptor import current_principal
from registry.rotation import keys as rotation
from registry.rotation.ca import CARotator, CAStatusView
from registry.services import _validate as check
from registry.services._runtime import Runtime, key_pb, timestamp
from registry.status import denied, invalid

MAX_OLDER_THAN = 100 * 365 * 86400

_STATE = {
    "pending": rotation_pb2.ROTATION_STATE_PENDING,
    "rotated": rotation_pb2.ROTATION_STATE_ROTATED,
    "failed": rotation_pb2.ROTATION_STATE_FAILED,
}


class KeyService(rotation_pb2_grpc.KeyServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        # RotateKey is PUBLIC (the interceptor does not authenticate it): a caller that
        # presents a certificate is authenticated here, and held to rotating itself.
        self._auth = Authenticator(runtime.trust_domain, runtime.store, runtime.run)

    async def RotateKey(
        self, request: rotation_pb2.RotateKeyRequest, context: Any
    ) -> rotation_pb2.RotateKeyResponse:
        text = request.key_history
        principal = await self._auth.authenticate(context)
        caller_did = caller_serial = None
        if principal.kind is PrincipalKind.AGENT:
            caller_did, caller_serial = principal.did, principal.serial
        elif principal.kind is not PrincipalKind.ANONYMOUS:
            raise denied("only the agent itself rotates its key (operators: RequestRotation)")
        history = await self._rt.run(rotation.parse_history, text)
        actor = principal.actor if caller_did else f"key-history:{history.did}"
        result = await self._rt.run(
            rotation.rotate_key,
            self._rt.store,
            history,
            text,
            caller_did=caller_did,
            caller_serial=caller_serial,
            actor=actor,
        )
        return rotation_pb2.RotateKeyResponse(
            current_key=key_pb(result.current),
            rotated=result.rotated,
            key_history=result.history_json,
        )

    async def MarkKeyCompromised(
        self, request: rotation_pb2.MarkKeyCompromisedRequest, context: Any
    ) -> types_pb2.KeyInfo:
        did = str(check.did("did", request.did))
        kid = check.printable("kid", request.kid, 128)
        reason = check.printable("reason", request.reason, check.MAX_REASON_BYTES)
        at = None
        if request.HasField("compromised_at"):
            at = _time("compromised_at", request.compromised_at)
        actor = current_principal().actor
        record = await self._rt.run(
            rotation.mark_compromised, self._rt.store, did, kid or None, at,
            reason=reason, actor=actor,
        )
        return key_pb(record)

    async def RequestRotation(
        self, request: rotation_pb2.RequestRotationRequest, context: Any
    ) -> rotation_pb2.RotationCampaign:
        did = str(check.did("did", request.did))
        reason = check.printable("reason", request.reason, check.MAX_REASON_BYTES)
        campaign = await self._rt.run(
            rotation.request_rotation, self._rt.store, did=did, older_than=None,
            reason=reason, actor=current_principal().actor,
        )
        return _campaign_pb(campaign)

    async def RequestRotationAll(
        self, request: rotation_pb2.RequestRotationAllRequest, context: Any
    ) -> rotation_pb2.RotationCampaign:
        seconds = int(request.older_than_seconds)
        if seconds > MAX_OLDER_THAN:
            raise invalid("older_than_seconds", f"is over {MAX_OLDER_THAN} (100 years)")
        reason = check.printable("reason", request.reason, check.MAX_REASON_BYTES)
        campaign = await self._rt.run(
            rotation.request_rotation, self._rt.store, did=None,
            older_than=timedelta(seconds=seconds) if seconds else None,
            reason=reason, actor=current_principal().actor,
        )
        return _campaign_pb(campaign)

    async def GetRotationStatus(
        self, request: rotation_pb2.GetRotationStatusRequest, context: Any
    ) -> rotation_pb2.RotationStatus:
        campaign_id = request.campaign_id
        rotation.parse_campaign_id(campaign_id)
        status = await self._rt.run(rotation.campaign_status, self._rt.store, campaign_id)
        response = rotation_pb2.RotationStatus(
            campaign_id=status.id,
            requested=len(status.agents),
            rotated=status.count("rotated"),
            pending=status.count("pending"),
            failed=status.count("failed"),
        )
        if request.include_agents:
            response.agents.extend(
                rotation_pb2.AgentRotation(
                    did=a.did,
                    state=_STATE[a.state],
                    requested_kid=a.requested_kid,
                    current_kid=a.current_kid,
                    detail=a.detail,
                )
                for a in status.agents
            )
        return response


class CAService(rotation_pb2_grpc.CAServiceServicer):
    def __init__(self, runtime: Runtime, rotator: CARotator) -> None:
        self._rt = runtime
        self._rotator = rotator

    async def RotateCA(
        self, request: rotation_pb2.RotateCARequest, context: Any
    ) -> rotation_pb2.CAStatus:
        actor = current_principal().actor
        view = await self._rt.run(
            lambda: self._rotator.rotate(
                activate=request.activate, force=request.force, actor=actor
            )
        )
        return _ca_status_pb(view)

    async def GetCAStatus(
        self, request: rotation_pb2.GetCAStatusRequest, context: Any
    ) -> rotation_pb2.CAStatus:
        return _ca_status_pb(await self._rt.run(self._rotator.status))


def _time(field: str, ts: Timestamp) -> Any:
    from datetime import UTC, datetime

    if not 0 <= ts.seconds <= 253402300799 or not 0 <= ts.nanos < 1_000_000_000:
        raise invalid(field, "is not a valid timestamp")
    return datetime.fromtimestamp(ts.seconds, UTC) + timedelta(microseconds=ts.nanos // 1000)


def _campaign_pb(campaign: rotation.Campaign) -> rotation_pb2.RotationCampaign:
    return rotation_pb2.RotationCampaign(
        id=campaign.id,
        requested=campaign.requested,
        requested_at=timestamp(campaign.requested_at),
    )


def _ca_status_pb(view: CAStatusView) -> rotation_pb2.CAStatus:
    status = rotation_pb2.CAStatus(
        authorities=[
            rotation_pb2.Authority(
                kind=a.kind,
                id=a.id,
                state=a.state,
                not_before=timestamp(a.not_before),
                not_after=timestamp(a.not_after),
            )
            for a in view.authorities
        ],
        sequence=view.sequence,
        changes=list(view.changes),
    )
    if view.next_change is not None:
        status.next_change_at.CopyFrom(timestamp(view.next_change[0]))
        status.next_change = view.next_change[1]
    return status


__all__ = ["CAService", "KeyService"]
