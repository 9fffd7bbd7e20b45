"""SVIDService: X.509-SVID renewal and JWT-SVIDs for the calling agent; the trust bundle."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from mesh.v1 import svid_pb2, svid_pb2_grpc, types_pb2
from registry.interceptor import current_principal
from registry.rotation.policy import RotationPolicy, svid_refusal
from registry.services import _validate as check
from registry.services._runtime import Runtime, timestamp
from registry.status import precondition


class SVIDService(svid_pb2_grpc.SVIDServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._svid_ttl = timedelta(seconds=runtime.config.x509_svid_ttl_seconds)
        self._jwt_default = runtime.config.jwt_svid_default_ttl_seconds
        self._jwt_max = runtime.config.jwt_svid_max_ttl_seconds
        # Key age past the hard limit, or a compromised key: no SVID until the agent rotates.
        self._rotation = RotationPolicy.from_config(runtime.config)

    async def RenewX509SVID(
        self, request: svid_pb2.RenewX509SVIDRequest, context: Any
    ) -> svid_pb2.RenewX509SVIDResponse:
        csr = check.csr("csr", request.csr)
        caller = current_principal()
        return await self._rt.run(self._renew, caller.did, caller.spiffe_id, csr)

    def _renew(self, did: str, spiffe_id: str, csr: bytes) -> svid_pb2.RenewX509SVIDResponse:
        chain = self._rt.ca.issue_x509_svid(csr, spiffe_id, ttl=self._svid_ttl)
        leaf = chain[0]
        with self._rt.store.transaction() as tx:
            agent = tx.agents.get(did)
            if agent.status != "active":
                raise precondition(f"agent {did} is {agent.status}; it gets no new SVIDs")
            refusal = svid_refusal(tx.keys.current(did), tx.now, self._rotation)
            if refusal is not None:
                raise precondition(refusal)
            tx.svids.record(
                serial=format(leaf.serial_number, "x"),
                did=did,
                kind="x509",
                not_before=leaf.not_valid_before_utc,
                not_after=leaf.not_valid_after_utc,
            )
        self._rt.metrics.svids_issued.labels("x509").inc()
        return svid_pb2.RenewX509SVIDResponse(
            svid=self._rt.svid_pb(chain, spiffe_id), bundle=self._rt.bundle_pb()
        )

    async def FetchJWTSVID(
        self, request: svid_pb2.FetchJWTSVIDRequest, context: Any
    ) -> svid_pb2.FetchJWTSVIDResponse:
        audience = check.audience("audience", list(request.audience))
        seconds = request.ttl_seconds or self._jwt_default
        seconds = min(seconds, self._jwt_max)
        caller = current_principal()
        token, expires = await self._rt.run(self._sign_jwt, caller.spiffe_id, audience, seconds)
        return svid_pb2.FetchJWTSVIDResponse(
            token=token, spiffe_id=caller.spiffe_id, expires_at=timestamp(expires)
        )

    def _sign_jwt(self, spiffe_id: str, audience: list[str], seconds: int) -> tuple[str, datetime]:
        token = self._rt.ca.sign_jwt_svid(spiffe_id, audience, timedelta(seconds=seconds))
        self._rt.metrics.svids_issued.labels("jwt").inc()
        return token, _jwt_expiry(token)

    async def GetTrustBundle(
        self, request: svid_pb2.GetTrustBundleRequest, context: Any
    ) -> types_pb2.TrustBundle:
        return self._rt.bundle_pb()


def _jwt_expiry(token: str) -> datetime:
    """``exp`` of a token we just signed (read back, so the response matches the token)."""
    import base64
    import json

    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return datetime.fromtimestamp(math.floor(claims["exp"]), UTC)
