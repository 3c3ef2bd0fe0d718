"""`build_report`: one wave's `Report`, its sections in reading order, and the Markdown summary
that Dagster's UI shows. Pure logic: no Dagster import."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd

from personalization_assets.campaign.config import CampaignConfig
from personalization_assets.experiment.engagement import SOURCE_SIMULATED
from personalization_assets.experiment.results import engagement_mismatch, result_scopes
from personalization_assets.report.explainability import explain_section
from personalization_assets.report.formatting import DASH, interval, p_value, percent
from personalization_assets.report.model import Report, ReportInputs
from personalization_assets.report.provenance import code_version, data_freshness
from personalization_assets.report.sections import (
    caveats_section,
    cost_section,
    design_section,
    results_section,
    safety_section,
    summary_section,
)
from personalization_assets.report.verdicts import Verdict, scope_verdicts
from personalization_assets.safety.gate import SafetyGate
from personalization_assets.stats import SrmResult


def build_report(inputs: ReportInputs) -> Report:
    """One wave's report: every number computed from the tables in `inputs`, none typed in."""
    config, results = inputs.config, inputs.results
    simulated = bool((results["engagement_source"] == SOURCE_SIMULATED).any()) if "engagement_source" in results else False
    source = str(results["engagement_source"].iloc[0]) if "engagement_source" in results and len(results) else SOURCE_SIMULATED
    generated = inputs.generated_at or dt.datetime.now(dt.timezone.utc)
    version = inputs.code_version or code_version()
    freshness = inputs.freshness if inputs.freshness is not None else data_freshness(config, inputs.wave, source)
    segment_names = {s.segment_id: s.name for s in inputs.catalog.segments}
    scopes = result_scopes(inputs.catalog.ids, results["scope"])
    title = f"Campaign {config.campaign_id}: wave {inputs.wave}" + (" (SIMULATED ENGAGEMENT)" if simulated else "")
    subtitle = (f"Experiment {config.experiment_id} · primary metric {config.metrics.primary} · generated "
                f"{generated.strftime('%Y-%m-%d %H:%M UTC')} · {version}")

    verdicts = scope_verdicts(inputs, scopes)
    summary, headline = summary_section(inputs, verdicts, segment_names)
    design, srm = design_section(inputs, segment_names)
    safety, safety_gate = safety_section(inputs, segment_names)
    cost, costs = cost_section(inputs)
    sections = [
        summary,
        design,
        results_section(inputs, scopes, segment_names),
        safety,
        cost,
        explain_section(inputs, segment_names),
        caveats_section(inputs, simulated, freshness, version, generated),
    ]
    sent = int(inputs.assignments["sent"].astype(bool).sum())
    markdown = markdown_summary(title, headline, verdicts, segment_names, config, sent=sent, assigned=len(inputs.assignments),
                                srm=srm, lost=engagement_mismatch(inputs.results, config), safety_gate=safety_gate, costs=costs)
    return Report(title, subtitle, simulated, headline, sections, markdown)


def markdown_summary(title: str, headline: str, verdicts: Sequence[Verdict], segment_names: dict[str, str],
                     config: CampaignConfig, *, sent: int, assigned: int, srm: SrmResult, lost: SrmResult, safety_gate: SafetyGate,
                     costs: pd.DataFrame) -> str:
    """The headline, the verdict per scope and one line each on sending, screening and cost."""
    lines = [f"### {title}", "", f"**{headline}**", "",
             f"| scope | verdict | best arm | {config.metrics.primary} lift | 95% CI | p (Holm) |", "|---|---|---|---|---|---|"]
    for v in verdicts:
        r = v.row
        lines.append(
            f"| {segment_names.get(v.scope, v.scope)} | {'**' + v.winner + '**' if v.winner else 'no reliable winner'} | "
            f"{v.best_arm or DASH} | {DASH if r is None else percent(r['rel_lift'], True)} | "
            f"{DASH if r is None else interval(r['rel_lift_ci_low'], r['rel_lift_ci_high'])} | "
            f"{DASH if r is None else p_value(r['p_value_adjusted'])} |"
        )
    hits = [h for h in costs["cache_hits"] if not isinstance(h, str)]
    lines += [
        "",
        f"- sent {sent:,} of {assigned:,} customers ({assigned - sent:,} held out); sample-ratio mismatch p = "
        f"{p_value(srm.p_value)} ({'FLAGGED' if srm.flagged else 'ok'}); engagement rows per arm "
        + (f"p = {p_value(lost.p_value)} ({'FLAGGED' if lost.flagged else 'ok'})" if lost.observed else "not checked (events-only export)"),
        f"- variants: {safety_gate.n_variants - safety_gate.n_blocked} approved, {safety_gate.n_blocked} blocked",
        f"- generation: {int(costs['calls'].sum()):,} calls, {int(costs['input_tokens'].sum() + costs['output_tokens'].sum()):,} "
        f"tokens, ${costs['cost_usd'].sum():,.4f}" + (f", {sum(hits):,} cache hits" if hits else ""),
    ]
    return "\n".join(lines)
