"""The report's sections, each built from the wave's tables: executive summary, design, results,
safety and quality, cost, and caveats with provenance. Every number is computed from the tables
passed in, none typed in. (The explainability section, which fits models, is in
`explainability.py`.) Pure logic: no Dagster import."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from personalization_assets.audience.eligibility import hold_explanation
from personalization_assets.campaign.config import (
    CONTROL_ARM,
    GUARDRAIL_COLUMNS,
    METRIC_COVARIATES,
    NO_EMAIL_ARM,
    REVENUE_METRIC,
    CampaignConfig,
)
from personalization_assets.experiment.gates import guardrail_verdict
from personalization_assets.experiment.results import (
    OVERALL,
    VS_NO_EMAIL,
    engagement_mismatch,
    incremental_metrics,
    sample_ratio_mismatch,
    weights_vary,
)
from personalization_assets.report.charts import Estimate, ForestRow, forest_plot
from personalization_assets.report.formatting import (
    DASH,
    chance,
    count,
    interval,
    is_finite,
    metric_value,
    p_value,
    percent,
)
from personalization_assets.report.model import (
    Block,
    Bullets,
    Chart,
    Para,
    ReportInputs,
    Section,
    Subhead,
    Table,
)
from personalization_assets.report.tables import cost_summary, design_table
from personalization_assets.report.verdicts import Verdict
from personalization_assets.safety.gate import SafetyGate, evaluate_safety_gate
from personalization_assets.stats import SrmResult

HOLD_EXPLANATIONS = {
    "variant_rejected": "a reviewer rejected the exact text written for the customer's segment and arm; the customer is "
    "sent nothing rather than another message, and is left out of the analysis",
    "variant_blocked": "the variant written for the customer's segment and arm was blocked by screening; "
    "the customer is sent nothing rather than another message, and is left out of the analysis",
    "no_email_holdout": "the customer is in the randomized no-email holdout: sent nothing on purpose, and measured, so the "
    "email's incremental effect on conversions can be estimated",
}


RESULT_COLUMNS_VIEW = (
    # header, data-col key
    ("metric", "metric"),
    ("arm", "arm"),
    ("n", "n"),
    ("successes", "successes"),
    ("rate", "rate"),
    ("relative lift", "rel_lift"),
    ("95% CI", "rel_lift_ci"),
    ("CUPED lift", "cuped_rel_lift"),
    ("CUPED 95% CI", "cuped_rel_lift_ci"),
    ("p", "p_value"),
    ("p (Holm)", "p_value_adjusted"),
    ("significant", "significant"),
    ("P(beat control)", "chance_to_beat_control"),
    ("MDE", "mde"),
)


def results_table(results: pd.DataFrame, scope: str, metrics: Sequence[str], key: str, baseline: str = CONTROL_ARM) -> Table:
    """Every metric × arm row of one scope's experiment_results, significant lifts shaded; the
    `baseline` arm (control, or the no-email holdout) is the one the others are compared with."""
    rows = results[(results["scope"] == scope) & (results["metric"].isin(list(metrics)))]
    order = {m: i for i, m in enumerate(metrics)}
    rows = rows.assign(_order=rows["metric"].map(order)).sort_values("_order", kind="stable")
    body, attrs, fills = [], [], []
    previous_metric = None
    for r in rows.itertuples(index=False):
        control = r.arm == baseline
        cells = [
            "" if r.metric == previous_metric else r.metric,  # the metric once per group; data-metric on every row
            r.arm,
            count(r.n),
            count(r.successes),
            metric_value(r.metric, r.rate),
            baseline if control else percent(r.rel_lift, True),
            DASH if control else interval(r.rel_lift_ci_low, r.rel_lift_ci_high),
            DASH if control else percent(r.cuped_rel_lift, True),
            DASH if control else interval(r.cuped_rel_lift_ci_low, r.cuped_rel_lift_ci_high),
            DASH if control else p_value(r.p_value),
            DASH if control else p_value(r.p_value_adjusted),
            DASH if control else ("yes" if r.significant else f"n/a: {r.unmeasurable_reason}" if r.unmeasurable_reason else "no"),
            DASH if control else chance(r.chance_to_beat_control),
            DASH if control else percent(r.mde),
        ]
        previous_metric = r.metric
        body.append(cells)
        attrs.append({"scope": scope, "metric": str(r.metric), "arm": str(r.arm)})
        colour = None if control or not r.significant else ("#e3f4ec" if r.rel_lift > 0 else "#fde8e8")
        fills.append([colour] * len(cells))
    return Table(key, [h for h, _ in RESULT_COLUMNS_VIEW], body, left=(0, 1),
                 col_keys=[k for _, k in RESULT_COLUMNS_VIEW], row_attrs=attrs, fills=fills)


def forest_rows(results: pd.DataFrame, groups: Sequence[tuple[str, str, str]]) -> list[ForestRow]:
    """groups: (group label, scope, metric); one row per treatment arm of each."""
    rows = []
    for label, scope, metric in groups:
        part = results[(results["scope"] == scope) & (results["metric"] == metric) & (results["arm"] != CONTROL_ARM)]
        for r in part.itertuples(index=False):
            estimates = [Estimate("raw", r.rel_lift, r.rel_lift_ci_low, r.rel_lift_ci_high, bool(r.significant))]
            if is_finite(r.cuped_rel_lift):
                estimates.append(Estimate("CUPED", r.cuped_rel_lift, r.cuped_rel_lift_ci_low, r.cuped_rel_lift_ci_high))
            rows.append(ForestRow(label, str(r.arm), tuple(estimates)))
    return rows


def evidence(v: Verdict, metric: str) -> str:
    """The best arm's lift, interval, adjusted p and chance to beat control, as one phrase."""
    if v.row is None:
        return "no treatment arm has data"
    r = v.row
    return (f"{metric} {percent(r['rel_lift'], True)} {interval(r['rel_lift_ci_low'], r['rel_lift_ci_high'])}, "
            f"Holm-adjusted p {p_value(r['p_value_adjusted'])}, chance to beat control {chance(r['chance_to_beat_control'])}")


