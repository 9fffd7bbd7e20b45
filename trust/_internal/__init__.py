"""Internals of ``trust``; not part of the public surface."""
