"""The segment catalog and rule-based segmentation, vectorized over the customer table.

Rules are structured data (column -> {operator: value}), not code: they can be validated against
the customers contract before anything runs, and evaluated as numpy masks on a million rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from personalization_assets.campaign.config import NonBlank
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.files import StrictModel, read_yaml, validate

CATCH_ALL = "all"
SEGMENT_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "between")


@dataclass(frozen=True)
class Condition:
    column: str
    operator: str
    value: Any

    def mask(self, customers: pd.DataFrame) -> np.ndarray:
        values = customers[self.column]
        match self.operator:
            case "==":
                result = values == self.value
            case "!=":
                result = values != self.value
            case "<":
                result = values < self.value
            case "<=":
                result = values <= self.value
            case ">":
                result = values > self.value
            case ">=":
                result = values >= self.value
            case "in":
                result = values.isin(self.value)
            case "not_in":
                result = ~values.isin(self.value)
            case "between":
                result = values.between(self.value[0], self.value[1], inclusive="both")
            case _:  # pragma: no cover - rejected when the catalog is parsed
                raise ValueError(self.operator)
        return result.to_numpy(dtype=bool, na_value=False)

    def describe(self) -> str:
        return f"{self.column} {self.operator} {self.value!r}"


@dataclass(frozen=True)
class Segment:
    segment_id: str
    name: str
    description: str
    conditions: tuple[Condition, ...]
    audiences: tuple[str, ...]

    @property
    def is_catch_all(self) -> bool:
        return not self.conditions

    def rule_text(self) -> str:
        return " and ".join(c.describe() for c in self.conditions) or "everyone not matched above"


@dataclass(frozen=True)
class SegmentCatalog:
    path: Path
    segments: tuple[Segment, ...]

    @property
    def ids(self) -> list[str]:
        return [s.segment_id for s in self.segments]

    def get(self, segment_id: str) -> Segment:
        for segment in self.segments:
            if segment.segment_id == segment_id:
                return segment
        raise KeyError(f"segment '{segment_id}' is not in the catalog {self.path} (known: {self.ids})")


def _parse_condition(column: str, spec: Any, where: str, path: Path) -> list[Condition]:
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError(path, f"{where}: condition on '{column}' must be a mapping like {{'>=': 10}}")
    conditions = []
    for operator, value in spec.items():
        if operator not in OPERATORS:
            raise ConfigError(path, f"{where}: unknown operator '{operator}' on '{column}'; use one of {OPERATORS}")
        if operator in ("in", "not_in") and not isinstance(value, list):
            raise ConfigError(path, f"{where}: '{operator}' on '{column}' needs a list")
        if operator == "between" and not (isinstance(value, list) and len(value) == 2):
            raise ConfigError(path, f"{where}: 'between' on '{column}' needs [low, high]")
        conditions.append(Condition(str(column), str(operator), value))
    return conditions


class SegmentEntry(StrictModel):
    """One entry of segments.yaml, as typed: no other keys, text where text is due, a list of audiences."""

    id: str
    name: NonBlank
    description: NonBlank
    audiences: tuple[NonBlank, ...] = Field(min_length=1)
    rule: Literal["all"] | dict[str, dict[str, Any]]


class CatalogFile(StrictModel):
    segments: list[dict[str, Any]] = Field(min_length=1)


def parse_catalog(raw: Any, path: Path) -> SegmentCatalog:
    """The catalog, checked entry by entry: the rules a partition key and segmentation need first,
    with messages in the catalog's own words, then every entry's types and keys (`SegmentEntry`)."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("segments"), list) or not raw["segments"]:
        raise ConfigError(path, "the catalog must have a non-empty 'segments' list")
    validate(CatalogFile, raw, path)
    segments: list[Segment] = []
    for index, entry in enumerate(raw["segments"]):
        where = f"segments[{index}]"
        segment_id = str(entry.get("id", ""))
        if not SEGMENT_ID_PATTERN.match(segment_id):
            raise ConfigError(path, f"{where}: id {segment_id!r} must match {SEGMENT_ID_PATTERN.pattern} (it is a partition key)")
        where = f"segment '{segment_id}'"
        for key in ("name", "description", "audiences"):
            value = entry.get(key)
            if not value or (isinstance(value, str) and not value.strip()):
                raise ConfigError(path, f"{where}: missing '{key}'")
        rule = entry.get("rule")
        if rule == CATCH_ALL:
            conditions: list[Condition] = []
        elif isinstance(rule, Mapping) and rule:
            conditions = [c for column, spec in rule.items() for c in _parse_condition(column, spec, where, path)]
        else:
            raise ConfigError(path, f"{where}: 'rule' must be a mapping of column conditions or '{CATCH_ALL}'")
        typed = validate(SegmentEntry, entry, path, prefix=f"segments[{index}]")
        segments.append(
            Segment(
                segment_id=segment_id,
                name=typed.name,
                description=" ".join(typed.description.split()),
                conditions=tuple(conditions),
                audiences=typed.audiences,
            )
        )
    ids = [s.segment_id for s in segments]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(path, f"segment ids must be unique; repeated: {duplicates}")
    if not segments[-1].is_catch_all:
        raise ConfigError(path, f"the last segment must be a catch-all (rule: {CATCH_ALL}) so every customer has a segment")
    early_catch_all = [s.segment_id for s in segments[:-1] if s.is_catch_all]
    if early_catch_all:
        raise ConfigError(path, f"only the last segment may be a catch-all; segments after {early_catch_all[0]} could never match")
    return SegmentCatalog(path=path, segments=tuple(segments))


