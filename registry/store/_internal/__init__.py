"""Internals of the registry store; not part of its public surface."""