def summary_section(inputs: ReportInputs, verdicts: list[Verdict], segment_names: dict[str, str]) -> tuple[Section, str]:
    """The verdict overall and per segment; also the report's one-line headline."""
    config = inputs.config
    metric = config.metrics.primary
    overall = verdicts[0]
    if overall.winner:
        headline = f"Winner overall: {overall.winner}, {evidence(overall, metric)}."
        lead = Para(f"**Winner overall: {overall.winner}.** {evidence(overall, metric)}: it reaches the "
                    f"{percent(config.minimum_lift, True)} target lift, is significant after Holm adjustment, "
                    "and the arm sizes show no sample-ratio mismatch.", "good")
    else:
        best = f" The best tone was {overall.best_arm}: {evidence(overall, metric)}." if overall.row is not None else ""
        headline = f"No reliable winner overall: {overall.reason}."
        lead = Para(f"**No reliable winner.**{best} Why: {overall.reason}. "
                    f"Keep sending the control message; no tone is recommended for rollout.", "bad")
    segment_winners = [v for v in verdicts[1:] if v.winner]
    segment_line = (
        "Segments with a reliable winner: " + ", ".join(f"{segment_names.get(v.scope, v.scope)} → {v.winner}" for v in segment_winners) + "."
        if segment_winners else "No segment has a reliable winner."
    )
    columns = ["scope", "sent", "verdict", "best arm", "relative lift", "95% CI", "p (Holm)", "P(beat control)", "MDE", "why"]
    col_keys = ["scope", "n", "verdict", "best_arm", "rel_lift", "rel_lift_ci", "p_value_adjusted", "chance_to_beat_control", "mde", "reason"]
    rows, attrs, fills = [], [], []
    for v in verdicts:
        r = v.row
        rows.append([
            segment_names.get(v.scope, v.scope),
            count(v.sent),
            f"winner: {v.winner}" if v.winner else "no reliable winner",
            v.best_arm or DASH,
            DASH if r is None else percent(r["rel_lift"], True),
            DASH if r is None else interval(r["rel_lift_ci_low"], r["rel_lift_ci_high"]),
            DASH if r is None else p_value(r["p_value_adjusted"]),
            DASH if r is None else chance(r["chance_to_beat_control"]),
            DASH if r is None else percent(r["mde"]),
            v.reason,
        ])
        attrs.append({"scope": v.scope, "metric": metric, "arm": v.best_arm or ""})
        fills.append([None, None, "#e3f4ec" if v.winner else "#fdf1e3", *([None] * 7)])
    blocks = [
        lead,
        Para(segment_line),
        Table("summary", columns, rows, left=(0, 2, 3, 9), col_keys=col_keys, row_attrs=attrs, fills=fills,
              caption=f"Primary metric {metric}; best tone per scope against control. A tone wins when its lift reaches "
                      f"{percent(config.minimum_lift, True)}, its Holm-adjusted p < {config.alpha:g}, and the overall arm sizes pass "
                      "the sample-ratio-mismatch test."),
        Para("Segments are analysed one by one with no correction across segments: a segment-only result is a lead "
             "to confirm, not a finding (see Caveats).", "note"),
    ]
    return Section("summary", "Executive summary", blocks), headline


