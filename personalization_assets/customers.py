"""The customers data contract: load a CSV or Parquet file and validate it, vectorized.

Every rule failure raises `DataContractError` naming the file, the column, the rule and example
rows (with their CSV line numbers), so a user can fix the file without reading code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from personalization_assets.errors import DataContractError, offending_rows, read_csv_as_text

TIERS = ("Gold", "Silver", "Bronze")
OPTIONAL_TEXT_COLUMNS = ("first_name", "email")


@dataclass(frozen=True)
class NumericRule:
    column: str
    whole: bool
    low: float
    high: float

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        if np.isinf(self.high):
            return f"must be {kind} >= {self.low:g}"
        return f"must be {kind} in [{self.low:g}, {self.high:g}]"


NUMERIC_RULES = (
    NumericRule("age", whole=True, low=13, high=120),
    NumericRule("purchase_frequency", whole=True, low=0, high=np.inf),
    NumericRule("avg_order_value", whole=False, low=0, high=np.inf),
    NumericRule("last_engagement_days", whole=True, low=0, high=np.inf),
    NumericRule("historical_open_rate", whole=False, low=0, high=1),
    NumericRule("historical_click_rate", whole=False, low=0, high=1),
)
TEXT_COLUMNS = ("customer_id", "location", "tier")
# The reference schema, in its column order.
REQUIRED_COLUMNS = (
    "customer_id",
    "age",
    "location",
    "tier",
    "purchase_frequency",
    "avg_order_value",
    "last_engagement_days",
    "historical_open_rate",
    "historical_click_rate",
)


def read_customers(path: Path | str) -> pd.DataFrame:
    """Read the raw customers file (CSV or Parquet) without interpreting any value yet."""
    path = Path(path)
    if not path.is_file():
        raise DataContractError(path, None, "the customers file must exist")
    if path.suffix.lower() == ".parquet":
        import duckdb  # DuckDB reads Parquet without pulling in pyarrow.

        frame = duckdb.sql(f"SELECT * FROM read_parquet('{path.as_posix()}')").df()
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
        return frame
    return read_csv_as_text(path, row_name="customer")


def validate_customers(raw: pd.DataFrame, source: Path | str) -> pd.DataFrame:
    """Check every contract rule and return the typed frame; extra columns are kept as they are."""
    if raw.empty:
        raise DataContractError(source, None, "the file must contain at least one customer", n_offending=0)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataContractError(
            source, missing[0], f"required column missing (missing: {missing}; found: {list(raw.columns)})"
        )
    frame = raw.copy()
    for column in TEXT_COLUMNS:
        text = frame[column].astype("string").str.strip()
        _reject(frame, text.isna() | (text == ""), source, column, "must not be empty")
        frame[column] = text.astype(object)

    duplicated = frame["customer_id"].duplicated(keep=False)
    _reject(frame, duplicated, source, "customer_id", "must be unique")
    _reject(frame, ~frame["tier"].isin(TIERS), source, "tier", f"must be one of {list(TIERS)}")

    for rule in NUMERIC_RULES:
        frame[rule.column] = _numeric(frame, rule, source)
    too_many_clicks = frame["historical_click_rate"] > frame["historical_open_rate"] + 1e-9
    _reject(frame, too_many_clicks, source, "historical_click_rate", "must not exceed historical_open_rate")

    for column in OPTIONAL_TEXT_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].fillna("").astype(str)
    return frame.reset_index(drop=True)


def load_customers(path: Path | str) -> pd.DataFrame:
    return validate_customers(read_customers(path), path)


def _numeric(frame: pd.DataFrame, rule: NumericRule, source: Path | str) -> pd.Series:
    original = frame[rule.column]
    values = pd.to_numeric(original, errors="coerce")
    _reject(frame, original.isna(), source, rule.column, "must not be empty")
    _reject(frame, values.isna() | ~np.isfinite(values), source, rule.column, rule.describe())
    if rule.whole:
        _reject(frame, values != np.floor(values), source, rule.column, rule.describe())
    _reject(frame, (values < rule.low) | (values > rule.high), source, rule.column, rule.describe())
    return values.astype("int64") if rule.whole else values.astype("float64")


def _reject(frame: pd.DataFrame, mask: pd.Series, source: Path | str, column: str, rule: str) -> None:
    mask = mask.fillna(False).astype(bool)
    if mask.any():
        columns = ["customer_id", column] if column != "customer_id" else ["customer_id"]
        raise DataContractError(source, column, rule, offending_rows(frame, mask, columns), int(mask.sum()))
