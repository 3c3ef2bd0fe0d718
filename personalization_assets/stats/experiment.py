"""Table-level analysis of an A/B/n experiment: one result row per (metric, arm).

Per-arm sums come from one pass of np.bincount per column over integer arm codes, and every
(metric, treatment) comparison is then computed in one vectorized call, so the cost is a few
array passes over the customers whatever the number of arms and metrics.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from .bayes import chance_to_beat_control
from .cuped import cuped_relative_lift, group_moments
from .means import compare_means
from .multiple_testing import holm_adjust
from .power import minimum_detectable_lift
from .proportions import compare_proportions

ARM_COLUMN = "arm"

RESULT_COLUMNS = [
    "metric",
    "arm",
    "n",
    "successes",
    "rate",
    "outcome_sd",
    "control_rate",
    "abs_lift",
    "rel_lift",
    "rel_lift_ci_low",
    "rel_lift_ci_high",
    "p_value",
    "p_value_adjusted",
    "significant",
    "cuped_rel_lift",
    "cuped_rel_lift_ci_low",
    "cuped_rel_lift_ci_high",
    "chance_to_beat_control",
    "mde",
    "unmeasurable_reason",
]
# Below this many customers in an arm a comparison is reported as unmeasurable: even a lift to a
# rate of 1 is rarely detectable, and the rates move by 10 points per customer.
MIN_ARM_CUSTOMERS = 10


def _arm_order(control: str, arms: Sequence[str]) -> list[str]:
    """Arms in output order: as given, with control prepended when not listed."""
    order = list(arms) if control in arms else [control, *arms]
    duplicates = sorted({arm for arm in order if order.count(arm) > 1})
    if duplicates:
        raise ValueError(f"arms listed more than once: {duplicates}")
    return order


def _require_columns(outcomes: pd.DataFrame, columns: Sequence[str], role: str) -> None:
    missing = [column for column in columns if column not in outcomes.columns]
    if missing:
        raise ValueError(f"outcomes has no {role} column(s) {missing}")


def _outcome(outcomes: pd.DataFrame, column: str, analysed: np.ndarray, continuous: bool) -> np.ndarray:
    """The metric column as floats, required on the analysed rows to be 0/1, or for a continuous
    metric a finite number."""
    values = pd.to_numeric(outcomes[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    invalid = analysed & ~(np.isfinite(values) if continuous else np.isin(values, (0.0, 1.0)))
    if invalid.any():
        examples = outcomes.loc[invalid, column].head(3).tolist()
        kind = "a number" if continuous else "0/1"
        raise ValueError(f"metric column {column!r} must be {kind} on every analysed row; got {examples} "
                         f"({int(invalid.sum()):,} rows)")
    return values


def _covariate_matrix(outcomes: pd.DataFrame, columns: Sequence[str], analysed: np.ndarray):
    """Covariates as a float matrix, missing values filled with the analysed rows' mean.

    A filled-in customer sits at the covariate mean, so CUPED leaves their outcome unadjusted
    instead of dropping them (which would change n between the plain and CUPED estimates).
    """
    matrix = outcomes[list(columns)].to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(matrix)
    if not missing.any():
        return matrix
    present = ~missing[analysed]
    counts = present.sum(axis=0)
    sums = np.where(present, matrix[analysed], 0.0).sum(axis=0)
    column_means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return np.where(missing, column_means, matrix)


def analyze_experiment(
    outcomes: pd.DataFrame,
    *,
    control: str,
    arms: Sequence[str],
    metrics: Mapping[str, str],
    covariates: Mapping[str, Sequence[str]] | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    continuous: Collection[str] = (),
) -> pd.DataFrame:
    """Compare every treatment arm with control on every metric.

    outcomes: one row per analysed customer, an ``arm`` column, the 0/1 columns named by the
    values of ``metrics`` (metric name -> column) and the covariate columns. Rows whose arm is
    not in ``arms``/``control`` are ignored. ``covariates`` maps metric name -> pre-experiment
    covariate columns for CUPED (metrics without an entry get NaN CUPED columns).

    Returns RESULT_COLUMNS, one row per (metric, arm) in the order metrics × arms (control is
    prepended to ``arms`` when not listed). Control rows carry NaN lift, p-value, CUPED,
    chance and MDE fields and significant=False. All treatment × metric comparisons of the
    call form one Holm family; significant means Holm-adjusted p < alpha, and the MDE is at the
    alpha that decides the first step of Holm, alpha / (number of comparisons), the same
    Bonferroni level `cpo plan` uses. An empty arm or a zero control rate gives NaN lift,
    p-value and CUPED and significant=False; such a comparison, or one with fewer than
    MIN_ARM_CUSTOMERS in an arm, says why in ``unmeasurable_reason`` ("" where measurable).

    Metrics named in ``continuous`` (revenue per recipient) are numbers, not 0/1: their ``rate``
    is the arm's mean, ``successes`` counts the customers with a positive value (purchasers),
    and the comparison is Welch's t-test with the log-ratio delta interval (`means.py`), a
    normal chance to beat control and the closed-form continuous MDE. ``outcome_sd`` is each
    arm's standard deviation of the outcome (sqrt(p (1 - p)) for a 0/1 metric).
    """
    covariates = dict(covariates or {})
    unknown_metrics = sorted(set(covariates) - set(metrics))
    if unknown_metrics:
        raise ValueError(f"covariates given for unknown metrics {unknown_metrics}")
    _require_columns(outcomes, [ARM_COLUMN], "arm")
    _require_columns(outcomes, list(metrics.values()), "metric")
    _require_columns(outcomes, [c for cols in covariates.values() for c in cols], "covariate")

    arm_order = _arm_order(control, arms)
    control_index = arm_order.index(control)
    treatment_indices = [i for i in range(len(arm_order)) if i != control_index]
    codes = pd.Categorical(outcomes[ARM_COLUMN], categories=arm_order).codes.astype(np.intp)
    analysed = codes >= 0
    analysed_codes = codes[analysed]

    metric_names = list(metrics)
    n_metrics, n_arms = len(metric_names), len(arm_order)
    arm_sizes = np.bincount(analysed_codes, minlength=n_arms).astype(float)
    unknown_continuous = sorted(set(continuous) - set(metrics))
    if unknown_continuous:
        raise ValueError(f"continuous metrics {unknown_continuous} are not among the metrics")
    is_continuous = np.array([name in continuous for name in metric_names], dtype=bool)
    outcome_columns = {
        name: _outcome(outcomes, column, analysed, name in continuous)
        for name, column in metrics.items()
    }
    totals = np.array(
        [np.bincount(analysed_codes, weights=outcome_columns[name][analysed], minlength=n_arms) for name in metric_names]
    ).reshape(n_metrics, n_arms)
    successes = np.array(
        [np.bincount(analysed_codes, weights=outcome_columns[name][analysed] > 0, minlength=n_arms) for name in metric_names]
    ).reshape(n_metrics, n_arms)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(arm_sizes > 0, totals / arm_sizes, np.nan)
    squares = np.array(
        [np.bincount(analysed_codes, weights=(outcome_columns[name][analysed] - np.nan_to_num(rates[row])[analysed_codes]) ** 2,
                     minlength=n_arms) for row, name in enumerate(metric_names)]
    ).reshape(n_metrics, n_arms)
    with np.errstate(divide="ignore", invalid="ignore"):
        outcome_sd = np.sqrt(np.where(arm_sizes > 0, squares / arm_sizes, np.nan))

    # Every (metric, treatment) comparison at once: (n_metrics, n_treatments) arrays; the 0/1
    # metrics' rows from the proportions, the continuous metrics' rows from the means.
    x_c = np.repeat(successes[:, [control_index]], len(treatment_indices), axis=1)
    n_c = np.full(x_c.shape, arm_sizes[control_index])
    x_t = successes[:, treatment_indices]
    n_t = np.broadcast_to(arm_sizes[treatment_indices], x_c.shape)
    comparison = _Comparisons(x_c, n_c, x_t, n_t, rates, outcome_sd, control_index, treatment_indices, is_continuous, alpha)
    n_comparisons = x_c.size

    cuped_columns = ("cuped_rel_lift", "cuped_rel_lift_ci_low", "cuped_rel_lift_ci_high")
    cuped = {column: np.full(x_c.shape, np.nan) for column in cuped_columns}
    for row, name in enumerate(metric_names):
        if not covariates.get(name):
            continue
        values = np.column_stack(
            [outcome_columns[name], _covariate_matrix(outcomes, covariates[name], analysed)]
        )
        moments = group_moments(codes, values, n_arms)
        adjusted = cuped_relative_lift(
            moments.select([control_index] * len(treatment_indices)),
            moments.select(treatment_indices),
            alpha=alpha,
        )
        for column in cuped_columns:
            # Only where the plain lift is defined: an adjusted ratio over a control with no
            # success is the covariates' extrapolation, not a measured lift.
            cuped[column][row] = np.where(np.isnan(comparison.rel_lift[row]), np.nan,
                                          getattr(adjusted, column.removeprefix("cuped_")))

    labels = np.array([("purchases" if name in continuous else f"{name} successes") for name in metric_names], dtype=object)
    reasons = unmeasurable_reasons(np.repeat(labels[:, np.newaxis], x_c.shape[1], axis=1), x_c, n_c, n_t)
    # An unmeasurable comparison is not a member of the Holm family (NaN p-values are not).
    p_value_adjusted = holm_adjust(np.where(reasons == "", comparison.p_value, np.nan).ravel()).reshape(x_c.shape)
    treatment_fields = {
        "abs_lift": comparison.abs_lift,
        "rel_lift": comparison.rel_lift,
        "rel_lift_ci_low": comparison.rel_lift_ci_low,
        "rel_lift_ci_high": comparison.rel_lift_ci_high,
        "p_value": comparison.p_value,
        "p_value_adjusted": p_value_adjusted,
        **cuped,
        "chance_to_beat_control": comparison.chance_to_beat_control,
        "mde": comparison.mde(n_c, n_t, alpha / n_comparisons, power),
    }

    def per_arm(treatment_values: np.ndarray) -> np.ndarray:
        """(n_metrics, n_treatments) -> flat metrics × arms, NaN in the control rows."""
        table = np.full((n_metrics, n_arms), np.nan)
        table[:, treatment_indices] = treatment_values
        return table.ravel()

    result = pd.DataFrame(
        {
            "metric": np.repeat(metric_names, n_arms).astype(object),
            "arm": np.tile(np.array(arm_order, dtype=object), n_metrics),
            "n": np.tile(arm_sizes, n_metrics).astype(np.int64),
            "successes": successes.ravel().astype(np.int64),
            "rate": rates.ravel(),
            "outcome_sd": outcome_sd.ravel(),
            "control_rate": np.repeat(rates[:, control_index], n_arms),
            **{column: per_arm(values) for column, values in treatment_fields.items()},
        }
    )
    reason_table = np.full((n_metrics, n_arms), "", dtype=object)
    reason_table[:, treatment_indices] = reasons
    result["unmeasurable_reason"] = reason_table.ravel()
    result["significant"] = result["p_value_adjusted"] < alpha  # NaN compares False
    return result[RESULT_COLUMNS]


class _Comparisons:
    """The (metrics, treatments) comparison fields, each row from the proportions or the means."""

    def __init__(self, x_c, n_c, x_t, n_t, rates, outcome_sd, control_index, treatment_indices, is_continuous, alpha):
        shape = x_c.shape
        fields = ("abs_lift", "rel_lift", "rel_lift_ci_low", "rel_lift_ci_high", "p_value", "chance_to_beat_control")
        for field in fields:
            setattr(self, field, np.full(shape, np.nan))
        self.control_rate = np.repeat(rates[:, [control_index]], len(treatment_indices), axis=1)
        self._control_sd = np.repeat(outcome_sd[:, [control_index]], len(treatment_indices), axis=1)
        self._is_continuous = np.broadcast_to(is_continuous[:, np.newaxis], shape)
        binary = ~is_continuous
        if binary.any():
            proportions = compare_proportions(x_c[binary], n_c[binary], x_t[binary], n_t[binary], alpha=alpha)
            for field in fields[:-1]:
                getattr(self, field)[binary] = getattr(proportions, field)
            self.chance_to_beat_control[binary] = chance_to_beat_control(x_c[binary], n_c[binary], x_t[binary], n_t[binary])
        if is_continuous.any():
            means = compare_means(self.control_rate[is_continuous], self._control_sd[is_continuous], n_c[is_continuous],
                                  rates[is_continuous][:, treatment_indices], outcome_sd[is_continuous][:, treatment_indices],
                                  n_t[is_continuous], alpha=alpha)
            for field in fields:
                getattr(self, field)[is_continuous] = getattr(means, field)

    def mde(self, n_c, n_t, alpha: float, power: float) -> np.ndarray:
        """The MDE of each comparison at the control's rate (and, for a continuous metric, its spread)."""
        mde = np.full(self.control_rate.shape, np.nan)
        amount, n_c, n_t = self._is_continuous, np.broadcast_to(n_c, mde.shape), np.broadcast_to(n_t, mde.shape)
        if (~amount).any():
            mde[~amount] = minimum_detectable_lift(self.control_rate[~amount], n_c[~amount], n_t[~amount], alpha, power)
        if amount.any():
            mde[amount] = minimum_detectable_lift(self.control_rate[amount], n_c[amount], n_t[amount], alpha, power,
                                                  sd=self._control_sd[amount])
        return mde


def unmeasurable_reasons(label, x_c, n_c, n_t) -> np.ndarray:
    """Per comparison, why it cannot be measured, in plain words ("" where it can), element-wise.
    `label` names what the control must have some of: "<metric> successes", or "purchases"."""
    label, x_c, n_c, n_t = np.broadcast_arrays(np.asarray(label, dtype=object), *(np.asarray(a, dtype=float) for a in (x_c, n_c, n_t)))
    n_c_text, n_t_text, x_c_text = (a.astype(np.int64).astype(str).astype(object) for a in (n_c, n_t, x_c))
    return np.select(
        [n_c == 0, n_t == 0, n_c < MIN_ARM_CUSTOMERS, n_t < MIN_ARM_CUSTOMERS, x_c == 0],
        ["no customers in control", "no customers in this arm", "too few customers in control: " + n_c_text,
         "too few customers in this arm: " + n_t_text,
         "no " + label.astype(str).astype(object) + " in control (" + x_c_text + "/" + n_c_text + "): the relative lift is undefined"],
        default="",
    ).astype(object)
