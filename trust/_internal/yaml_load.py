"""A YAML reader for policy files: safe types only, duplicate keys rejected with their line."""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeyError(Exception):
    def __init__(self, key: str, line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line}")
        self.key = key
        self.line = line


class UnhashableKeyError(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(f"a mapping key at line {line} is a list or mapping, not a name")
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise UnhashableKeyError(key_node.start_mark.line + 1) from None
        if duplicate:
            raise DuplicateKeyError(str(key)[:60], key_node.start_mark.line + 1)
        seen.add(key)
    return dict(loader.construct_mapping(node, deep=True))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str) -> object:
    """Parse one YAML document with the strict safe loader (raises yaml.YAMLError and the above)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
