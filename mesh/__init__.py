"""trustmesh agent-side library: identities, keys, signed messages, SVIDs, registry client."""
