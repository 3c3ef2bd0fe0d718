"""The customers data contract: load a CSV or Parquet file and validate it, vectorized.

Every rule failure raises `DataContractError` naming the file, the column, the rule and example
rows (with their CSV line numbers), so a user can fix the file without reading code.

Two paths, one contract. A valid file, the common case, is read once by DuckDB's parallel reader
with the numeric columns typed, and checked with whole-column numpy operations
(`_read_typed`, `_accept_typed`): about 2 s for a million customers. A file that fails any rule on
that path, or that the typed reader cannot take as it is, is read again as text
(`read_customers`, `validate_customers`), which raises the error with its line numbers. The fast
path accepts only files the text path accepts, and returns the same frame.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from personalization_assets.campaign.errors import (
    DataContractError,
    offending_rows,
    read_csv_as_text,
)

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
    """The validated customers of a CSV or Parquet file; `DataContractError` when a rule breaks."""
    typed = _read_typed(Path(path))
    frame = _accept_typed(*typed) if typed is not None else None
    if frame is not None:
        return frame
    # Something is off (or the typed reader could not take the file): the text path names it.
    return validate_customers(read_customers(path), path)


# Characters the typed CSV reader must not see in a column name (it is quoted into SQL).
_UNSAFE_NAME = re.compile(r"['\"\x00-\x1f]")
# What Python's str.strip() removes: every code point whose str.isspace() is true.
PYTHON_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_PADDED = "__padded_"


def _csv_header(path: Path) -> list[str] | None:
    """The header row as pandas reads it (a UTF-8 byte-order mark dropped), or None if unusable."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if not header or len(set(header)) != len(header) or any(not name or _UNSAFE_NAME.search(name) for name in header):
        return None  # pandas would rename empty or repeated names; leave those files to it
    return header


def _read_typed(path: Path) -> tuple[pd.DataFrame, frozenset[str]] | None:
    """The file read by DuckDB with the contract's numeric columns as numbers, and the text
    columns that may need stripping; None when the typed reader cannot take the file.

    CSV: every column is read as text and the numeric ones are cast in SQL. DuckDB's number
    syntax is pandas' plus digit-group underscores ('1_000'), which the text path rejects, so a
    value with an underscore becomes NULL here and sends the file to the text path. Empty fields
    are NULL (NaN), as in the text path. Whether a text column starts or ends with whitespace is
    found in SQL, so a million clean values are not stripped one by one in Python.
    """
    if not path.is_file():
        return None
    import duckdb  # DuckDB reads CSV and Parquet in parallel, without pulling in pyarrow.

    connection = duckdb.connect()
    try:
        if path.suffix.lower() == ".parquet":
            return connection.execute("SELECT * FROM read_parquet(?)", [path.as_posix()]).df(), frozenset(TEXT_COLUMNS)
        header = _csv_header(path)
        if header is None:
            return None
        numeric = {rule.column for rule in NUMERIC_RULES}
        columns = ", ".join(f"'{name}': 'VARCHAR'" for name in header)
        select = ", ".join(
            f'CASE WHEN contains("{name}", \'_\') THEN NULL ELSE TRY_CAST("{name}" AS DOUBLE) END AS "{name}"'
            if name in numeric else f'"{name}"'
            for name in header
        )
        checked = [name for name in TEXT_COLUMNS if name in header]
        padded = "".join(
            f', coalesce(contains(?, left("{name}", 1)) OR contains(?, right("{name}", 1)), false) AS "{_PADDED}{name}"'
            for name in checked
        )
        source = path.as_posix().replace("'", "''")
        frame = connection.execute(
            f"SELECT {select}{padded} FROM read_csv('{source}', header = true, delim = ',', quote = '\"', escape = '\"', "
            f"auto_detect = false, columns = {{{columns}}}, nullstr = '', strict_mode = true)",
            [PYTHON_WHITESPACE] * (2 * len(checked)),
        ).df()
    except (duckdb.Error, UnicodeDecodeError):
        return None
    finally:
        connection.close()
    maybe_padded = frozenset(name for name in checked if frame.pop(f"{_PADDED}{name}").any())
    for name in header:
        if name not in numeric and name not in OPTIONAL_TEXT_COLUMNS and frame[name].isna().any():
            frame[name] = frame[name].where(frame[name].notna(), np.nan)  # NaN for empty, as pandas reads it
    return frame, maybe_padded


def _accept_typed(raw: pd.DataFrame, maybe_padded: frozenset[str] = frozenset(TEXT_COLUMNS)) -> pd.DataFrame | None:
    """`validate_customers`' result for a typed frame that passes every rule; None otherwise.

    Whole-column checks only, no error messages: a None sends the file to the text path, which
    finds the first broken rule and quotes its rows. Text columns not in `maybe_padded` are known
    to have no leading or trailing whitespace (and no empty value), so stripping them is skipped.
    """
    if raw.empty or any(column not in raw.columns for column in REQUIRED_COLUMNS):
        return None
    frame = raw.copy(deep=False)
    for column in TEXT_COLUMNS:
        values = frame[column]
        if values.dtype != object or pd.api.types.infer_dtype(values, skipna=False) != "string":
            return None  # missing values, or not text: the text path decides
        if column not in maybe_padded or (column == "tier" and values.isin(TIERS).all()):
            continue  # already exact: nothing to strip
        stripped = values.str.strip()
        if (stripped == "").any():
            return None
        frame[column] = stripped
    if not frame["customer_id"].is_unique or not frame["tier"].isin(TIERS).all():
        return None
    for rule in NUMERIC_RULES:
        values = frame[rule.column]
        if not isinstance(values.dtype, np.dtype) or values.dtype.kind not in "iuf":
            return None
        numbers = values.to_numpy(dtype=np.float64)
        if not np.isfinite(numbers).all() or (numbers < rule.low).any() or (numbers > rule.high).any():
            return None
        if rule.whole and ((numbers != np.floor(numbers)).any() or (np.abs(numbers) >= 2**53).any()):
            return None  # 2**53 and beyond: a float cannot tell neighbouring whole numbers apart
        frame[rule.column] = values.astype("int64") if rule.whole else values.astype("float64")
    if (frame["historical_click_rate"] > frame["historical_open_rate"] + 1e-9).any():
        return None
    for column in OPTIONAL_TEXT_COLUMNS:
        if column in frame.columns and pd.api.types.infer_dtype(frame[column], skipna=False) != "string":
            frame[column] = frame[column].fillna("").astype(str)  # text already (the usual case): as is
    if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1:
        return frame  # DuckDB's frames are numbered 0..n-1 already: no copy
    return frame.reset_index(drop=True)


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


def past_spend(customers: pd.DataFrame) -> np.ndarray:
    """What a customer spent before the campaign, per the contract's numbers: purchase frequency
    times average order value. The pre-experiment covariate (CUPED) of revenue per recipient."""
    return customers["purchase_frequency"].to_numpy(dtype=float) * customers["avg_order_value"].to_numpy(dtype=float)
