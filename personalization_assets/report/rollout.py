"""The rollout report (after a test on a share): the candidate policies side by side, the uplift
model's Qini curve, what drives its choice, who was sent what, and the rollout's realized lift
against its holdout. Written as `rollout.html` and `rollout.pdf` beside the wave's report.
Pure logic: no Dagster import."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from personalization_assets.audience.segmentation import SegmentCatalog
from personalization_assets.campaign.config import (
    CONTINUOUS_METRICS,
    CONTROL_ARM,
    CampaignConfig,
)
from personalization_assets.experiment.engagement import SOURCE_SIMULATED
from personalization_assets.experiment.policies import PERSONALIZED, qini_coefficient
from personalization_assets.experiment.results import OVERALL
from personalization_assets.experiment.rollout import HOLDOUT, ROLLED_OUT
from personalization_assets.explain.models import FEATURE_LABELS
from personalization_assets.report.charts import (
    AXIS_COLOR,
    RAW_COLOR,
    Series,
    line_chart,
)
from personalization_assets.report.formatting import (
    DASH,
    count,
    is_finite,
    metric_gain,
    metric_gain_interval,
    metric_value,
    percent,
)
from personalization_assets.report.html import render_html
from personalization_assets.report.model import (
    Bullets,
    Chart,
    Para,
    Report,
    Section,
    Subhead,
    Table,
)
from personalization_assets.report.pdf import render_pdf
from personalization_assets.report.sections import guardrail_blocks, results_table

ROLLOUT_HTML, ROLLOUT_PDF = "rollout.html", "rollout.pdf"
CHOICE_FEATURE_LABELS = {**FEATURE_LABELS, "segment": "segment"}


@dataclass
class RolloutInputs:
    config: CampaignConfig
    catalog: SegmentCatalog
    wave: str
    policy_values: pd.DataFrame
    qini: pd.DataFrame
    drivers: pd.DataFrame
    assignments: pd.DataFrame
    results: pd.DataFrame
    generated_at: dt.datetime | None = None


@dataclass(frozen=True)
class RolloutFiles:
    html: Path
    pdf: Path
    markdown: str
    report: Report


def _value_interval(metric: str, low: float, high: float) -> str:
    return f"[{metric_value(metric, low)}, {metric_value(metric, high)}]" if is_finite(low) and is_finite(high) else DASH


def policies_table(values: pd.DataFrame, simulated: bool, metric: str) -> Table:
    columns = ["policy", "what it sends", "value", "interval", "gain vs best other", "gain interval"]
    if simulated:
        columns.append("true value (simulator)")
    rows, fills = [], []
    for r in values.itertuples(index=False):
        baseline = bool(r.is_baseline)
        cells = [r.policy, r.description, metric_value(metric, r.value), _value_interval(metric, r.ci_low, r.ci_high),
                 "baseline" if baseline else metric_gain(metric, r.diff_vs_baseline),
                 DASH if baseline else metric_gain_interval(metric, r.diff_ci_low, r.diff_ci_high)]
        if simulated:
            cells.append(metric_value(metric, r.true_value))
        rows.append(cells)
        good = r.policy == PERSONALIZED and is_finite(r.diff_ci_low) and r.diff_ci_low > 0
        fills.append([("#e3f4ec" if good else None)] * len(cells))
    return Table("policies", columns, rows, left=(0, 1), fills=fills,
                 caption=f"Doubly robust, cross-fitted estimates of each policy's {metric} on the test's customers; "
                         "intervals at 1 - alpha; gains are paired differences against the best non-personalized policy.")


def build_rollout_report(inputs: RolloutInputs) -> Report:
    config, values, results = inputs.config, inputs.policy_values, inputs.results
    simulated = bool(len(results)) and bool((results["engagement_source"] == SOURCE_SIMULATED).any())
    test_simulated = bool(values["true_value"].notna().any()) if len(values) else False
    generated = inputs.generated_at or dt.datetime.now(dt.timezone.utc)
    assignments = inputs.assignments
    policy = str(assignments["policy"].iloc[0]) if len(assignments) else "none"
    sent = assignments[assignments["sent"].astype(bool)]
    primary = config.metrics.primary
    realized = results[(results["scope"] == OVERALL) & (results["metric"] == primary) & (results["arm"] == ROLLED_OUT)]
    personalized = values[values["policy"] == PERSONALIZED].iloc[0] if (values["policy"] == PERSONALIZED).any() else None
    gate_passed = personalized is not None and is_finite(personalized["diff_ci_low"]) and personalized["diff_ci_low"] > 0

    lift_text = (f"{percent(realized['rel_lift'].iloc[0], True)} [{percent(realized['rel_lift_ci_low'].iloc[0], True)}, "
                 f"{percent(realized['rel_lift_ci_high'].iloc[0], True)}]" if len(realized) and is_finite(realized["rel_lift"].iloc[0])
                 else "not measurable")
    headline = (f"Rollout by the {policy} policy to {count(len(sent))} customers; realized {primary} lift over its "
                f"{config.rollout.holdout_share:.0%} holdout {lift_text}" if config.rollout else "no rollout configured")
    summary = [Para(headline + ".", "lead")]
    if personalized is not None:
        chose_winner = config.rollout is not None and config.rollout.policy != PERSONALIZED
        summary.append(Para(
            f"The personalized policy's gain over the best other policy: {metric_gain(primary, personalized['diff_vs_baseline'])} "
            f"{metric_gain_interval(primary, personalized['diff_ci_low'], personalized['diff_ci_high'])}: "
            + ("its lower bound is above 0, but the campaign rolls out the winners (rollout.policy: winner)." if gate_passed and chose_winner
               else "**its lower bound is above 0, so it ships**." if gate_passed else
               "**its lower bound is not above 0, so it does not ship**; the rollout sends each segment's gated winner "
               "(the overall winner where a segment shows none of its own, control where the lift gate failed)."),
            "good" if gate_passed and not chose_winner else "note"))
        if str(personalized.get("guardrails") or ""):
            summary.append(Para(f"Its guardrails against that policy (doubly robust, one-sided bounds): {personalized['guardrails']}.", "note"))
    qini = inputs.qini
    figure = line_chart([Series("personalized model (out of fold)", RAW_COLOR, tuple(zip(qini["fraction"], qini["qini"]))),
                         Series("random targeting", AXIS_COLOR, tuple(zip(qini["fraction"], qini["random"])), dash=True)],
                        title="Qini curve of the personalized policy (out of fold)",
                        x_label="share of test customers targeted, by predicted gain", y_label=("incremental revenue per customer" if primary in CONTINUOUS_METRICS
                                                                                               else "incremental successes per customer"))
    drivers = Table("drivers", ["feature", "choices that change when it is shuffled"],
                    [[CHOICE_FEATURE_LABELS.get(r.feature, r.feature), percent(r.choices_changed)] for r in inputs.drivers.itertuples()],
                    caption="Permutation importance of the personalized choice on the customers it is applied to: the larger, the "
                            "more that feature decides which message a customer gets.")
    by_arm = sent.groupby(["rollout_group", "arm"]).size()
    arms = Table("rollout", ["group", "arm", "customers sent"],
                 [[group, arm, count(n)] for (group, arm), n in by_arm.items()], left=(0, 1))
    held = assignments.loc[~assignments["sent"].astype(bool), "hold_reason"].value_counts()
    scopes = [OVERALL, *(s for s in inputs.catalog.ids if s in set(results["scope"]))]
    segment_names = {OVERALL: "Overall", **{s.segment_id: s.name for s in inputs.catalog.segments}}
    sections = [
        Section("summary", "Summary", summary),
        Section("policies", "Candidate policies, side by side", [
            policies_table(values, test_simulated, primary),
            Para(f"The personalized model was learned on {1 - config.personalization.evaluation_share:.0%} of the test and every "
                 f"policy is valued on the other {config.personalization.evaluation_share:.0%}, which the model never saw; the "
                 f"outcome models of the estimate are cross-fitted ({config.personalization.folds} folds). The segment-level "
                 "policies are chosen on the whole test, as they ship. The estimate is unbiased whatever the outcome models' "
                 "quality, because the test's randomization probabilities are known.", "note"),
        ]),
        Section("qini", "Uplift: the Qini curve", [Chart(figure), Para(
            f"Qini coefficient (area between the curve and random targeting): {qini_coefficient(qini):.5f}. A curve above the "
            "dashed line means the model ranks customers by how much their recommended tone gains over control.", "note")]),
        Section("drivers", "What drives the personalized choice", [drivers]),
        Section("sent", "Who was sent what", [arms, Para(
            f"Held out: {', '.join(f'{reason} {count(n)}' for reason, n in held.items()) or 'nobody'}. The holdout "
            f"({HOLDOUT}) is a randomized {config.rollout.holdout_share:.0%} of the rollout kept on the {CONTROL_ARM} message."
            if config.rollout else "", "note")]),
        Section("realized", "Realized lift: rollout against its holdout",
                [*guardrail_blocks(results, config, rollout=True),
                 *(block for scope in scopes for block in (Subhead(segment_names.get(scope, scope)),
                                                            results_table(results, scope, config.metrics.all, f"realized-{scope}")))]),
        Section("caveats", "Caveats", [Bullets([
            *(["**Simulated engagement.** The rollout's outcomes were simulated from the campaign's ground truth; they show the "
               "pipeline recovers it, not how real customers respond."] if simulated else []),
            *(["**The test's engagement was simulated**: the true values come from the simulator's ground truth "
               "(simulation.effects and simulation.heterogeneity)."] if test_simulated else []),
            "The policies' values are for the test's customers; the rollout's customers are a random draw of the same segments, "
            "so the values carry over in expectation.",
            "The personalized policy rolled out is the model whose value is estimated (learned on the learning part only); "
            "the segment-level policies, chosen on the whole test, may be valued slightly optimistically, which only makes "
            "the personalized policy's gate harder to pass.",
            f"Report generated {generated.isoformat(timespec='seconds')}.",
        ])]),
    ]
    title = f"Campaign {config.campaign_id}: rollout of wave {inputs.wave}" + (" (SIMULATED ENGAGEMENT)" if simulated or test_simulated else "")
    markdown = "\n".join([f"**{title}**", "", f"- {headline}",
                          *(f"- {r.policy}: {metric_value(primary, r.value)} {_value_interval(primary, r.ci_low, r.ci_high)}"
                            for r in values.itertuples())])
    return Report(title, f"Experiment {config.experiment_id} · primary metric {primary} · generated {generated:%Y-%m-%d %H:%M UTC}",
                  simulated or test_simulated, headline, sections, markdown)


def write_rollout_report(out_dir: Path, inputs: RolloutInputs) -> RolloutFiles:
    report = build_rollout_report(inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, pdf_path = out_dir / ROLLOUT_HTML, out_dir / ROLLOUT_PDF
    html_path.write_text(render_html(report), encoding="utf-8")
    render_pdf(report, pdf_path)
    return RolloutFiles(html_path, pdf_path, report.markdown + f"\n- report: `{html_path}` (PDF: `{pdf_path}`)", report)
