"""The trustmesh registry: gRPC services, CA, storage, events, scheduler."""
