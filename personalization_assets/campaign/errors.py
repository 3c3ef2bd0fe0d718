"""Errors that tell a user exactly which input broke which rule, and where."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where a frame is read: `cpo --help` needs no pandas
    import pandas as pd

# How many offending rows an error message quotes: enough to see the pattern, short enough to read.
EXAMPLE_ROWS = 5


class ConfigError(ValueError):
    """A configuration file (campaign, segment catalog, prompts) is missing or malformed."""

    def __init__(self, file: Path | str, message: str):
        self.file = str(file)
        super().__init__(f"{file}: {message}")


class AuditTrailError(RuntimeError):
    """The audit trail cannot be appended to as it is (a torn last record); the message names the file and how to proceed."""


class DataContractError(ValueError):
    """An input data file breaks its contract.

    The message names the file, the column, the rule and quotes example offending rows, so the user
    can fix the file without reading code. Raising it fails the asset, so nothing downstream is
    written.
    """

    def __init__(
        self,
        file: Path | str,
        column: str | None,
        rule: str,
        examples: pd.DataFrame | Sequence[str] | None = None,
        n_offending: int | None = None,
    ):
        self.file = str(file)
        self.column = column
        self.rule = rule
        self.n_offending = n_offending
        where = f"column '{column}'" if column else "file"
        count = f" ({n_offending} offending rows)" if n_offending is not None else ""
        message = f"{file}: {where} breaks rule: {rule}{count}"
        if examples is not None and len(examples):
            import pandas as pd

            if isinstance(examples, pd.DataFrame):
                quoted = examples.head(EXAMPLE_ROWS).to_string()
            else:
                quoted = "\n".join(str(e) for e in list(examples)[:EXAMPLE_ROWS])
            message += f"\nexample rows:\n{quoted}"
        self.examples = examples
        super().__init__(message)


def read_csv_as_text(path: Path | str, row_name: str = "data row") -> pd.DataFrame:
    """A CSV file as text, indexed by each row's line number in the file (header = line 1).

    Everything stays text so type errors are ours to report; blank lines are dropped only after
    numbering, so a quoted line number is the one the user's editor shows.
    """
    import pandas as pd

    _check_first_row_width(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], skip_blank_lines=False, encoding="utf-8",
                            index_col=False)
    except pd.errors.EmptyDataError:
        raise DataContractError(path, None, f"the file must have a header row and at least one {row_name}") from None
    except UnicodeDecodeError as exc:
        raise DataContractError(path, None, f"must be a CSV file of UTF-8 text: {undecodable_position(path, exc)}; save it "
                                "as UTF-8 (spreadsheet programs: 'CSV UTF-8')") from None
    except pd.errors.ParserError as exc:
        raise DataContractError(path, None, f"must be a CSV file with the same number of fields on every line: {exc}".rstrip()) from None
    except IsADirectoryError:
        raise DataContractError(path, None, "must be a CSV file, not a folder") from None
    except FileNotFoundError:
        raise DataContractError(path, None, "the file does not exist") from None
    frame.index = pd.RangeIndex(2, len(frame) + 2, name="line")
    return frame.dropna(how="all")


def _check_first_row_width(path: Path | str) -> None:
    """pandas reads a first data row with one field too many as an index column, shifting every
    value one column to the left, where a later such row is an error: the first row is checked here."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = csv.reader(handle)
            header, first = next(rows, None), next(rows, None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # pandas' own reading reports these
    if header and first and len(first) > len(header):
        raise DataContractError(path, None, f"must be a CSV file with the same number of fields on every line: "
                                f"Expected {len(header)} fields in line 2, saw {len(first)}")


def undecodable_position(path: Path | str, error: UnicodeDecodeError) -> str:
    """Where a file stops being UTF-8, as a person finds it: line, column and the byte."""
    try:
        data = Path(path).read_bytes()
        data.decode("utf-8")  # a reader's error counts from its own buffer; this one from the file's start
    except UnicodeDecodeError as whole_file:
        start = whole_file.start
    except OSError:
        return f"byte {error.start}"
    else:
        return f"byte {error.start}"
    line = data.count(b"\n", 0, start) + 1
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    return f"byte 0x{data[start]:02x} at line {line}, column {column} is not UTF-8"


def offending_rows(frame: pd.DataFrame, mask: pd.Series, columns: Sequence[str]) -> pd.DataFrame:
    """The first rows a rule rejects, labelled by the frame's index (CSV line numbers)."""
    return frame.loc[mask, [c for c in columns if c in frame.columns]].head(EXAMPLE_ROWS)
