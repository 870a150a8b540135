"""Config files of the agents: JSON or YAML into a pydantic model, faults named by field.

Every agent is started as ``python3 -m testbed.<area> --config FILE`` and must refuse a
bad file with a message that names the field (``peers.sg-a.public: ...``) instead of
crashing later; this module is that one behaviour, shared.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file or field."""


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML file whose top level is a mapping (YAML when the name says so
    or when the text is not JSON; YAML is a superset of JSON)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: neither JSON nor YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return data


def field_errors(exc: ValidationError) -> list[str]:
    """One ``path: message`` per fault, paths written as dotted fields."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        out.append(f"{loc}: {str(err['msg']).removeprefix('Value error, ')}")
    return out


def validate(model: type[M], data: Any, what: str = "config") -> M:
    """``model.model_validate(data)``, with every fault in one ConfigError naming its field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what}: " + "; ".join(field_errors(exc))) from None
