"""The report's summary tables as data frames: the ones its sections show, and the results view
`cpo run` prints. Pure logic: no Dagster import."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from personalization_assets.campaign.config import CampaignConfig
from personalization_assets.report.formatting import (
    chance,
    interval,
    metric_value,
    p_value,
    percent,
)


def results_display(results: pd.DataFrame, scope: str, metrics: tuple[str, ...]) -> pd.DataFrame:
    """One scope's experiment_results as formatted text, one row per metric and arm."""
    rows = results[(results["scope"] == scope) & (results["metric"].isin(metrics))]
    return pd.DataFrame(
        {
            "metric": rows["metric"],
            "arm": rows["arm"],
            "n": rows["n"],
            "rate": [metric_value(metric, value) for metric, value in zip(rows["metric"], rows["rate"], strict=True)],
            "relative lift": rows["rel_lift"].map(lambda v: percent(v, True)),
            "95% CI": [interval(lo, hi) for lo, hi in zip(rows["rel_lift_ci_low"], rows["rel_lift_ci_high"])],
            "p (Holm)": rows["p_value_adjusted"].map(p_value),
            "significant": rows["significant"].map(lambda s: "yes" if s else "no"),
            "CUPED lift": rows["cuped_rel_lift"].map(lambda v: percent(v, True)),
            "P(beat control)": rows["chance_to_beat_control"].map(chance),
            "MDE": rows["mde"].map(percent),
        }
    )


def design_table(assignments: pd.DataFrame, config: CampaignConfig, expected: Mapping[str, float]) -> pd.DataFrame:
    """Per arm: its weight, the customers expected from it (`expected`: the sample-ratio test's,
    `SrmResult.expected`), assigned, sent and held out. The weight is the expected share of all
    assigned customers: the configured weight, or under weights per segment (an adapted wave) Σ
    over segments of the segment's customers × the arm's weight there, over all customers."""
    counts = assignments.groupby(assignments["arm"].astype(str)).agg(
        assigned=("customer_id", "size"), sent=("sent", "sum")
    )
    weights = dict(config.assignment_weights)  # the no-email holdout too, when the campaign has one
    counts = counts.reindex(list(weights), fill_value=0)
    total = int(counts["assigned"].sum())
    weights = {arm: expected[arm] / total if total else weights[arm] for arm in weights}
    return pd.DataFrame(
        {
            "arm": counts.index,
            "weight": [f"{weights[a]:.0%}" for a in counts.index],
            "expected": [f"{expected[a]:,.1f}" for a in counts.index],
            "assigned": counts["assigned"].astype(int).to_numpy(),
            "sent": counts["sent"].astype(int).to_numpy(),
            "held out": (counts["assigned"] - counts["sent"]).astype(int).to_numpy(),
        }
    )


def cost_summary(variants: pd.DataFrame) -> pd.DataFrame:
    """Per backend and model: variants, calls (distinct generation requests), tokens and cost of
    those calls, cache hits. With a `cache_hit` column, cached rows are not calls; without one,
    cache hits are not recorded."""
    frame = variants.copy()
    keys = ["backend", "model"]
    has_cache = "cache_hit" in frame.columns
    if has_cache:
        frame["cache_hit"] = frame["cache_hit"].fillna(False).astype(bool)
        calls = frame[~frame["cache_hit"]]
    else:
        calls = frame
    # One call per distinct request: the row that carries its usage (repeats of a shared request show 0).
    calls = calls.groupby([*keys, "prompt_sha256"], as_index=False, sort=False)[["input_tokens", "output_tokens", "cost_usd"]].max()
    summary = frame.groupby(keys, sort=True).size().rename("variants").to_frame()
    summary = summary.join(calls.groupby(keys).agg(calls=("prompt_sha256", "size"), input_tokens=("input_tokens", "sum"),
                                                   output_tokens=("output_tokens", "sum"), cost_usd=("cost_usd", "sum")))
    summary = summary.fillna({"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
    if has_cache:
        summary["cache_hits"] = frame.groupby(keys)["cache_hit"].sum().astype(int)
    else:
        summary["cache_hits"] = [
            "n/a (embedded backend)" if str(backend).startswith("local") else "n/a (not recorded)" for backend, _ in summary.index
        ]
    return summary.reset_index()
