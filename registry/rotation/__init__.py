"""Credential rotation in the registry: agents' identity keys and the CA.

* :mod:`registry.rotation.policy` — key age limits (from the trust policy's
  credential-age factor): past the hard limit, or compromised, no new SVID.
* :mod:`registry.rotation.keys` — RotateKey, MarkKeyCompromised, rotation
  requests (one agent or all due) and campaign progress, each one store
  transaction with its events and audit entries.
* :mod:`registry.rotation.ca` — applies :mod:`registry.ca.schedule` to the CA
  (scheduled or operator-driven) and announces every bundle change.
"""
