"""The registry's event log, seen from the outside: types, agent state payloads, fan-out, Watch."""
