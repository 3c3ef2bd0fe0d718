"""The customers file's two read paths accept the same files and return the same frame.

`load_customers` reads a valid file with DuckDB, typed, and checks it whole-column at a time (the
fast path); anything that path does not accept is read again as text by `validate_customers`,
which names the broken rule and its line numbers (test_customers.py). Here: every file the fast
path takes gives exactly the text path's frame, and every file it should not decide on goes to the
text path.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from personalization_assets.audience.customers import (
    PYTHON_WHITESPACE,
    _accept_typed,
    _read_typed,
    load_customers,
    read_customers,
    validate_customers,
)
from personalization_assets.campaign.errors import DataContractError
from personalization_assets.campaign.sample_data import generate_customers
from personalization_assets_tests.pure_fixtures import CUSTOMERS_CSV


def fast(path: Path) -> pd.DataFrame | None:
    typed = _read_typed(path)
    return None if typed is None else _accept_typed(*typed)


def text(path: Path) -> pd.DataFrame:
    return validate_customers(read_customers(path), path)


def assert_same_frame(path: Path) -> pd.DataFrame:
    frame = fast(path)
    assert frame is not None, "the fast path should take this file"
    pd.testing.assert_frame_equal(frame, text(path), check_exact=True)
    pd.testing.assert_frame_equal(load_customers(path), frame, check_exact=True)
    return frame


def test_python_whitespace_is_what_str_strip_removes():
    import sys

    assert PYTHON_WHITESPACE == "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


def test_committed_sample_takes_the_fast_path_with_the_same_frame():
    assert_same_frame(CUSTOMERS_CSV)


def test_generated_customers_with_extra_and_padded_columns(tmp_path):
    frame = generate_customers(3000, seed=11)
    frame["loyalty_id"] = np.where(np.arange(3000) % 5 == 0, "", "L" + pd.Series(np.arange(3000)).astype(str))
    frame["notes"] = np.where(np.arange(3000) % 7 == 0, "", "a, \"quoted\" note")
    frame.loc[::9, "customer_id"] = " " + frame.loc[::9, "customer_id"] + "\u3000"  # stripped on both paths
    frame.loc[::11, "location"] = "\u00a0" + frame.loc[::11, "location"]
    frame.loc[::13, "tier"] = frame.loc[::13, "tier"] + " "
    frame.loc[::17, "first_name"] = ""
    path = tmp_path / "customers.csv"
    frame.to_csv(path, index=False)
    loaded = assert_same_frame(path)
    assert loaded["customer_id"].str.strip().eq(loaded["customer_id"]).all()
    assert loaded["loyalty_id"].isna().sum() == 600  # empty extra fields are missing, as pandas reads them
    assert (loaded["first_name"] == "").sum() == len(frame.loc[::17])


def test_optional_merge_fields_absent(tmp_path):
    frame = generate_customers(500, seed=3).drop(columns=["first_name", "email"])
    path = tmp_path / "customers.csv"
    frame.to_csv(path, index=False)
    assert list(assert_same_frame(path).columns) == list(frame.columns)


def test_parquet_takes_the_fast_path(tmp_path):
    source = generate_customers(800, seed=5)
    source["points"] = np.arange(800)
    path = tmp_path / "customers.parquet"
    duckdb.sql(f"COPY (SELECT * FROM source) TO '{path.as_posix()}' (FORMAT parquet)")
    assert_same_frame(path)


def test_byte_order_mark_and_crlf(tmp_path):
    lines = CUSTOMERS_CSV.read_text().splitlines()[:40]
    path = tmp_path / "bom.csv"
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    assert_same_frame(path)


def test_number_syntax_the_text_path_rejects_is_left_to_it(tmp_path):
    # DuckDB reads '1_000' as 1000; pandas does not. The file must fail as it always has.
    lines = CUSTOMERS_CSV.read_text().splitlines()[:6]
    header = lines[0].split(",")
    row = lines[3].split(",")
    row[header.index("purchase_frequency")] = "1_000"
    lines[3] = ",".join(row)
    path = tmp_path / "underscore.csv"
    path.write_text("\n".join(lines) + "\n")
    assert fast(path) is None
    with pytest.raises(DataContractError) as info:
        load_customers(path)
    assert info.value.column == "purchase_frequency"
    assert 4 in info.value.examples.index  # its CSV line


@pytest.mark.parametrize(
    "edit",
    [
        lambda lines: lines[:3] + [""] + lines[3:],  # a blank line
        lambda lines: lines[:3] + [",,,,,,,,,,"] + lines[3:],  # a row of empty fields
        lambda lines: [lines[0] + ",extra", *[line + ",x" for line in lines[1:]]],  # fine: an extra column
        lambda lines: [lines[0].replace("location", "age")] + lines[1:],  # a repeated column name
        lambda lines: lines[:2] + [lines[2] + ",surplus"] + lines[3:],  # a ragged row
    ],
)
def test_odd_files_give_what_the_text_path_gives(tmp_path, edit):
    lines = edit(CUSTOMERS_CSV.read_text().splitlines()[:30])
    path = tmp_path / "odd.csv"
    path.write_text("\n".join(lines) + "\n")
    try:
        expected = text(path)
    except (DataContractError, pd.errors.ParserError) as exc:
        with pytest.raises(type(exc)) as info:
            load_customers(path)
        assert str(info.value) == str(exc)
        return
    pd.testing.assert_frame_equal(load_customers(path), expected, check_exact=True)


@pytest.mark.parametrize("value", ["inf", "nan", "", "  ", "1e400", "9007199254740993", "thirty", "2.5", "-1"])
def test_bad_or_doubtful_numbers_are_decided_by_the_text_path(tmp_path, value):
    lines = CUSTOMERS_CSV.read_text().splitlines()[:8]
    header = lines[0].split(",")
    row = lines[4].split(",")
    row[header.index("purchase_frequency")] = value
    lines[4] = ",".join(row)
    path = tmp_path / "numbers.csv"
    path.write_text("\n".join(lines) + "\n")
    assert fast(path) is None
    try:
        expected = text(path)
    except DataContractError as exc:
        with pytest.raises(DataContractError) as info:
            load_customers(path)
        assert str(info.value) == str(exc)
        return
    pd.testing.assert_frame_equal(load_customers(path), expected, check_exact=True)


def test_missing_and_empty_files_are_left_to_the_text_path(tmp_path):
    assert _read_typed(tmp_path / "nope.csv") is None
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert _read_typed(empty) is None
    header_only = tmp_path / "header.csv"
    header_only.write_text(CUSTOMERS_CSV.read_text().splitlines()[0] + "\n")
    assert fast(header_only) is None
