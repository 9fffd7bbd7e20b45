"""Internals of the certificate authority; not a public API."""