def allocation_blocks(allocation: pd.DataFrame, config, segment_names: dict[str, str]) -> list:
    """Adaptive allocation's table: per segment, each arm's weight this wave and, for the tones, the
    earlier waves' customers and the posterior chance of being the best tone."""
    arms = list(config.assignment_weights)
    rows, attrs = [], []
    for segment, part in allocation.groupby("segment", sort=False):
        part = part.set_index("arm")
        cells = [segment_names.get(segment, segment)]
        for arm in arms:
            weight, seen, chance_best = part.loc[arm, "weight"], part.loc[arm, "exposures"], part.loc[arm, "chance_best"]
            detail = [f"{count(int(seen))} earlier"] if is_finite(seen) else []
            detail += [f"P(best) {chance(chance_best)}"] if is_finite(chance_best) else []
            cells.append(f"{weight:.0%}" + (f" ({'; '.join(detail)})" if detail else ""))
        cells.append("adapted" if bool(part["adapted"].iloc[0]) else f"configured (a tone has < {config.thompson.min_exposures:,} earlier customers)")
        rows.append(cells)
        attrs.append({"segment": segment})
    floor = percent(config.thompson.floor)
    return [
        Subhead("Adaptive allocation (Thompson sampling)"),
        Table("allocation", ["segment", *arms, "weights"], rows, col_keys=["segment", *arms, "weights"], row_attrs=attrs,
              caption=f"Each tone keeps at least {floor} of a segment; control{' and no_email' if config.no_email_share else ''} "
                      "keep their configured shares; the rest goes to the tones in proportion to the posterior probability, given "
                      "the earlier waves' results, that each is the segment's best tone. "
                      + ("Because the weights differ between segments, the overall comparisons of this wave are stratified by "
                         "segment (each segment's rates weighted by its share of the analysed customers); the overall CUPED and "
                         "always-valid columns are given per segment only." if weights_vary(allocation) else
                         "No segment's weights differ from the others' this wave, so its comparisons are those of fixed weights.")),
    ]


