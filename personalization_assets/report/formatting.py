"""How the report writes numbers: one function per kind of number, so every table shows the same
precision, and a dash wherever a value is missing or not finite. Pure logic: no Dagster import."""

from __future__ import annotations

import math

import pandas as pd

from personalization_assets.campaign.config import CONTINUOUS_METRICS

DASH = "–"
# Features that are fractions, shown as percentages.
RATE_FEATURES = ("historical_open_rate", "historical_click_rate", "gold_share")


def is_finite(value) -> bool:
    """A real, finite number: not None, NaN, NA, infinite or non-numeric."""
    try:
        return value is not None and not pd.isna(value) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def percent(value: float, signed: bool = False, digits: int = 1) -> str:
    if not is_finite(value):
        return DASH
    return f"{value:+.{digits}%}" if signed else f"{value:.{digits}%}"


def metric_value(metric: str, value: float, digits: int = 1) -> str:
    """A metric's per-customer value: a rate in percent, or an amount (revenue per recipient, in
    the export's currency) with two decimals."""
    if metric in CONTINUOUS_METRICS:
        return f"{value:,.2f}" if is_finite(value) else DASH
    return percent(value, digits=digits)


def metric_gain(metric: str, value: float) -> str:
    """A difference of two values of a metric: percentage points, or an amount."""
    if not is_finite(value):
        return DASH
    return f"{value:+,.2f}" if metric in CONTINUOUS_METRICS else f"{value * 100:+.2f} pts"


def metric_gain_interval(metric: str, low: float, high: float) -> str:
    """The interval of a difference of two values of a metric, in `metric_gain`'s unit."""
    if not (is_finite(low) and is_finite(high)):
        return DASH
    return f"[{low:+,.2f}, {high:+,.2f}]" if metric in CONTINUOUS_METRICS else f"[{low * 100:+.2f}, {high * 100:+.2f}] pts"


def chance(value: float) -> str:
    """A posterior probability: never printed as a certain 0% or 100% it is not."""
    if not is_finite(value):
        return DASH
    return ">99.9%" if value > 0.999 else "<0.1%" if value < 0.001 else f"{value:.1%}"


def p_value(value: float) -> str:
    return DASH if not is_finite(value) else (f"{value:.4f}" if value >= 1e-4 else "<0.0001")


def count(value) -> str:
    return DASH if not is_finite(value) else f"{int(value):,}"


def interval(low: float, high: float) -> str:
    """A relative-lift confidence interval, in signed percent."""
    return DASH if not (is_finite(low) and is_finite(high)) else f"[{low:+.1%}, {high:+.1%}]"


def coefficient(value: float, low: float, high: float) -> str:
    """A model coefficient with its confidence interval."""
    return DASH if not is_finite(value) else f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def feature_value(feature: str, value: float) -> str:
    """A customer feature's value (a mean, usually) in that feature's unit."""
    if not is_finite(value):
        return DASH
    if feature in RATE_FEATURES:
        return f"{value:.1%}"
    if feature == "avg_order_value":
        return f"{value:,.2f}"
    if feature == "tier_rank":
        return f"{value:.2f}"
    return f"{value:,.1f}"
