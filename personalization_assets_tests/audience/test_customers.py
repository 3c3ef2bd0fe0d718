"""The customers data contract (DESIGN section 5): every rule fails with a message a user can act on.

Each rule test breaks one cell of a small, otherwise valid file copied from data/customers.csv and
asserts the error names the file, the column and the rule, and quotes the offending customer id
next to its line number in the CSV (header = line 1).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from personalization_assets.audience.customers import REQUIRED_COLUMNS, load_customers
from personalization_assets.campaign.errors import EXAMPLE_ROWS, DataContractError
from personalization_assets_tests.pure_fixtures import CUSTOMERS_CSV

SAMPLE_LINES = CUSTOMERS_CSV.read_text().splitlines()
HEADER = SAMPLE_LINES[0].split(",")
# Customers C0000001..C0000006 on CSV lines 2..7.
ROWS = [line.split(",") for line in SAMPLE_LINES[1:7]]
BROKEN_INDEX = 2  # the row a test breaks: customer C0000003, CSV line 4
BROKEN_LINE = BROKEN_INDEX + 2
BROKEN_ID = ROWS[BROKEN_INDEX][HEADER.index("customer_id")]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    path.write_text("\n".join(",".join(row) for row in [header, *rows]) + "\n")
    return path


def with_cell(column: str, value: str, index: int = BROKEN_INDEX) -> list[list[str]]:
    rows = [list(row) for row in ROWS]
    rows[index][HEADER.index(column)] = value
    return rows


def load_error(path: Path) -> DataContractError:
    with pytest.raises(DataContractError) as info:
        load_customers(path)
    return info.value


def assert_names(error: DataContractError, path: Path, column: str | None, rule: str) -> None:
    message = str(error)
    assert str(path) in message
    if column is not None:
        assert f"column '{column}'" in message
        assert error.column == column
    assert rule in message
    assert rule in error.rule


def assert_quotes(error: DataContractError, line: int, customer_id: str) -> None:
    """The example rows carry the CSV line number as index, next to the customer id."""
    examples = error.examples
    assert isinstance(examples, pd.DataFrame)
    assert examples.index.name == "line"
    assert line in examples.index
    assert examples.loc[line, "customer_id"] == customer_id
    assert re.search(rf"^{line}\s+{re.escape(customer_id)}\b", str(error), flags=re.MULTILINE), str(error)


# --- the valid file ---------------------------------------------------------------------------------


def test_committed_sample_loads_with_contract_dtypes():
    frame = load_customers(CUSTOMERS_CSV)
    assert len(frame) == len(SAMPLE_LINES) - 1
    assert list(frame.columns[: len(HEADER)]) == HEADER
    for column in ("age", "purchase_frequency", "last_engagement_days"):
        assert frame[column].dtype == np.int64, column
    for column in ("avg_order_value", "historical_open_rate", "historical_click_rate"):
        assert frame[column].dtype == np.float64, column
    for column in ("customer_id", "location", "tier", "first_name", "email"):
        assert frame[column].map(type).eq(str).all(), column
    assert frame["customer_id"].is_unique
    assert set(frame["tier"]) <= {"Gold", "Silver", "Bronze"}
    assert frame["age"].between(13, 120).all()
    assert (frame["historical_click_rate"] <= frame["historical_open_rate"]).all()
    # Values survive the text-first read unchanged.
    first = SAMPLE_LINES[1].split(",")
    assert frame.loc[0, "customer_id"] == first[HEADER.index("customer_id")]
    assert frame.loc[0, "avg_order_value"] == pytest.approx(float(first[HEADER.index("avg_order_value")]))


def test_extra_columns_are_kept_as_written(tmp_path):
    rows = [[*row, f"L{i}", "x y"] for i, row in enumerate(ROWS)]
    path = write_csv(tmp_path / "extra.csv", rows, [*HEADER, "loyalty_id", "notes"])
    frame = load_customers(path)
    assert list(frame["loyalty_id"]) == [f"L{i}" for i in range(len(ROWS))]
    assert set(frame["notes"]) == {"x y"}
    assert len(frame) == len(ROWS)


def test_optional_merge_fields_may_be_absent(tmp_path):
    keep = [HEADER.index(c) for c in REQUIRED_COLUMNS]
    path = write_csv(tmp_path / "required_only.csv", [[row[i] for i in keep] for row in ROWS], list(REQUIRED_COLUMNS))
    frame = load_customers(path)
    assert list(frame.columns) == list(REQUIRED_COLUMNS)


def test_parquet_file_loads(tmp_path):
    source = pd.read_csv(CUSTOMERS_CSV).head(50)
    source["loyalty_points"] = np.arange(50)
    path = tmp_path / "customers.parquet"
    duckdb.sql(f"COPY (SELECT * FROM source) TO '{path.as_posix()}' (FORMAT parquet)")
    frame = load_customers(path)
    assert len(frame) == 50
    assert list(frame["customer_id"]) == list(source["customer_id"])
    assert frame["age"].dtype == np.int64
    assert frame["historical_open_rate"].dtype == np.float64
    assert list(frame["loyalty_points"]) == list(range(50))


def test_parquet_file_is_validated_too(tmp_path):
    source = pd.read_csv(CUSTOMERS_CSV).head(10)
    source.loc[3, "age"] = 7
    path = tmp_path / "customers.parquet"
    duckdb.sql(f"COPY (SELECT * FROM source) TO '{path.as_posix()}' (FORMAT parquet)")
    error = load_error(path)
    assert_names(error, path, "age", "must be a whole number in [13, 120]")
    assert source.loc[3, "customer_id"] in str(error)


# --- one test per rule ------------------------------------------------------------------------------


def test_missing_required_column(tmp_path):
    dropped = HEADER.index("tier")
    header = [c for i, c in enumerate(HEADER) if i != dropped]
    rows = [[v for i, v in enumerate(row) if i != dropped] for row in ROWS]
    path = write_csv(tmp_path / "no_tier.csv", rows, header)
    error = load_error(path)
    assert_names(error, path, "tier", "required column missing")
    assert "'tier'" in str(error)


def test_text_in_age(tmp_path):
    path = write_csv(tmp_path / "age_text.csv", with_cell("age", "thirty"))
    error = load_error(path)
    assert_names(error, path, "age", "must be a whole number in [13, 120]")
    assert_quotes(error, BROKEN_LINE, BROKEN_ID)
    assert "thirty" in str(error)
    assert error.n_offending == 1


def test_non_whole_purchase_frequency(tmp_path):
    path = write_csv(tmp_path / "pf.csv", with_cell("purchase_frequency", "2.5"))
    error = load_error(path)
    assert_names(error, path, "purchase_frequency", "must be a whole number >= 0")
    assert_quotes(error, BROKEN_LINE, BROKEN_ID)
    assert "2.5" in str(error)


def test_duplicate_customer_ids_quote_every_copy(tmp_path):
    rows = [list(row) for row in ROWS]
    rows[5][HEADER.index("customer_id")] = BROKEN_ID  # CSV line 7 repeats line 4's id
    path = write_csv(tmp_path / "dup.csv", rows)
    error = load_error(path)
    assert_names(error, path, "customer_id", "must be unique")
    assert_quotes(error, BROKEN_LINE, BROKEN_ID)
    assert_quotes(error, 7, BROKEN_ID)
    assert error.n_offending == 2


def test_duplicate_ids_are_detected_after_trimming_spaces(tmp_path):
    rows = [list(row) for row in ROWS]
    rows[5][HEADER.index("customer_id")] = f" {BROKEN_ID} "
    error = load_error(write_csv(tmp_path / "dup_spaces.csv", rows))
    assert error.column == "customer_id" and "must be unique" in error.rule


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("historical_open_rate", "1.5", "must be a number in [0, 1]"),
        ("avg_order_value", "-3.25", "must be a number >= 0"),
        ("age", "7", "must be a whole number in [13, 120]"),
        ("age", "121", "must be a whole number in [13, 120]"),
        ("last_engagement_days", "-1", "must be a whole number >= 0"),
        ("historical_click_rate", "-0.01", "must be a number in [0, 1]"),
    ],
)
def test_out_of_range_values(tmp_path, column, value, rule):
    path = write_csv(tmp_path / f"{column}.csv", with_cell(column, value))
    error = load_error(path)
    assert_names(error, path, column, rule)
    assert_quotes(error, BROKEN_LINE, BROKEN_ID)
    assert value in str(error)


def test_range_bounds_are_inclusive(tmp_path):
    rows = with_cell("age", "13", index=0)
    rows[1][HEADER.index("age")] = "120"
    rows[2][HEADER.index("historical_open_rate")] = "1"
    rows[2][HEADER.index("historical_click_rate")] = "1"
    rows[3][HEADER.index("avg_order_value")] = "0"
    frame = load_customers(write_csv(tmp_path / "bounds.csv", rows))
    assert list(frame["age"][:2]) == [13, 120]


def test_click_rate_above_open_rate(tmp_path):
    rows = with_cell("historical_open_rate", "0.10")
    rows[BROKEN_INDEX][HEADER.index("historical_click_rate")] = "0.20"
    path = write_csv(tmp_path / "clicks.csv", rows)
    error = load_error(path)
    assert_names(error, path, "historical_click_rate", "must not exceed historical_open_rate")
    assert_quotes(error, BROKEN_LINE, BROKEN_ID)


def test_click_rate_equal_to_open_rate_is_allowed(tmp_path):
    rows = with_cell("historical_open_rate", "0.2")
    rows[BROKEN_INDEX][HEADER.index("historical_click_rate")] = "0.2"
    assert len(load_customers(write_csv(tmp_path / "equal.csv", rows))) == len(ROWS)


def test_bad_tier(tmp_path):
    path = write_csv(tmp_path / "tier.csv", with_cell("tier", "Platinum"))
    error = load_error(path)
    assert_names(error, path, "tier", "must be one of ['Gold', 'Silver', 'Bronze']")
    assert_quotes(error, BROKEN_LINE, BROKEN_ID)
    assert "Platinum" in str(error)


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_customer_id(tmp_path, value):
    path = write_csv(tmp_path / "empty_id.csv", with_cell("customer_id", value))
    error = load_error(path)
    assert_names(error, path, "customer_id", "must not be empty")
    # There is no id to quote: the line number points at the row.
    assert list(error.examples.index) == [BROKEN_LINE]
    assert re.search(rf"^{BROKEN_LINE}\s", str(error), flags=re.MULTILINE)


def test_empty_value_in_a_numeric_column(tmp_path):
    path = write_csv(tmp_path / "empty_age.csv", with_cell("age", ""))
    error = load_error(path)
    assert_names(error, path, "age", "must not be empty")
    assert_quotes(error, BROKEN_LINE, BROKEN_ID)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    error = load_error(path)
    assert_names(error, path, None, "header row and at least one customer")
    assert error.column is None


def test_header_only_file(tmp_path):
    path = write_csv(tmp_path / "header_only.csv", [])
    error = load_error(path)
    assert_names(error, path, None, "at least one customer")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    error = load_error(path)
    assert_names(error, path, None, "must exist")


def test_only_the_first_examples_are_quoted_but_all_are_counted(tmp_path):
    rows = [list(row) for row in ROWS] * 3  # 18 rows, 6 ids each repeated 3 times
    error = load_error(write_csv(tmp_path / "many_dups.csv", rows))
    assert error.n_offending == 18
    assert len(error.examples) == EXAMPLE_ROWS
    assert list(error.examples.index) == [2, 3, 4, 5, 6]  # the first EXAMPLE_ROWS offending lines
    assert "(18 offending rows)" in str(error)


# --- non-finite numbers and blank lines -------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity"])
def test_non_finite_whole_number_is_a_contract_error(tmp_path, value):
    path = write_csv(tmp_path / "pf_inf.csv", with_cell("purchase_frequency", value))
    error = load_error(path)
    assert_names(error, path, "purchase_frequency", "must be a whole number >= 0")
    assert_quotes(error, BROKEN_LINE, BROKEN_ID)


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_non_finite_order_value_is_rejected(tmp_path, value):
    path = write_csv(tmp_path / "aov_inf.csv", with_cell("avg_order_value", value))
    error = load_error(path)
    assert_names(error, path, "avg_order_value", "must be a number >= 0")
    assert_quotes(error, BROKEN_LINE, BROKEN_ID)


def test_line_numbers_survive_a_blank_line(tmp_path):
    rows = [list(row) for row in ROWS]
    rows[5][HEADER.index("customer_id")] = BROKEN_ID
    path = tmp_path / "blank_line.csv"
    lines = [",".join(HEADER), *(",".join(r) for r in rows[:2]), "", *(",".join(r) for r in rows[2:])]
    path.write_text("\n".join(lines) + "\n")
    # File lines: 1 header, 2-3 customers, 4 blank, 5 = C0000003, 8 = its duplicate.
    error = load_error(path)
    assert_quotes(error, 5, BROKEN_ID)
    assert_quotes(error, 8, BROKEN_ID)


def test_blank_lines_are_not_customers(tmp_path):
    path = tmp_path / "blank_lines.csv"
    path.write_text("\n".join([",".join(HEADER), ",".join(ROWS[0]), "", ",".join(ROWS[1]), "", ""]) + "\n")
    frame = load_customers(path)
    assert list(frame["customer_id"]) == [ROWS[0][0], ROWS[1][0]]
    assert frame.index.equals(pd.RangeIndex(2))


def test_a_latin1_file_names_the_line_where_it_stops_being_utf8(tmp_path):
    rows = with_cell("first_name", "Jos\u00e9")
    path = tmp_path / "customers.csv"
    path.write_bytes(("\n".join(",".join(row) for row in [HEADER, *rows]) + "\n").encode("latin-1"))
    error = load_error(path)
    assert str(path) in str(error) and "is not UTF-8" in str(error) and f"line {BROKEN_LINE}," in str(error)


@pytest.mark.parametrize("index", [BROKEN_INDEX, 0])  # the first data row too, which pandas would take as an index
def test_a_row_with_an_extra_field_names_its_line(tmp_path, index):
    rows = [list(row) for row in ROWS]
    rows[index].append("surplus")
    error = load_error(write_csv(tmp_path / "customers.csv", rows))
    assert str(tmp_path / "customers.csv") in str(error)
    assert "same number of fields" in str(error) and f"line {index + 2}," in str(error)


def test_a_file_that_is_not_a_csv_is_named(tmp_path):
    path = tmp_path / "logo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10")
    error = load_error(path)
    assert str(path) in str(error)
