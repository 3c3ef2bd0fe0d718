"""One-to-one left joins on a key column, as row positions, for million-row customer tables.

`pandas.merge` on text keys hashes every key and copies every column of both sides. The wave's
tables are joined on `customer_id`, one row per customer on each side, so a join only needs the
row of the other table that holds each key: one pass of hashing over the key columns together,
then whole-column `take`s of just the columns that are needed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def left_join_rows(keys: np.ndarray, *lookups: np.ndarray) -> list[np.ndarray]:
    """For each lookup, the row holding each key (-1 where none does).

    Every side's keys must be unique, as `pandas.merge(validate="one_to_one")` requires; a repeated
    key raises the same `MergeError`. The usual case, a lookup with the same keys in the same
    order, costs one element-wise comparison.
    """
    keys = np.asarray(keys, dtype=object)
    lookups = tuple(np.asarray(lookup, dtype=object) for lookup in lookups)
    if lookups and all(len(lookup) == len(keys) and np.array_equal(lookup, keys) for lookup in lookups):
        if not pd.Index(keys).is_unique:
            raise pd.errors.MergeError("Merge keys are not unique in left dataset; not a one-to-one merge")
        return [np.arange(len(keys), dtype=np.intp) for _ in lookups]
    codes, uniques = pd.factorize(np.concatenate([keys, *lookups]), use_na_sentinel=False)
    parts = np.split(codes, np.cumsum([len(keys), *map(len, lookups)])[:-1])
    for side, part in zip(("left", *["right"] * len(lookups)), parts):
        if len(part) and np.bincount(part, minlength=len(uniques)).max() > 1:
            raise pd.errors.MergeError(f"Merge keys are not unique in {side} dataset; not a one-to-one merge")
    rows = []
    for part in parts[1:]:
        row_of_code = np.full(len(uniques), -1, dtype=np.intp)
        row_of_code[part] = np.arange(len(part))
        rows.append(row_of_code[parts[0]])
    return rows


def take(values: np.ndarray, rows: np.ndarray, missing: object) -> np.ndarray:
    """`values[rows]`, with `missing` where the row is -1."""
    values = np.asarray(values)
    if not len(values):
        return np.full(len(rows), missing, dtype=values.dtype if values.dtype == object else None)
    taken = values[rows]
    absent = rows < 0
    if absent.any():
        taken = taken.astype(object) if values.dtype == object else taken.astype(np.result_type(taken, np.asarray(missing)))
        taken[absent] = missing
    return taken
