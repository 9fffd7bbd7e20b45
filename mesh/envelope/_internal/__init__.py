"""Internals of the signed-message package: no stability promise."""