def design_section(inputs: ReportInputs, segment_names: dict[str, str]) -> tuple[Section, SrmResult]:
    """How customers were assigned, the sample-ratio test, who was held out; also the test's result."""
    config, assignments = inputs.config, inputs.assignments
    adaptive = inputs.allocation is not None and bool((inputs.allocation["allocation"] == "thompson").any())
    srm = sample_ratio_mismatch(assignments, config, inputs.allocation)
    arms = design_table(assignments, config, srm.expected)
    tones = [a for a in config.arm_names if a != CONTROL_ARM]
    how = ("by a deterministic hash of (experiment id, wave, customer id) into the segment's weights for this wave, which "
           "Thompson sampling set from the earlier waves' results (table below)" if adaptive else
           "by a deterministic hash of (experiment id, customer id) into the weighted arms, within each segment")
    blocks = [
        Para(f"Experiment **{config.experiment_id}**: every customer is assigned to an arm {how}; the control arm gets the generic "
             f"message, each tone arm ({', '.join(tones)}) the message written for the customer's segment in that tone. "
             f"Primary metric {config.metrics.primary}; secondary {', '.join(config.metrics.all[1:]) or 'none'}; "
             f"alpha {config.alpha:g}; target lift {percent(config.minimum_lift, True)}."),
        Table("arms", list(arms.columns), [[str(v) if not isinstance(v, (int, np.integer)) else count(v) for v in row]
                                           for row in arms.itertuples(index=False)],
              col_keys=["arm", "weight", "expected", "assigned", "sent", "held_out"],
              row_attrs=[{"arm": a} for a in arms["arm"]],
              caption=("Expected = Σ over segments of the segment's customers × the arm's weight there; weight = expected / all "
                       "assigned. " if adaptive else "Expected = customers assigned × weight. ")
                      + "Held-out customers are counted in the sample-ratio test (it checks the assignment itself) but not in the results."),
    ]
    if adaptive and inputs.allocation is not None:
        blocks.extend(allocation_blocks(inputs.allocation, config, segment_names))
    against = "each segment's own weights, summed over segments" if weights_vary(inputs.allocation) else "the weights"
    srm_text = (f"Sample-ratio mismatch test (chi-square of assigned customers per arm against {against}, df {srm.degrees_of_freedom}): "
                f"chi² = {srm.chi2:.2f}, p = {p_value(srm.p_value)}: ")
    blocks.append(Para(srm_text + ("**FLAGGED** (p < 0.001): the assignment or the data lost or duplicated customers in some "
                                   "arm; do not trust this wave's lifts." if srm.flagged else "no mismatch."),
                       "bad" if srm.flagged else "good"))
    lost = engagement_mismatch(inputs.results, config, by_segment=weights_vary(inputs.allocation))
    if lost.observed:
        listed = ", ".join(f"{arm} {n:,}" for arm, n in lost.observed.items())
        lost_text = (f"Engagement rows test (chi-square of the sent customers the engagement export lists, per arm; listed: {listed}): "
                     f"chi² = {lost.chi2:.2f}, p = {p_value(lost.p_value)}: ")
        blocks.append(Para(lost_text + ("**FLAGGED** (p < 0.001): the export lost rows unevenly between arms, and the missing "
                                        "customers count as non-openers; do not trust this wave's lifts." if lost.flagged
                                        else "no mismatch."), "bad" if lost.flagged else "good"))
    else:
        blocks.append(Para("Engagement rows test: not run. The campaign's export lists only customers with events "
                           "(engagement.lists), so a lost row cannot be told from a customer who did not open.", "note"))
    held = assignments.loc[~assignments["sent"].astype(bool)]
    if len(held):
        reasons = held["hold_reason"].fillna("unknown").astype(str).value_counts()
        blocks.append(Table("held_out", ["reason", "customers", "what it means"],
                            [[r, count(n), HOLD_EXPLANATIONS.get(r) or hold_explanation(r)] for r, n in reasons.items()], left=(0, 2),
                            col_keys=["hold_reason", "customers", "explanation"]))
    else:
        blocks.append(Para("Nobody was held out: every assigned customer could be emailed and their variant was approved and sent."))
    blocks.append(Subhead("Customers per segment and arm (assigned; held out in parentheses)"))
    segments = assignments["segment"].astype(str)
    arm_values = assignments["arm"].astype(str)
    assigned_arms = list(config.assignment_weights)
    assigned = pd.crosstab(segments, arm_values).reindex(columns=assigned_arms, fill_value=0)
    held_counts = pd.crosstab(segments[~assignments["sent"].astype(bool)], arm_values[~assignments["sent"].astype(bool)])
    rows, attrs = [], []
    for segment in [s for s in inputs.catalog.ids if s in assigned.index]:
        cells = [segment_names.get(segment, segment)]
        for arm in assigned_arms:
            n = int(assigned.loc[segment, arm])
            h = int(held_counts.loc[segment, arm]) if segment in held_counts.index and arm in held_counts.columns else 0
            cells.append(count(n) + (f" ({count(h)})" if h else ""))
        cells.append(count(assigned.loc[segment].sum()))
        rows.append(cells)
        attrs.append({"segment": segment})
    rows.append(["all segments", *[count(assigned[a].sum()) for a in assigned_arms], count(assigned.to_numpy().sum())])
    attrs.append({"segment": "all"})
    blocks.append(Table("arm_segment", ["segment", *assigned_arms, "total"], rows,
                        col_keys=["segment", *assigned_arms, "total"], row_attrs=attrs))
    return Section("design", "Design", blocks), srm


