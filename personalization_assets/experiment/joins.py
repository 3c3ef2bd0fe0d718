"""The analysis join (sent customers x covariates x outcomes), once, and the row-position joins under it.

`pandas.merge` on text keys hashes every key and copies every column of both sides. The wave's
tables are joined on `customer_id`, one row per customer on each side, so a join only needs the
row of the other table that holds each key: one pass of hashing over the key columns together,
then whole-column `take`s of just the columns that are needed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalization_assets.campaign.config import (
    GUARDRAIL_COLUMNS,
    METRIC_COLUMNS,
    METRIC_COVARIATES,
)
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.experiment.assignment import HOLD_NO_EMAIL
from personalization_assets.experiment.engagement import OUTCOMES, REVENUE

# The pre-experiment covariates every analysis and the simulator read.
COVARIATES = tuple(sorted({c for cols in METRIC_COVARIATES.values() for c in cols}))
# Every customer column `customer_segments` keeps beside the segment: the features of the uplift
# model and what the simulator's heterogeneous effects read.
PROFILE_COLUMNS = ("tier", "age", "purchase_frequency", "avg_order_value", "last_engagement_days", *COVARIATES)


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


def measured_customers(
    assignments: pd.DataFrame, customer_segments: pd.DataFrame, *, keep_unmatched: bool = False, columns: tuple[str, ...] = COVARIATES
) -> pd.DataFrame:
    """Sent customers (customer_id, segment, arm) with their `columns` of customer_segments
    (default: the historical rates, COVARIATES), and the no-email holdout's customers (sent
    nothing, on purpose: their outcomes are measured too). Everyone whose engagement is taken.

    Joined on customer_id as row positions, not a merge on text keys, and before the sent filter:
    the wave's customers in the same order, a one-comparison join. A sent customer with no
    customer_segments row is dropped, or kept with NaN covariates when `keep_unmatched`.
    """
    sent_mask = assignments["sent"].astype(bool).to_numpy()
    if "hold_reason" in assignments:
        sent_mask = sent_mask | (assignments["hold_reason"].to_numpy(dtype=object) == HOLD_NO_EMAIL)
    sent = assignments.loc[sent_mask, ["customer_id", "segment", "arm"]].reset_index(drop=True)
    (rows,) = left_join_rows(assignments["customer_id"].to_numpy(), customer_segments["customer_id"].to_numpy())
    rows = rows[sent_mask]
    found = rows >= 0
    if not keep_unmatched and not found.all():
        sent, rows = sent.loc[found].reset_index(drop=True), rows[found]
    for column in columns:
        values = customer_segments[column].to_numpy()
        sent[column] = take(values if values.dtype == object else values.astype(float), rows, np.nan)
    return sent


def analysis_frame(
    assignments: pd.DataFrame, engagement: pd.DataFrame, customer_segments: pd.DataFrame, *, profile: tuple[str, ...] = COVARIATES
) -> pd.DataFrame:
    """Sent customers with their outcomes and pre-experiment covariates: the analysed population.

    Held-out customers (variant blocked) are excluded from their arm's analysis; they are counted
    separately in the report. A sent customer with no engagement row had no engagement;
    `in_export` says whether the engagement export listed them (engagement partitions written
    before that column count as listing everyone).
    """
    profile = tuple(dict.fromkeys((*COVARIATES, *profile)))
    frame = measured_customers(assignments, customer_segments, keep_unmatched=True, columns=profile)
    (outcome_rows,) = left_join_rows(frame["customer_id"].to_numpy(), engagement["customer_id"].to_numpy())
    for column in OUTCOMES:
        frame[column] = take(engagement[column].to_numpy(dtype=float), outcome_rows, 0.0).astype("int8")
    for column in GUARDRAIL_COLUMNS.values():  # NaN: not measured (an export without the column, or older partitions)
        values = engagement[column].to_numpy(dtype=float) if column in engagement else np.full(len(engagement), np.nan)
        frame[column] = take(values, outcome_rows, np.nan)
    # Revenue, where measured, is 0 for a customer without an engagement row (like their outcomes).
    revenue = engagement[REVENUE].to_numpy(dtype=float) if REVENUE in engagement else np.full(len(engagement), np.nan)
    frame[REVENUE] = take(revenue, outcome_rows, 0.0 if np.isfinite(revenue).any() else np.nan)
    listed = (engagement["in_export"].astype(object).where(engagement["in_export"].notna(), True).to_numpy(dtype=bool)
              if "in_export" in engagement else np.ones(len(engagement), dtype=bool))
    frame["in_export"] = take(listed, outcome_rows, False).astype(bool)
    return frame[["customer_id", "segment", "arm", *METRIC_COLUMNS.values(), *GUARDRAIL_COLUMNS.values(), "in_export", *profile]]


def require_measured(frame: pd.DataFrame, config) -> None:
    """Refuse to analyse a metric whose outcome was not measured (revenue of an engagement table
    without it, e.g. a partition taken before revenue was), naming the campaign key."""
    for metric in config.metrics.all:
        column = METRIC_COLUMNS[metric]
        if len(frame) and frame[column].isna().all():
            raise ConfigError(config.path, f"metrics: {metric} is listed, but the wave's engagement has no {column!r} values "
                                           f"(re-take the wave's engagement, or remove {metric} from metrics)")
