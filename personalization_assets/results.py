"""Assemble a wave's experiment results: every arm against control, overall and per segment."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from personalization_assets.config import CONTROL_ARM, METRIC_COLUMNS, METRIC_COVARIATES, CampaignConfig
from personalization_assets.gates import LiftGate, evaluate_lift_gate
from personalization_assets.stats import RESULT_COLUMNS, analyze_experiment, srm_test

OVERALL = "overall"
RESULTS_COLUMNS = ("wave", "scope", *RESULT_COLUMNS, "engagement_source")


def analysis_frame(assignments: pd.DataFrame, engagement: pd.DataFrame, customer_segments: pd.DataFrame) -> pd.DataFrame:
    """Sent customers with their outcomes and pre-experiment covariates: the analysed population.

    Held-out customers (variant blocked) are excluded from their arm's analysis; they are counted
    separately in the report.
    """
    covariates = ["customer_id", *sorted({c for cols in METRIC_COVARIATES.values() for c in cols})]
    sent = assignments.loc[assignments["sent"].astype(bool), ["customer_id", "segment", "arm"]]
    frame = sent.merge(engagement[["customer_id", *METRIC_COLUMNS.values()]], on="customer_id", how="left", validate="one_to_one")
    frame = frame.merge(customer_segments[covariates], on="customer_id", how="left", validate="one_to_one")
    outcome_columns = list(METRIC_COLUMNS.values())
    frame[outcome_columns] = frame[outcome_columns].fillna(0).astype("int8")
    return frame


def compute_results(frame: pd.DataFrame, config: CampaignConfig, *, wave: str, segments: Sequence[str], source: str) -> pd.DataFrame:
    """One row per (scope, metric, arm), control included; Holm-adjusted within each scope's table."""
    metrics = {m: METRIC_COLUMNS[m] for m in config.metrics}
    covariates = {m: METRIC_COVARIATES[m] for m in config.metrics}
    tables = []
    for scope in (OVERALL, *segments):
        scoped = frame if scope == OVERALL else frame[frame["segment"] == scope]
        table = analyze_experiment(
            scoped, control=CONTROL_ARM, arms=list(config.arms), metrics=metrics, covariates=covariates, alpha=config.alpha
        )
        tables.append(table.assign(scope=scope))
    results = pd.concat(tables, ignore_index=True).assign(wave=wave, engagement_source=source)
    return results[list(RESULTS_COLUMNS)]


def sample_ratio_mismatch(assignments: pd.DataFrame, config: CampaignConfig):
    """SRM over everyone assigned (sent or held): a mismatch means the assignment itself is off."""
    counts = assignments["arm"].astype(str).value_counts()
    return srm_test({arm: int(counts.get(arm, 0)) for arm in config.arms}, dict(config.arm_weights))


def campaign_lift_gate(results: pd.DataFrame, assignments: pd.DataFrame, config: CampaignConfig) -> LiftGate:
    """The campaign's lift gate for one wave, SRM included."""
    srm = sample_ratio_mismatch(assignments, config)
    return evaluate_lift_gate(
        results,
        primary_metric=config.primary_metric,
        minimum_lift=config.minimum_lift,
        alpha=config.alpha,
        srm_p_value=srm.p_value,
        srm_flagged=srm.flagged,
    )