def results_section(inputs: ReportInputs, scopes: Sequence[str], segment_names: dict[str, str]) -> Section:
    """Every metric's lifts overall and the primary metric's per segment, as forest plots and tables."""
    config, results = inputs.config, inputs.results
    covariates = sorted({c for m in config.metrics.all for c in METRIC_COVARIATES.get(m, [])})
    blocks = [
        Para(f"Relative lift = treatment rate ÷ control rate − 1, with a {1 - config.alpha:.0%} score interval: every lift "
             "the z-test would not reject, so where the z-test decides it excludes 0 exactly when p < alpha; it never goes "
             "below −100%. p: pooled two-proportion z-test (Fisher's exact test when an expected cell count is below 5, "
             "where the interval can disagree, so a winner needs both); p (Holm): adjusted "
             f"across every tone × metric comparison of the scope; significant = p (Holm) < {config.alpha:g}. CUPED "
             f"re-estimates each lift after removing what the customers' pre-experiment {', '.join(covariates)} predict "
             "(narrower intervals, same target), only where the plain lift is defined. P(beat control): the exact "
             "Beta-Binomial posterior probability that the arm's rate is higher, with a uniform Beta(1, 1) prior per arm. "
             "MDE: the smallest lift this arm's and control's sizes detect with 80% power at the alpha that decides "
             "(alpha ÷ the scope's number of comparisons, as `cpo plan`). "
             + ("revenue_per_recipient (an amount, the rate column its mean per recipient) is compared by Welch's t-test and "
                "a delta-method interval of the ratio of means, which can disagree at the margin, so a winner needs both; its "
                "P(beat control) is the normal approximation; its CUPED covariate includes past spend. "
                if REVENUE_METRIC in config.metrics.all else "")
             + ("This wave's weights differed between segments (Thompson allocation), so the overall rows are stratified by "
                "segment instead: each arm's rate is the segments' rates weighted by their shares of the analysed customers, the "
                "interval the delta method's on the log of the ratio, p the z-test of the stratified difference, P(beat control) "
                "the normal one; CUPED and the always-valid columns are per segment only. "
                if weights_vary(inputs.allocation) else "")
             + "A comparison with too few customers or no "
             "control success is not measured and says why. Method details: docs/statistics.md.",
             "note"),
        *[Chart(forest_plot(forest_rows(results, [(metric, OVERALL, metric)]),
                            title=f"Relative lift in {metric} vs control, overall (95% CI)",
                            references=[(config.minimum_lift, f"target {percent(config.minimum_lift, True)}")]
                            if metric == config.metrics.primary else []))
          for metric in config.metrics.all],
        results_table(results, OVERALL, config.metrics.all, "results-overall"),
        *guardrail_blocks(results, config, stratified=weights_vary(inputs.allocation)),
        *incremental_blocks(results, config),
        Subhead(f"Per segment ({config.metrics.primary})"),
        Chart(forest_plot(
            forest_rows(results, [(segment_names.get(s, s), s, config.metrics.primary) for s in scopes[1:]]),
            title=f"Relative lift in {config.metrics.primary} vs control, per segment (95% CI)",
            references=[(config.minimum_lift, f"target {percent(config.minimum_lift, True)}")])),
    ]
    for scope in scopes[1:]:
        blocks.append(Subhead(f"{segment_names.get(scope, scope)} ({scope})"))
        blocks.append(results_table(results, scope, config.metrics.all, f"results-{scope}"))
    return Section("results", "Results", blocks)


def incremental_blocks(results: pd.DataFrame, config: CampaignConfig) -> list[Block]:
    """The email's incremental effect: every message arm's conversions against the no-email holdout's."""
    if not (results["scope"] == VS_NO_EMAIL).any():
        return []
    rows = results[(results["scope"] == VS_NO_EMAIL) & (results["arm"] == CONTROL_ARM) & (results["metric"] == "conversion_rate")]
    lead = ""
    if len(rows):
        r = rows.iloc[0]
        lead = (f"Even the generic control email changes conversions by {percent(r.rel_lift, True)} "
                f"({interval(r.rel_lift_ci_low, r.rel_lift_ci_high)}) against customers who were sent nothing. ")
    return [Subhead(f"The email's incremental effect (against the {config.no_email_share:.0%} no-email holdout)"),
            Para(lead + "Conversions here count every channel (engagement.conversions: any_channel); the holdout's customers were "
                 "randomized like every arm and sent nothing.", "note"),
            results_table(results, VS_NO_EMAIL, incremental_metrics(config), "results-vs-no-email", baseline=NO_EMAIL_ARM)]


