"""gRPC servicers of the registry, one module per service."""
