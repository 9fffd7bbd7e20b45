"""The registry client: agents register at boot and renew SVIDs; operators manage the registry.

* :class:`AgentClient` (and :class:`AsyncAgentClient`): register with a join
  token or the existing key, keep the X.509-SVID current in the agent
  directory, fetch JWT-SVIDs.
* :class:`OperatorClient`: join tokens, agents, bundle, DID resolution, with
  the operator credential from the registry's data dir.
* :class:`CredentialRotator`: rotate the identity key on schedule and when
  an operator asks; pick up a new trust bundle without a restart.
* :class:`RegistryChannel`: TLS/mTLS channels with deadlines, failover and
  retries on UNAVAILABLE only.
"""

from mesh.client.agent import AgentClient
from mesh.client.aio import AsyncAgentClient
from mesh.client.channel import (
    DEFAULT_REGISTRY,
    AsyncRegistryChannel,
    RegistryChannel,
    RetryPolicy,
    TLSConfig,
    parse_addresses,
)
from mesh.client.errors import (
    AlreadyExists,
    CredentialError,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RegistryError,
    RegistryTimeout,
    RegistryUnavailable,
    ResponseError,
    Unauthenticated,
)
from mesh.client.operator import OperatorClient, operator_tls
from mesh.client.rotation import CredentialRotator
from mesh.client.rotation_types import (
    CAStatus,
    KeyRotation,
    RotationCampaign,
    RotationState,
    RotationStatus,
)
from mesh.client.types import (
    JWTSVID,
    Agent,
    AgentStatus,
    CreatedJoinToken,
    JoinToken,
    KeyInfo,
    Registration,
    Resolution,
    TrustBundle,
)

__all__ = [
    "DEFAULT_REGISTRY",
    "JWTSVID",
    "Agent",
    "AgentClient",
    "AgentStatus",
    "AlreadyExists",
    "AsyncAgentClient",
    "AsyncRegistryChannel",
    "CAStatus",
    "CreatedJoinToken",
    "CredentialError",
    "CredentialRotator",
    "FailedPrecondition",
    "InvalidRequest",
    "JoinToken",
    "KeyInfo",
    "KeyRotation",
    "NotFound",
    "OperatorClient",
    "PermissionDenied",
    "Registration",
    "RegistryChannel",
    "RegistryError",
    "RegistryTimeout",
    "RegistryUnavailable",
    "Resolution",
    "ResponseError",
    "RetryPolicy",
    "RotationCampaign",
    "RotationState",
    "RotationStatus",
    "TLSConfig",
    "TrustBundle",
    "Unauthenticated",
    "operator_tls",
    "parse_addresses",
]
