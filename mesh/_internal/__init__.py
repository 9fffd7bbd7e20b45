"""Internals of the agent-side library: no stability promise."""
