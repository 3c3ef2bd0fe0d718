"""Assemble a wave's experiment results: every arm against control, overall and per segment."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr

from personalization_assets.campaign.config import (
    CONTINUOUS_METRICS,
    CONTROL_ARM,
    GUARDRAIL_COLUMNS,
    METRIC_COLUMNS,
    METRIC_COVARIATES,
    NO_EMAIL_ARM,
    REVENUE_METRIC,
    CampaignConfig,
)
from personalization_assets.experiment.allocation import (
    allocation_weights,
    stratified_lift,
)
from personalization_assets.experiment.gates import (
    LiftGate,
    evaluate_lift_gate,
    rollout_recommendations,
)
from personalization_assets.experiment.joins import require_measured
from personalization_assets.stats import RESULT_COLUMNS, analyze_experiment, srm_test
from personalization_assets.stats._normal import normal_interval
from personalization_assets.stats.multiple_testing import holm_adjust
from personalization_assets.stats.proportions import difference_interval
from personalization_assets.stats.sequential import (
    always_valid_p_value,
    relative_confidence_sequence,
)
from personalization_assets.stats.srm import (
    DEFAULT_SRM_THRESHOLD,
    SrmResult,
    presence_chi2,
    stratified_presence_test,
    stratified_srm_test,
)

OVERALL = "overall"
# The scope of every message arm against the no-email holdout (campaigns with one): the email's own effect.
VS_NO_EMAIL = "vs_no_email"
# What the email can change without being opened: the metrics compared with the no-email holdout
# (revenue per recipient too, when the campaign measures it).
INCREMENTAL_METRICS = ("conversion_rate",)
SEQUENTIAL_COLUMNS = ("always_valid_p_value", "cs_rel_lift_low", "cs_rel_lift_high")
GUARDRAIL_RESULT_COLUMNS = ("guardrail_margin", "guardrail_lower", "guardrail_upper")
RESULTS_COLUMNS = ("wave", "scope", *RESULT_COLUMNS, *SEQUENTIAL_COLUMNS, *GUARDRAIL_RESULT_COLUMNS, "engagement_rows", "engagement_source")
# Where the always-valid test is most sensitive when the campaign sets no minimum lift.
DEFAULT_SEQUENTIAL_LIFT = 0.10


def compute_results(frame: pd.DataFrame, config: CampaignConfig, *, wave: str, segments: Sequence[str], source: str,
                    arms: Sequence[str] | None = None, stratify: bool = False) -> pd.DataFrame:
    """One row per (scope, metric, arm), control included; Holm-adjusted within each scope's table.
    `arms` (control first) are the campaign's arms unless given (a rollout against its holdout).

    `stratify`: the wave's arm weights differed between segments (`allocation: thompson`,
    `weights_vary`), so the comparisons over several segments (overall, vs_no_email, the
    guardrails) are stratified by segment (`stratified_table`); within one segment the weights
    were fixed and its comparisons are as with fixed weights."""
    arms = tuple(arms or config.arm_names)
    require_measured(frame, config)
    metrics = {m: METRIC_COLUMNS[m] for m in config.metrics.all}

    def analyse(scoped: pd.DataFrame) -> pd.DataFrame:
        return analyze_experiment(scoped, control=CONTROL_ARM, arms=list(arms), metrics=metrics,
                                  covariates={m: METRIC_COVARIATES[m] for m in metrics}, alpha=config.alpha,
                                  continuous=continuous_metrics(metrics))

    parts = split_by_segment(frame, segments)
    strata = parts if stratify else None
    segment_tables = [analyse(part) for part in parts]
    overall = analyse(frame)
    if strata is not None:
        overall, _ = stratified_table(overall, segment_tables, [len(part) for part in parts], CONTROL_ARM, config.alpha)
    tables = []
    for scope, scoped, table in ((OVERALL, frame, overall), *zip(segments, parts, segment_tables, strict=True)):
        table = pd.concat([table, *guardrail_rows(scoped, config, arms, strata if scope == OVERALL else None)], ignore_index=True)
        table = table.assign(**{column: table[column] if column in table else np.nan for column in GUARDRAIL_RESULT_COLUMNS})
        tables.append(table.assign(scope=scope, engagement_rows=engagement_rows(scoped, table, arms)))
    if arms == tuple(config.arm_names) and config.no_email_share > 0:
        tables.append(incremental_table(frame, config, arms, strata))
    results = pd.concat(tables, ignore_index=True).assign(wave=wave, engagement_source=source)
    results = add_sequential_columns(results, config.minimum_lift or DEFAULT_SEQUENTIAL_LIFT, config.alpha)
    if strata is not None:
        # The always-valid test reads one randomized sample; over segments of different weights it
        # is not one, so it is given per segment only.
        pooled = results["scope"].isin([OVERALL, VS_NO_EMAIL]).to_numpy()
        results.loc[pooled, list(SEQUENTIAL_COLUMNS)] = np.nan
    return results[list(RESULTS_COLUMNS)]


def weights_vary(allocation: pd.DataFrame | None) -> bool:
    """Whether a wave's `arm_allocation` gave the segments different weights (an adapted wave)."""
    if allocation is None or not len(allocation):
        return False
    grid = allocation.pivot(index="segment", columns="arm", values="weight").to_numpy(dtype=float)
    return not np.allclose(grid, grid[0])