def guardrail_blocks(results: pd.DataFrame, config: CampaignConfig, rollout: bool = False, stratified: bool = False) -> list[Block]:
    """The guardrails overall: each tone's unsubscribe and complaint rates against control's, the
    bounds of the rise, the margin, and whether the tone holds it (else it cannot win). With
    `rollout`, the rollout's realized rates against its holdout's: measured after the send."""
    margins = config.guardrails.margins
    rows = results[(results["scope"] == OVERALL) & results["metric"].isin(list(margins))] if "guardrail_margin" in results else results.iloc[:0]
    if rows.empty:
        named = ", ".join(f"{m} (column {GUARDRAIL_COLUMNS[m]})" for m in margins) or "none configured"
        return [Subhead("Guardrails"), Para(f"Not measured this wave: the engagement had no guardrail columns ({named}).", "note")]
    body, fills = [], []
    verdicts = {"holds": "holds: shown within the margin", "unproven": "no significant rise; too few events to show it within the margin",
                "fails": ("FAILS: significant rise, not shown within the margin" if rollout
                          else "FAILS: significant rise, not shown within the margin; cannot win or be sent")}
    for r in rows[rows["arm"] != CONTROL_ARM].itertuples(index=False):
        verdict = guardrail_verdict(r.guardrail_lower, r.guardrail_upper, r.guardrail_margin)
        body.append([r.metric, r.arm, percent(r.rate, digits=2), percent(r.control_rate, digits=2),
                     f"{(r.rate - r.control_rate) * 100:+.2f} pts", f"[{r.guardrail_lower * 100:+.2f}, {r.guardrail_upper * 100:+.2f}] pts",
                     f"+{r.guardrail_margin * 100:.2f} pts", verdicts[verdict]])
        fills.append([None] * 7 + [{"holds": None, "unproven": "#fff4d6", "fails": "#fde8e8"}[verdict]])
    return [Subhead("Guardrails (overall)"), Table(
        "guardrails", ["guardrail", "arm", "rate", "control", "difference", f"one-sided {1 - config.alpha:.0%} bounds", "margin",
                       "verdict"], body, left=(0, 1, 7), fills=fills,
        caption=("Each tone's rate minus control's, stratified by segment (this wave's weights differed between segments), with "
                 "normal bounds of the stratified difference, each arm's spread from its rate with one added event and non-event. "
                 if stratified else "Each tone's rate minus control's, with Newcombe's score bounds. ")
                + "A tone that significantly raises a guardrail "
                "(lower bound above 0) and is not shown within the campaign's margin (upper bound below it) cannot win in "
                "any segment, and no policy sends it.")]


