"""YAML files of the testbed: PyYAML's safe loader, but a key written twice is an error.

YAML itself says mapping keys are unique, yet PyYAML keeps the last of two equal keys
silently; a lab with two nodes named ``sg-a`` would start one of them. Every lab and
topology file goes through :func:`load_yaml`, which refuses such a file and names both
lines.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping with the same key twice; ``problem_mark`` is the second occurrence."""


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that raises DuplicateKeyError instead of keeping the last key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """The mapping, as SafeLoader builds it. Raises DuplicateKeyError naming the key and
        both lines (file:line) when a key appears twice in one mapping."""
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports unhashable keys itself
            if key in seen:
                raise DuplicateKeyError(
                    "while constructing a mapping", node.start_mark,
                    f"key {key!r} appears twice (first on line {seen[key].line + 1}); "
                    "YAML would keep only the last one: rename or merge the two entries",
                    key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


class YamlError(ValueError):
    """A file that is not valid YAML (or repeats a key): ``where`` is ``line L, column C``."""

    def __init__(self, source: str, where: str, problem: str):
        self.source, self.where, self.problem = source, where, problem
        super().__init__(f"{source}: {where}: {problem}" if where else f"{source}: {problem}")


def parse_yaml(text: str, source: str = "<yaml>") -> Any:
    """Parse YAML text with unique keys. Raises YamlError naming the line and column."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise YamlError(source, where, str(getattr(e, "problem", None) or e)) from None


def load_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file with unique keys; YamlError names the line and column."""
    p = Path(path)
    return parse_yaml(p.read_text(encoding="utf-8"), str(p))