def load_catalog(path: Path | str) -> SegmentCatalog:
    path = Path(path)
    return parse_catalog(read_yaml(path, missing="segment catalog not found"), path)


def check_rules_against_customers(catalog: SegmentCatalog, customers: pd.DataFrame) -> None:
    """Fail before segmenting when a rule names a column the customer table does not have, or
    compares a column with a value of another kind (text with a number: an error, or a rule that
    silently matches nobody)."""
    for segment in catalog.segments:
        for condition in segment.conditions:
            where = f"segment '{segment.segment_id}' rule on column '{condition.column}'"
            if condition.column not in customers.columns:
                raise ConfigError(catalog.path, f"segment '{segment.segment_id}' rule uses column '{condition.column}', "
                                  "which the customers table does not have")
            numeric = pd.api.types.is_numeric_dtype(customers[condition.column]) and not pd.api.types.is_bool_dtype(
                customers[condition.column])
            values = condition.value if condition.operator in ("in", "not_in", "between") else [condition.value]
            wrong = [v for v in values if (isinstance(v, bool) or not isinstance(v, (int, float))) == numeric]
            if wrong:
                kind, expected = ("numbers", "a number") if numeric else ("text", "text (quote it)")
                raise ConfigError(catalog.path, f"{where}: the column holds {kind}, so '{condition.operator}' needs {expected}; "
                                  f"got {', '.join(repr(v) for v in wrong)}")


def assign_segments(customers: pd.DataFrame, catalog: SegmentCatalog) -> pd.Series:
    """Segment id per customer: the first rule in catalog order that matches wins."""
    check_rules_against_customers(catalog, customers)
    n = len(customers)
    matches = []
    for segment in catalog.segments:
        mask = np.ones(n, dtype=bool)
        for condition in segment.conditions:
            mask &= condition.mask(customers)
        matches.append(mask)
    # argmax over the stacked masks returns the first True; the catch-all guarantees one exists.
    first_match = np.argmax(np.vstack(matches), axis=0)
    labels = np.asarray(catalog.ids, dtype=object)[first_match]
    return pd.Series(pd.Categorical(labels, categories=catalog.ids), index=customers.index, name="segment")


def segment_sizes(segments: pd.Series, catalog: SegmentCatalog) -> dict[str, int]:
    counts = segments.value_counts()
    return {segment_id: int(counts.get(segment_id, 0)) for segment_id in catalog.ids}
