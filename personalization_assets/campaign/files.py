"""Reading the files a user edits: YAML that refuses duplicate keys, errors that name file and key.

Every configuration file (campaign.yaml, segments.yaml, a prompt's front matter) is read with
`read_yaml` and validated by a pydantic model (`campaign/config.py`, `audience/segmentation.py`,
`messages/prompts.py`) through `validate`, so every mistake becomes one `ConfigError` that names
the file, the key path (`generation.body_min_chars`, `segments[2].rule`) and the rule broken.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from personalization_assets.campaign.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


class StrictModel(BaseModel):
    """A configuration section: unknown keys are errors, values are immutable once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps
    the last one silently: `arms` listing `urgent` twice would become another experiment)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"duplicate key {key!r} (first given on line {seen[key] + 1}, again on line {key_node.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def parse_yaml(text: str, path: Path | str, *, what: str = "file") -> Any:
    """YAML text as Python values; a syntax error or a duplicate key is a ConfigError."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:  # a duplicate key: the message names both lines
        raise ConfigError(path, f"{'' if what == 'file' else what + ': '}{exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        where = f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}" if exc.problem_mark else ""
        raise ConfigError(path, f"{what} is not valid YAML: {' '.join(filter(None, [exc.context, exc.problem]))}{where}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"{what} is not valid YAML: {' '.join(str(exc).split())}") from None


def read_yaml(path: Path | str, *, missing: str) -> Any:
    """A YAML file's content; `missing` says what to do when the file is not there."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, missing)
    return parse_yaml(path.read_text(encoding="utf-8"), path)


def _key_path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(error: Mapping[str, Any]) -> str:
    # Pydantic's own location includes the name of a custom validator's model; keep the user's keys.
    location = tuple(part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-")))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{_key_path(location)}: unknown key (misspelt, or not a setting of this file)"
    if error["type"] == "missing":
        return f"{_key_path(location)}: required key is missing"
    given = error.get("input")
    shown = "" if isinstance(given, (Mapping, list)) or error["type"] == "value_error" else f" (got {given!r})"
    return f"{_key_path(location)}: {message}{shown}"


def validate(model: type[Model], raw: Any, path: Path | str, *, context: Mapping[str, Any] | None = None, prefix: str = "") -> Model:
    """`raw` validated as `model`; every problem listed, each with its key path, in one ConfigError."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(path, f"{prefix or 'the file'} must be a YAML mapping of keys to values, got {type(raw).__name__}")
    try:
        return model.model_validate(raw, context=dict(context or {}))
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors(include_url=False)]
        if prefix:
            problems = [f"{prefix}.{problem}" if not problem.startswith("(top level)") else f"{prefix}: {problem[12:]}"
                        for problem in problems]
        raise ConfigError(path, "; ".join(dict.fromkeys(problems))) from None