def text_or_empty(value) -> str:
    """A verdict column's text, with a missing value (None or NaN) as empty text."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def approval_blocks(mode: str, approvals: pd.DataFrame | None) -> list[Block]:
    """How an approved verdict became sendable: the screen alone, or a named reviewer per text."""
    if mode == "screen":
        return [Para("Approval mode **screen**: every variant the automated screen approved was sendable; no person "
                     "reviewed the texts (set `approval.mode: reviewer` to require a reviewer's approval of each exact text).", "note")]
    if approvals is None:
        return []
    distinct = approvals.drop_duplicates(["variant_id", "content_hash"])
    rows = [[r.variant_id, r.decision, r.approved_by or DASH, str(r.content_hash)[:12]] for r in distinct.itertuples()]
    return [Para("Approval mode **reviewer**: a variant was sendable only after a person approved its exact text (the "
                 "SHA-256 of subject, body, call to action and citations); rejected variants' customers were held out."),
            Table("approvals", ["variant", "decision", "approved by", "text sha256"], rows, left=(0, 1, 2, 3),
                  col_keys=["variant_id", "decision", "approved_by", "content_hash"])]


def quarantine_blocks(screened: pd.DataFrame | None) -> list[Block]:
    """The documents screening kept out of the index, with their reasons; or that none were."""
    if screened is None or "decision" not in screened.columns:
        return []
    quarantined = screened[screened["decision"] != "approved"]
    text = (f"Content screening: {len(screened) - len(quarantined)} of {len(screened)} documents passed the same screen as "
            "the variants (harm categories, blocklists, health or financial promises, template leftovers, markup, control "
            "or bidi characters, template syntax); ")
    if quarantined.empty:
        return [Para(text + "none was quarantined.", "good")]
    return [
        Para(text + f"{len(quarantined)} quarantined: never indexed, retrieved or cited.", "bad"),
        Table("quarantined_documents", ["document", "title", "file", "reasons"],
              [[r.document_id, r.title, r.source_file, r.reasons] for r in quarantined.itertuples()], left=(0, 1, 2, 3),
              col_keys=["document_id", "title", "source_file", "reasons"]),
    ]


def safety_section(inputs: ReportInputs, segment_names: dict[str, str]) -> tuple[Section, SafetyGate]:
    """The screening verdict per variant and the documents cited; also the safety gate."""
    config, verdicts, variants = inputs.config, inputs.verdicts.copy(), inputs.variants
    gate = evaluate_safety_gate(verdicts, config.safety.pass_rate_threshold)
    for column in ("arm", "reasons", "blocklist_hits", "rule_hits"):
        if column not in verdicts.columns:
            verdicts[column] = ""
    severity_columns = [c for c in ("hate", "self_harm", "sexual", "violence") if c in verdicts.columns]
    verdicts["max_severity"] = verdicts[severity_columns].max(axis=1) if severity_columns else np.nan
    keys = ["variant_id", "arm", "decision", "reasons", "blocklist_hits", "rule_hits"]
    for column in keys:
        verdicts[column] = verdicts[column].map(text_or_empty)
    all_segments = set(inputs.catalog.ids)
    grouped = verdicts.groupby(keys, sort=False).agg(segments=("segment", lambda s: sorted(set(map(str, s)))),
                                                     max_severity=("max_severity", "max")).reset_index()
    grouped["is_blocked"] = grouped["decision"] != "approved"
    grouped = grouped.sort_values(["is_blocked", "variant_id"], ascending=[False, True], kind="stable")
    rows, fills = [], []
    for r in grouped.itertuples(index=False):
        segments = "all segments" if set(r.segments) == all_segments and len(r.segments) > 1 else ", ".join(r.segments)
        severity = DASH if not is_finite(r.max_severity) else ("service error" if r.max_severity < 0 else str(int(r.max_severity)))
        rows.append([r.variant_id, r.arm, segments, r.decision, severity, r.blocklist_hits or DASH, r.rule_hits or DASH,
                     r.reasons or DASH])
        fills.append([None, None, None, "#fde8e8" if r.is_blocked else "#e3f4ec", None, None, None, None])
    distinct = verdicts.drop_duplicates("variant_id")
    blocks = [
        Para(f"{gate.n_variants - gate.n_blocked} of {gate.n_variants} distinct variants approved, {gate.n_blocked} blocked "
             f"(pass rate {gate.pass_rate:.1%}; the campaign stops below {gate.threshold:.0%}: "
             f"{'passed' if gate.passed else 'FAILED'}). Policy {config.safety.policy_version}; a variant is blocked at "
             f"category severity ≥ {config.safety.block_severity}, on any blocklist hit, on any compliance rule hit, "
             "and when the safety service fails. Nobody is sent a blocked variant.",
             "good" if gate.passed and gate.n_blocked == 0 else ("bad" if not gate.passed else "")),
        Table("verdicts", ["variant", "arm", "segments", "decision", "max severity", "blocklist hits", "rule hits", "reasons"],
              rows, left=(0, 1, 2, 3, 5, 6, 7), col_keys=["variant_id", "arm", "segments", "decision", "max_severity",
                                                        "blocklist_hits", "rule_hits", "reasons"],
              row_attrs=[{"variant": r[0]} for r in rows], fills=fills),
    ]
    blocks += approval_blocks(config.approval.mode, inputs.approvals)
    blocks += quarantine_blocks(inputs.screened_corpus)
    if len(distinct) != len(grouped.drop_duplicates("variant_id")):
        blocks.append(Para("A variant shared by several segments (the control message) was judged differently in "
                           "different segments; each verdict is listed with the segments it applies to.", "note"))
    # Documents cited per segment.
    titles = {}
    if inputs.corpus is not None and len(inputs.corpus):
        titles = dict(zip(inputs.corpus["document_id"].astype(str), inputs.corpus["title"].astype(str)))
    cited = variants[["segment", "arm", "citations"]].copy()
    cited["document_id"] = cited["citations"].fillna("").astype(str).str.split(",")
    cited = cited.explode("document_id")
    cited = cited[cited["document_id"].str.len() > 0]
    order = {s: i for i, s in enumerate(inputs.catalog.ids)}
    cited["_order"] = cited["segment"].map(order)
    citation_rows = []
    for (segment, document), part in cited.sort_values(["_order", "document_id"]).groupby(["segment", "document_id"], sort=False):
        arms = [a for a in config.arm_names if a in set(part["arm"].astype(str))]
        citation_rows.append([segment_names.get(segment, segment), document, titles.get(document, DASH), ", ".join(arms)])
    blocks.append(Subhead("Documents cited per segment"))
    blocks.append(Table("citations", ["segment", "document", "title", "cited by arms"], citation_rows, left=(0, 1, 2, 3),
                        col_keys=["segment", "document_id", "title", "arms"],
                        caption="Only approved, retrieved documents may be cited; screening blocks any other citation."))
    return Section("safety", "Safety and quality", blocks), gate


def cost_section(inputs: ReportInputs) -> tuple[Section, pd.DataFrame]:
    """Generation calls, tokens and cost per backend; also the cost summary it shows."""
    summary = cost_summary(inputs.variants)
    rows = [[str(r.backend), str(r.model), count(r.variants), count(r.calls), count(r.input_tokens), count(r.output_tokens),
             f"${r.cost_usd:,.4f}", r.cache_hits if isinstance(r.cache_hits, str) else count(r.cache_hits)]
            for r in summary.itertuples(index=False)]
    numeric_hits = [h for h in summary["cache_hits"] if not isinstance(h, str)]
    rows.append(["total", "", count(summary["variants"].sum()), count(summary["calls"].sum()), count(summary["input_tokens"].sum()),
                 count(summary["output_tokens"].sum()), f"${summary['cost_usd'].sum():,.4f}",
                 count(sum(numeric_hits)) if numeric_hits else "n/a"])
    blocks = [
        Table("cost", ["backend", "model", "variants", "calls", "input tokens", "output tokens", "cost", "cache hits"], rows,
              left=(0, 1, 7), col_keys=["backend", "model", "variants", "calls", "input_tokens", "output_tokens", "cost_usd", "cache_hits"],
              row_attrs=[{"backend": r[0], "model": r[1]} for r in rows]),
        Para("Calls = distinct generation requests (by prompt hash): the generic control prompt is the same for every "
             "segment, so one call serves them all. Tokens and cost are those of the calls, as the backend reported "
             "them (the embedded template backend estimates tokens at four characters each and costs nothing). "
             "Generation happens once per content run, not per wave.", "note"),
    ]
    return Section("cost", "Cost", blocks), summary


def caveats_section(inputs: ReportInputs, simulated: bool, freshness: list[tuple[str, str]], version: str,
                    generated: dt.datetime) -> Section:
    """What the numbers cannot say, and where they come from (data freshness, code version)."""
    config = inputs.config
    items = []
    if simulated:
        items.append("**Simulated engagement.** No engagement export was found for this wave, so opens, clicks and "
                     "conversions were simulated from the campaign's configured ground truth (simulation.effects in "
                     f"{config.path.name}). The lifts show that the pipeline recovers that truth; they say nothing about real customers.")
    items += [f"Data freshness, {label}: {text}." for label, text in freshness]
    items += [
        f"Experiment id {config.experiment_id}, campaign {config.campaign_id}, wave {inputs.wave} (the week starting that Monday).",
        f"Code version: {version}. Report generated {generated.isoformat(timespec='seconds')}.",
        "Each scope (overall, each segment) is its own Holm family; there is no correction across segments, so with "
        "several segments some segment may look like a winner by chance.",
        "The interval of a relative lift is the score interval at the unadjusted level; a winner also needs the "
        "Holm-adjusted p below alpha. Coverage in simulation is in docs/statistics.md.",
        "P(beat control) is a posterior probability under a uniform prior and without adjustment for the several "
        "comparisons; it is not an independent confirmation of the test.",
        "The response model and the k-means exploration are fitted on seeded samples and describe associations among "
        "customers; only the tone effects (randomized) are causal.",
    ]
    return Section("caveats", "Caveats and provenance", [Bullets(items)])