def split_by_segment(frame: pd.DataFrame, segments: Sequence[str]) -> list[pd.DataFrame]:
    """Each segment's rows of `frame`, in `segments` order, found once from integer codes (not one
    text comparison per segment)."""
    codes = pd.Categorical(frame["segment"], categories=list(segments)).codes
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(segments) + 1))
    return [frame.take(order[bounds[position]:bounds[position + 1]]) for position in range(len(segments))]


def stratified_table(pooled: pd.DataFrame, strata_tables: Sequence[pd.DataFrame], stratum_sizes: Sequence[float], baseline: str,
                     alpha: float) -> tuple[pd.DataFrame, np.ndarray]:
    """An `analyze_experiment` table of customers from several strata, each randomized with its own
    weights (a segment's under adaptive allocation), with its comparisons post-stratified
    (`allocation.stratified_lift`): each arm's rate is the strata's rates weighted by the strata's
    shares of the customers, and every lift, interval, p-value (Holm-adjusted over the table's
    comparisons, as `analyze_experiment` does) and chance to beat `baseline` (normal) follows from
    those. `strata_tables` are the same comparisons within each stratum. Counts, spreads, MDE and
    unmeasurable reasons stay the pooled ones'. CUPED is not stratified: its columns are NaN here
    (each segment's own rows keep theirs). Also returns each row's standard error of the
    difference (NaN on the baseline rows)."""
    def stacked(column: str) -> np.ndarray:
        return np.column_stack([np.nan_to_num(table[column].to_numpy(dtype=float)) for table in strata_tables])

    n, mean, sd = stacked("n"), stacked("rate"), stacked("outcome_sd")
    baseline_rows = (pooled["arm"] == baseline).to_numpy()
    base = pooled["metric"].map(dict(zip(pooled.loc[baseline_rows, "metric"], np.flatnonzero(baseline_rows), strict=True))).to_numpy()
    lift = stratified_lift(n[base], mean[base], sd[base], n, mean, sd, np.asarray(stratum_sizes, dtype=float), alpha)
    treatment = ~baseline_rows

    def compared(values: np.ndarray) -> np.ndarray:
        return np.where(treatment, values, np.nan)

    p_value = compared(lift.p_value)
    measurable = treatment & (pooled["unmeasurable_reason"] == "").to_numpy()
    p_value_adjusted = holm_adjust(np.where(measurable, p_value, np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        chance = ndtr(lift.difference / lift.difference_se)
    table = pooled.assign(
        rate=lift.treatment_mean,  # a baseline row is compared with itself: its own stratified rate
        control_rate=np.where(treatment, lift.control_mean, lift.treatment_mean),
        abs_lift=compared(lift.difference), rel_lift=compared(lift.rel_lift),
        rel_lift_ci_low=compared(lift.ci_low), rel_lift_ci_high=compared(lift.ci_high),
        p_value=p_value, p_value_adjusted=p_value_adjusted, significant=p_value_adjusted < alpha,
        cuped_rel_lift=np.nan, cuped_rel_lift_ci_low=np.nan, cuped_rel_lift_ci_high=np.nan,
        chance_to_beat_control=compared(chance),
    )
    return table, compared(lift.difference_se)


def incremental_table(frame: pd.DataFrame, config: CampaignConfig, arms: Sequence[str],
                      strata: Sequence[pd.DataFrame] | None = None) -> pd.DataFrame:
    """Every message arm (control included) against the no-email holdout, over the whole test, on
    the metrics an email can move without being opened (INCREMENTAL_METRICS): scope VS_NO_EMAIL,
    its own Holm family; stratified over `strata` when given (`stratified_table`)."""
    incremental = incremental_metrics(config)

    def analyse(part: pd.DataFrame) -> pd.DataFrame:
        return analyze_experiment(part, control=NO_EMAIL_ARM, arms=[NO_EMAIL_ARM, *arms],
                                  metrics={m: METRIC_COLUMNS[m] for m in incremental},
                                  covariates={m: METRIC_COVARIATES[m] for m in incremental}, alpha=config.alpha,
                                  continuous=continuous_metrics(incremental))

    table = analyse(frame)
    if strata is not None:
        table, _ = stratified_table(table, [analyse(part) for part in strata], [len(part) for part in strata], NO_EMAIL_ARM,
                                    config.alpha)
    return table.assign(scope=VS_NO_EMAIL, engagement_rows=engagement_rows(frame, table, [NO_EMAIL_ARM, *arms]),
                        **{column: np.nan for column in GUARDRAIL_RESULT_COLUMNS})


def incremental_metrics(config: CampaignConfig) -> tuple[str, ...]:
    """The metrics compared with the no-email holdout: INCREMENTAL_METRICS, and revenue per
    recipient when the campaign measures it."""
    return (*INCREMENTAL_METRICS, *((REVENUE_METRIC,) if REVENUE_METRIC in config.metrics.all else ()))


def continuous_metrics(metrics) -> tuple[str, ...]:
    """Which of `metrics` are amounts (compared by their means), not 0/1 outcomes."""
    return tuple(metric for metric in metrics if metric in CONTINUOUS_METRICS)


def engagement_rows(frame: pd.DataFrame, table: pd.DataFrame, arms: Sequence[str]) -> np.ndarray:
    """For each row of a results `table`, how many of its arm's customers in `frame` the
    engagement export listed (`in_export`)."""
    arm_codes = pd.Categorical(frame["arm"], categories=list(arms)).codes
    listed = np.bincount(arm_codes[arm_codes >= 0], weights=frame["in_export"].to_numpy(dtype=float)[arm_codes >= 0], minlength=len(arms))
    return table["arm"].map(dict(zip(arms, listed.astype(np.int64), strict=True))).astype(np.int64).to_numpy()


def guardrail_rows(frame: pd.DataFrame, config: CampaignConfig, arms: Sequence[str],
                   strata: Sequence[pd.DataFrame] | None = None) -> list[pd.DataFrame]:
    """The guardrail metrics that were measured (their export columns present), every arm against
    control as its own Holm family (they never change the tones' adjusted p-values), with each
    comparison's non-inferiority margin and the one-sided (1 - alpha) bounds of the arm's rate
    minus control's (Newcombe's interval at 1 - 2 alpha): the rule on them is `gates.guardrail_failures`.
    Over `strata` (adaptive allocation) the rates and bounds are stratified (`stratified_table`),
    the bounds the normal ones of the stratified difference, each arm's spread from its rate over
    all segments with one added event and non-event (`agresti_caffo_rate`)."""
    margins = {metric: margin for metric, margin in config.guardrails.margins.items() if frame[GUARDRAIL_COLUMNS[metric]].notna().any()}
    if not margins:
        return []
    measured_columns = [GUARDRAIL_COLUMNS[m] for m in margins]

    def analyse(part: pd.DataFrame) -> pd.DataFrame:
        measured = part.loc[part[measured_columns].notna().all(axis=1).to_numpy()]
        return analyze_experiment(measured, control=CONTROL_ARM, arms=list(arms), metrics={m: GUARDRAIL_COLUMNS[m] for m in margins},
                                  alpha=config.alpha)

    table = analyse(frame)
    if strata is None:
        control = table[table["arm"] == CONTROL_ARM].set_index("metric")
        x_c, n_c = table["metric"].map(control["successes"]).to_numpy(), table["metric"].map(control["n"]).to_numpy()
        lower, upper = difference_interval(x_c, n_c, table["successes"].to_numpy(), table["n"].to_numpy(), alpha=2 * config.alpha)
    else:
        sizes = [int(part[measured_columns].notna().all(axis=1).sum()) for part in strata]
        # Guardrail events are rare: a segment's arm without any has a spread of 0, and one with
        # none anywhere would read as a difference of exactly 0 with no doubt, "within the margin".
        # Each arm's spread in every segment is its rate over all segments with one added event
        # and non-event (Agresti and Caffo's adjustment), never 0.
        spread = np.sqrt(agresti_caffo_rate(table) * (1 - agresti_caffo_rate(table))).to_numpy()
        strata_tables = [part_table.assign(outcome_sd=spread) for part_table in map(analyse, strata)]
        table, difference_se = stratified_table(table, strata_tables, sizes, CONTROL_ARM, config.alpha)
        lower, upper = normal_interval(table["abs_lift"].to_numpy(dtype=float), difference_se, 2 * config.alpha)
    treatment = (table["arm"] != CONTROL_ARM).to_numpy()
    return [table.assign(guardrail_margin=np.where(treatment, table["metric"].map(margins).to_numpy(dtype=float), np.nan),
                         guardrail_lower=np.where(treatment, lower, np.nan), guardrail_upper=np.where(treatment, upper, np.nan))]


def agresti_caffo_rate(table: pd.DataFrame) -> pd.Series:
    """Each row's rate with one added success and failure, (successes + 1) / (n + 2)."""
    return (table["successes"] + 1) / (table["n"] + 2)


def add_sequential_columns(results: pd.DataFrame, minimum_lift: float, alpha: float) -> pd.DataFrame:
    """Always-valid p-value and confidence sequence per comparison, for reading results as they
    arrive (stats/sequential.py); control rows get NaN like the other comparison columns."""
    baseline = (results["arm"] == np.where(results["scope"] == VS_NO_EMAIL, NO_EMAIL_ARM, CONTROL_ARM)).to_numpy()
    control = results.loc[baseline].set_index(["scope", "metric"])
    keys = pd.MultiIndex.from_frame(results[["scope", "metric"]])
    n_c = keys.map(control["n"].to_dict()).to_numpy(dtype=float)
    sd_c = keys.map(control["outcome_sd"].to_dict()).to_numpy(dtype=float)
    tau = minimum_lift * results["control_rate"].to_numpy(dtype=float)
    args = (results["rate"], results["n"], results["control_rate"], n_c, tau)
    spreads = {"sd_t": results["outcome_sd"].to_numpy(dtype=float), "sd_c": sd_c}
    treatment = ~baseline
    low, high = relative_confidence_sequence(*args, alpha=alpha, **spreads)
    return results.assign(
        always_valid_p_value=np.where(treatment, always_valid_p_value(*args, **spreads), np.nan),
        cs_rel_lift_low=np.where(treatment, low, np.nan),
        cs_rel_lift_high=np.where(treatment, high, np.nan),
    )


def sample_ratio_mismatch(assignments: pd.DataFrame, config: CampaignConfig, allocation: pd.DataFrame | None = None) -> SrmResult:
    """SRM over everyone assigned (sent or held): a mismatch means the assignment itself is off.
    Against the wave's `allocation` (`arm_allocation`: weights per segment) when given, which
    `allocation: thompson` needs: where the segments' weights differ, each segment is tested
    against its own (`stats/srm.stratified_srm_test`); where they are all the same, the arm counts
    against them."""
    weights = config.assignment_weights  # the no-email holdout is assigned too
    arms = list(weights)
    if allocation is None and config.allocation == "thompson":
        raise ValueError("allocation: thompson sets weights per segment and wave: pass the wave's arm_allocation")
    if allocation is not None and not len(allocation):
        raise ValueError("the wave's arm_allocation has no weights: materialize arm_allocation and assignments for it "
                         "(cpo run --wave W) before its results")
    segments = [] if allocation is None else list(pd.unique(allocation["segment"]))
    grid = None if allocation is None else allocation_weights(allocation, segments, arms)
    if not weights_vary(allocation):
        counts = pd.Series(assignments["arm"]).value_counts()
        counts.index = counts.index.astype(str)
        shares = dict(weights) if grid is None else dict(zip(arms, grid[0], strict=True))
        return srm_test({arm: int(counts.get(arm, 0)) for arm in arms}, shares)
    segment_codes = pd.Categorical(assignments["segment"], categories=segments).codes.astype(np.intp)
    arm_codes = pd.Categorical(assignments["arm"], categories=arms).codes.astype(np.intp)
    if (segment_codes < 0).any() or (arm_codes < 0).any():
        unknown = sorted(set(assignments["arm"].astype(str)) - set(arms)) or sorted(set(assignments["segment"].astype(str)) - set(segments))
        raise ValueError(f"assignments hold arms or segments {unknown} that the wave's arm_allocation has no weight for")
    counts = np.bincount(segment_codes * len(arms) + arm_codes, minlength=len(segments) * len(arms)).reshape(len(segments), len(arms))
    return stratified_srm_test(counts, grid, arms)


def engagement_mismatch(results: pd.DataFrame, config: CampaignConfig, by_segment: bool = False) -> SrmResult:
    """SRM over what is analysed: engagement rows listed per arm against sent per arm, overall
    (`stats/srm.presence_chi2`). A mismatch means the export lost rows unevenly between arms,
    and those customers were read as non-openers. With a no-email holdout, its customers' rows are
    counted too (an export that leaves them out reads as a holdout that never converts).
    `expected` holds each arm's listed count if every arm lost rows at the same rate.
    `by_segment` (a wave whose weights differed between segments, where the arms' mixes of
    segments differ): each segment's test, summed (chi-squares and degrees of freedom), so rows
    lost more in one segment than another are not read as lost by arm."""
    if config.engagement.lists == "customers_with_events":
        # A missing row is a customer without events: its absence says nothing about lost rows.
        return SrmResult(chi2=math.nan, p_value=math.nan, flagged=False, expected={}, observed={})
    rows = results[(results["scope"] == OVERALL) & (results["metric"] == config.metrics.primary)].set_index("arm")
    rows = rows.reindex(list(config.arm_names)).fillna({"n": 0, "engagement_rows": 0})
    if config.no_email_share > 0:  # the holdout's conversions must be listed too, or its rate reads as zero
        holdout = results[(results["scope"] == VS_NO_EMAIL) & (results["arm"] == NO_EMAIL_ARM)
                          & (results["metric"] == INCREMENTAL_METRICS[0])].set_index("arm")
        rows = pd.concat([rows, holdout.reindex([NO_EMAIL_ARM]).fillna({"n": 0, "engagement_rows": 0})])
    sent, listed = rows["n"].to_numpy(dtype=float), rows["engagement_rows"].to_numpy(dtype=float)
    statistic, p_value = (float(v) for v in presence_chi2(listed, sent))
    if by_segment:
        # The message arms' rows per segment, from the primary metric's segment rows. The no-email
        # holdout has no segment rows, so its listed rows are not part of this sum.
        scoped = results[~results["scope"].isin([OVERALL, VS_NO_EMAIL]) & (results["metric"] == config.metrics.primary)]
        sent_grid = scoped.pivot(index="scope", columns="arm", values="n").reindex(columns=list(config.arm_names)).fillna(0)
        listed_grid = scoped.pivot(index="scope", columns="arm", values="engagement_rows").reindex_like(sent_grid).fillna(0)
        statistic, p_value = stratified_presence_test(listed_grid.to_numpy(dtype=float), sent_grid.to_numpy(dtype=float))
    share = listed.sum() / sent.sum() if sent.sum() else 1.0
    return SrmResult(chi2=statistic, p_value=p_value, flagged=p_value < DEFAULT_SRM_THRESHOLD,
                     expected={arm: float(n * share) for arm, n in zip(rows.index, sent, strict=True)},
                     observed={arm: int(n) for arm, n in zip(rows.index, listed, strict=True)})


def campaign_lift_gate(results: pd.DataFrame, assignments: pd.DataFrame, config: CampaignConfig,
                       allocation: pd.DataFrame | None = None) -> LiftGate:
    """The campaign's lift gate for one wave: both sample-ratio checks included (assigned
    customers per arm against the wave's weights, `allocation` as `sample_ratio_mismatch` reads
    it, and engagement rows per arm against sent)."""
    srm = sample_ratio_mismatch(assignments, config, allocation)
    lost = engagement_mismatch(results, config, by_segment=weights_vary(allocation))
    return evaluate_lift_gate(
        results,
        primary_metric=config.metrics.primary,
        minimum_lift=config.minimum_lift,
        alpha=config.alpha,
        srm_p_value=srm.p_value,
        srm_flagged=srm.flagged,
        engagement_mismatch=lost,
    )


def campaign_rollout(
    results: pd.DataFrame, assignments: pd.DataFrame, config: CampaignConfig, scopes: list[str], allocation: pd.DataFrame | None = None
) -> tuple[LiftGate, pd.DataFrame]:
    """The campaign's lift gate and each scope's own recommendation (before the gate applies)."""
    own = rollout_recommendations(
        results, scopes=scopes, primary_metric=config.metrics.primary, minimum_lift=config.minimum_lift, alpha=config.alpha
    )
    return campaign_lift_gate(results, assignments, config, allocation), own


def gated_rollout(own: pd.DataFrame, gate: LiftGate) -> pd.DataFrame:
    """What is rolled out: nothing anywhere when the campaign-level gate fails, whatever a segment shows."""
    if gate.passed:
        return own
    return own.assign(recommended_arm=CONTROL_ARM, has_reliable_winner=False, reason="lift gate not passed: " + "; ".join(gate.failures))


def gated_winners(frame: pd.DataFrame, config: CampaignConfig, segment_ids: Sequence[str], srm: SrmResult) -> dict[str, str]:
    """Each segment's `winner`-policy arm on an analysis frame (the learning part of a test): the
    campaign's lift gate and each segment's own recommendation, as the wave applies them, then
    `winner_by_segment`. `srm` is the wave's own sample-ratio test, on everyone it assigned (a part
    of the sent customers is not an assignment to test again): flagged, nothing wins."""
    scopes = result_scopes(segment_ids, pd.unique(frame["segment"]))
    results = compute_results(frame, config, wave="", segments=scopes[1:], source="")
    own = rollout_recommendations(results, scopes=scopes, primary_metric=config.metrics.primary, minimum_lift=config.minimum_lift,
                                  alpha=config.alpha)
    gate = evaluate_lift_gate(results, primary_metric=config.metrics.primary, minimum_lift=config.minimum_lift, alpha=config.alpha,
                              srm_p_value=srm.p_value, srm_flagged=srm.flagged, engagement_mismatch=engagement_mismatch(results, config))
    return winner_by_segment(gated_rollout(own, gate), segment_ids)


def winner_by_segment(rollout: pd.DataFrame, segment_ids: Sequence[str]) -> dict[str, str]:
    """The `winner` policy's arm per segment from a gated rollout table (`gated_rollout`): the
    segment's own reliable winner; else, where the campaign-level gate passed, the overall winner
    (a segment too small to show its own is not sent the generic message for that alone); else control."""
    table = rollout.set_index("scope")
    overall = str(table.loc[OVERALL, "recommended_arm"]) if OVERALL in table.index else CONTROL_ARM
    return {segment: (str(table.loc[segment, "recommended_arm"]) if segment in table.index and bool(table.loc[segment, "has_reliable_winner"])
                      else overall) for segment in segment_ids}


def result_scopes(segment_ids: Sequence[str], present: Iterable[str]) -> list[str]:
    """The scopes a wave is analysed and reported in: overall first, then each catalog segment that
    has customers in the wave, in catalog order."""
    present = set(present)
    return [OVERALL, *(segment for segment in segment_ids if segment in present)]
