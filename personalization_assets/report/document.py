"""The wave report: what a stakeholder reads, and why the numbers are what they are.

`build_report` turns one wave's warehouse tables into a `Report` (sections of paragraphs, tables
and charts: every number computed from the tables passed in, none typed in); `render_html`
writes it as a self-contained page (inline CSS and SVG, no external reference), `report_pdf`
draws the same report into a PDF, and `Report.markdown` is the headline for Dagster's UI.
Pure logic: no Dagster import.
"""

from __future__ import annotations

import datetime as dt
import html
import importlib.metadata
import math
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from personalization_assets.audience.segmentation import SegmentCatalog
from personalization_assets.campaign.config import (
    CONTROL_ARM,
    METRIC_COLUMNS,
    METRIC_COVARIATES,
    CampaignConfig,
)
from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.experiment.engagement import SOURCE_SIMULATED
from personalization_assets.experiment.results import (
    OVERALL,
    campaign_rollout,
    sample_ratio_mismatch,
)
from personalization_assets.explain.models import (
    DEFAULT_SAMPLE_SIZE,
    DEFAULT_SEED,
    FEATURE_LABELS,
    MODEL_FEATURES,
    PROFILE_FEATURES,
    ResponseModel,
    fit_response_model,
    response_sample,
    segment_profiles,
)
from personalization_assets.report.charts import (
    Estimate,
    Figure,
    ForestRow,
    forest_plot,
)
from personalization_assets.safety.gate import evaluate_safety_gate

DISTRIBUTION = "customer-personalization-orchestrator"
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"
DASH = "–"
HOLD_EXPLANATIONS = {
    "variant_blocked": "the variant written for the customer's segment and arm was blocked by screening; "
    "the customer is sent nothing rather than another message, and is left out of the analysis",
}


# ---------------------------------------------------------------------------------------------
# Formatting: one function per kind of number, so every table shows the same precision.


def _finite(value) -> bool:
    try:
        return value is not None and not pd.isna(value) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _pct(value: float, signed: bool = False) -> str:
    if not _finite(value):
        return DASH
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _p(value: float) -> str:
    return DASH if not _finite(value) else (f"{value:.4f}" if value >= 1e-4 else "<0.0001")


def _int(value) -> str:
    return DASH if not _finite(value) else f"{int(value):,}"


def _ci(low: float, high: float) -> str:
    return DASH if not (_finite(low) and _finite(high)) else f"[{low:+.1%}, {high:+.1%}]"


def _coef(value: float, low: float, high: float) -> str:
    return DASH if not _finite(value) else f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def _feature_value(feature: str, value: float) -> str:
    if not _finite(value):
        return DASH
    if feature in ("historical_open_rate", "historical_click_rate", "gold_share"):
        return f"{value:.1%}"
    if feature == "avg_order_value":
        return f"{value:,.2f}"
    if feature == "tier_rank":
        return f"{value:.2f}"
    return f"{value:,.1f}"


# ---------------------------------------------------------------------------------------------
# The report model, shared by the HTML and PDF renderers.


@dataclass
class Para:
    text: str  # `**bold**` is the only markup
    style: str = ""  # "", "lead", "note", "good", "bad", "banner"


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Subhead:
    text: str


@dataclass
class Pre:
    text: str


@dataclass
class Chart:
    figure: Figure


@dataclass
class Table:
    key: str
    columns: list[str]
    rows: list[list[str]]
    left: tuple[int, ...] = (0,)  # left-aligned column positions
    col_keys: list[str] | None = None  # machine names of the columns (data-col in HTML)
    row_attrs: list[dict[str, str]] | None = None  # per-row data attributes in HTML
    fills: list[list[str | None]] | None = None  # per-cell background colours
    caption: str | None = None


@dataclass
class Section:
    key: str
    title: str
    blocks: list = field(default_factory=list)


@dataclass
class Report:
    title: str
    subtitle: str
    simulated: bool
    headline: str
    sections: list[Section]
    markdown: str


@dataclass
class ReportInputs:
    """Everything the report reads: the wave's warehouse tables and where they came from."""

    config: CampaignConfig
    catalog: SegmentCatalog
    wave: str
    results: pd.DataFrame
    assignments: pd.DataFrame
    verdicts: pd.DataFrame
    variants: pd.DataFrame
    customer_segments: pd.DataFrame | None = None
    engagement: pd.DataFrame | None = None
    exploration: pd.DataFrame | None = None
    corpus: pd.DataFrame | None = None
    freshness: list[tuple[str, str]] | None = None
    code_version: str | None = None
    generated_at: dt.datetime | None = None
    sample_size: int = DEFAULT_SAMPLE_SIZE
    seed: int = DEFAULT_SEED


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    pdf: Path
    markdown: str
    report: Report


# ---------------------------------------------------------------------------------------------
# Provenance


def code_version() -> str:
    """The installed distribution's version, plus the git commit when run from a checkout."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown version"
    commit = None
    try:
        found = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"],
                               capture_output=True, text=True, timeout=5, check=False)
        if found.returncode == 0 and found.stdout.strip():
            commit = found.stdout.strip()
            status = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5, check=False)
            if status.returncode == 0 and status.stdout.strip():
                commit += " with uncommitted changes"
    except (OSError, subprocess.SubprocessError):
        commit = None
    return f"{DISTRIBUTION} {version}" + (f", git {commit}" if commit else "")


def _mtime(path: Path) -> str:
    stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc)
    return stamp.isoformat(timespec="seconds")


def data_freshness(config: CampaignConfig, wave: str, engagement_source: str) -> list[tuple[str, str]]:
    """Where the customers and the engagement came from, with the files' modification times."""
    customers = config.paths.customers
    lines = [("customers", f"{customers} (modified {_mtime(customers)})" if customers.is_file() else f"{customers} (file not found now)")]
    engagement_file = config.paths.engagement_file(wave)
    if engagement_source == SOURCE_SIMULATED:
        lines.append(("engagement", f"SIMULATED from the campaign's ground truth (no {engagement_file.name} in {engagement_file.parent})"))
    elif engagement_file.is_file():
        lines.append(("engagement", f"imported from {engagement_file} (modified {_mtime(engagement_file)})"))
    else:
        lines.append(("engagement", f"imported ({engagement_source}); {engagement_file} is no longer there"))
    return lines


# ---------------------------------------------------------------------------------------------
# Tables kept for other modules (summary.py prints results_display).


def results_display(results: pd.DataFrame, scope: str, metrics: tuple[str, ...]) -> pd.DataFrame:
    rows = results[(results["scope"] == scope) & (results["metric"].isin(metrics))]
    return pd.DataFrame(
        {
            "metric": rows["metric"],
            "arm": rows["arm"],
            "n": rows["n"],
            "rate": rows["rate"].map(_pct),
            "relative lift": rows["rel_lift"].map(lambda v: _pct(v, True)),
            "95% CI": [_ci(lo, hi) for lo, hi in zip(rows["rel_lift_ci_low"], rows["rel_lift_ci_high"])],
            "p (Holm)": rows["p_value_adjusted"].map(_p),
            "significant": rows["significant"].map(lambda s: "yes" if s else "no"),
            "CUPED lift": rows["cuped_rel_lift"].map(lambda v: _pct(v, True)),
            "P(beat control)": rows["chance_to_beat_control"].map(_pct),
            "MDE": rows["mde"].map(_pct),
        }
    )


def design_table(assignments: pd.DataFrame, config: CampaignConfig) -> pd.DataFrame:
    counts = assignments.groupby(assignments["arm"].astype(str)).agg(
        assigned=("customer_id", "size"), sent=("sent", "sum")
    )
    counts = counts.reindex(list(config.arm_names), fill_value=0)
    total = int(counts["assigned"].sum())
    return pd.DataFrame(
        {
            "arm": counts.index,
            "weight": [f"{config.arm_weights[a]:.0%}" for a in counts.index],
            "expected": [f"{total * config.arm_weights[a]:,.1f}" for a in counts.index],
            "assigned": counts["assigned"].astype(int).to_numpy(),
            "sent": counts["sent"].astype(int).to_numpy(),
            "held out": (counts["assigned"] - counts["sent"]).astype(int).to_numpy(),
        }
    )


# ---------------------------------------------------------------------------------------------
# Sections


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


def results_table(results: pd.DataFrame, scope: str, metrics: Sequence[str], key: str) -> Table:
    rows = results[(results["scope"] == scope) & (results["metric"].isin(list(metrics)))]
    order = {m: i for i, m in enumerate(metrics)}
    rows = rows.assign(_order=rows["metric"].map(order)).sort_values("_order", kind="stable")
    body, attrs, fills = [], [], []
    previous_metric = None
    for r in rows.itertuples(index=False):
        control = r.arm == CONTROL_ARM
        cells = [
            "" if r.metric == previous_metric else r.metric,  # the metric once per group; data-metric on every row
            r.arm,
            _int(r.n),
            _int(r.successes),
            _pct(r.rate),
            "control" if control else _pct(r.rel_lift, True),
            DASH if control else _ci(r.rel_lift_ci_low, r.rel_lift_ci_high),
            DASH if control else _pct(r.cuped_rel_lift, True),
            DASH if control else _ci(r.cuped_rel_lift_ci_low, r.cuped_rel_lift_ci_high),
            DASH if control else _p(r.p_value),
            DASH if control else _p(r.p_value_adjusted),
            DASH if control else ("yes" if r.significant else "no"),
            DASH if control else _pct(r.chance_to_beat_control),
            DASH if control else _pct(r.mde),
        ]
        previous_metric = r.metric
        body.append(cells)
        attrs.append({"scope": scope, "metric": str(r.metric), "arm": str(r.arm)})
        colour = None if control or not r.significant else ("#e3f4ec" if r.rel_lift > 0 else "#fde8e8")
        fills.append([colour] * len(cells))
    return Table(key, [h for h, _ in RESULT_COLUMNS_VIEW], body, left=(0, 1),
                 col_keys=[k for _, k in RESULT_COLUMNS_VIEW], row_attrs=attrs, fills=fills)


def _forest_rows(results: pd.DataFrame, groups: Sequence[tuple[str, str, str]]) -> list[ForestRow]:
    """groups: (group label, scope, metric); one row per treatment arm of each."""
    rows = []
    for label, scope, metric in groups:
        part = results[(results["scope"] == scope) & (results["metric"] == metric) & (results["arm"] != CONTROL_ARM)]
        for r in part.itertuples(index=False):
            estimates = [Estimate("raw", r.rel_lift, r.rel_lift_ci_low, r.rel_lift_ci_high, bool(r.significant))]
            if _finite(r.cuped_rel_lift):
                estimates.append(Estimate("CUPED", r.cuped_rel_lift, r.cuped_rel_lift_ci_low, r.cuped_rel_lift_ci_high))
            rows.append(ForestRow(label, str(r.arm), tuple(estimates)))
    return rows


@dataclass(frozen=True)
class Verdict:
    scope: str
    sent: int
    winner: str | None
    best_arm: str | None
    row: pd.Series | None
    reason: str


def scope_verdicts(inputs: ReportInputs, scopes: Sequence[str]) -> tuple[object, list[Verdict]]:
    """The winner per scope, under the same rule as the rollout_recommendation asset: a scope has
    a winner only when its own best tone passes the gate and the campaign's overall lift gate
    (which includes SRM) passes; a segment's result is otherwise reported as a lead to confirm."""
    config, results = inputs.config, inputs.results
    gate, own = campaign_rollout(results, inputs.assignments, config, list(scopes))
    own = own.set_index("scope")
    primary = results[(results["metric"] == config.metrics.primary)]
    verdicts = []
    for scope in scopes:
        rows = primary[primary["scope"] == scope]
        sent = int(rows["n"].sum())
        mine = own.loc[scope]
        best = mine["best_arm"] if isinstance(mine["best_arm"], str) else None
        row = rows[rows["arm"] == best].iloc[0] if best is not None else None
        if scope == OVERALL:
            winner = gate.best_arm if gate.passed else None
            reason = "supported by the data" if gate.passed else "; ".join(gate.failures)
        elif not mine["has_reliable_winner"]:
            winner, reason = None, str(mine["reason"]).removeprefix("no reliable winner: ")
        elif not gate.passed:
            winner = None
            reason = ("this segment's own result passes, but the campaign's overall lift gate does not, "
                      "so no tone is rolled out anywhere; a lead to confirm in the next wave")
        else:
            winner, reason = best, "supported by the data"
        verdicts.append(Verdict(scope, sent, winner, best, row, reason))
    return gate, verdicts


def _evidence(v: Verdict, metric: str) -> str:
    if v.row is None:
        return "no treatment arm has data"
    r = v.row
    return (f"{metric} {_pct(r['rel_lift'], True)} {_ci(r['rel_lift_ci_low'], r['rel_lift_ci_high'])}, "
            f"Holm-adjusted p {_p(r['p_value_adjusted'])}, chance to beat control {_pct(r['chance_to_beat_control'])}")


def _summary_section(inputs: ReportInputs, gate, verdicts: list[Verdict], segment_names: dict[str, str]) -> tuple[Section, str]:
    config = inputs.config
    metric = config.metrics.primary
    overall = verdicts[0]
    if overall.winner:
        headline = f"Winner overall: {overall.winner}, {_evidence(overall, metric)}."
        lead = Para(f"**Winner overall: {overall.winner}.** {_evidence(overall, metric)}: it reaches the "
                    f"{_pct(config.minimum_lift, True)} target lift, is significant after Holm adjustment, "
                    "and the arm sizes show no sample-ratio mismatch.", "good")
    else:
        best = f" The best tone was {overall.best_arm}: {_evidence(overall, metric)}." if overall.row is not None else ""
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
            _int(v.sent),
            f"winner: {v.winner}" if v.winner else "no reliable winner",
            v.best_arm or DASH,
            DASH if r is None else _pct(r["rel_lift"], True),
            DASH if r is None else _ci(r["rel_lift_ci_low"], r["rel_lift_ci_high"]),
            DASH if r is None else _p(r["p_value_adjusted"]),
            DASH if r is None else _pct(r["chance_to_beat_control"]),
            DASH if r is None else _pct(r["mde"]),
            v.reason,
        ])
        attrs.append({"scope": v.scope, "metric": metric, "arm": v.best_arm or ""})
        fills.append([None, None, "#e3f4ec" if v.winner else "#fdf1e3", *([None] * 7)])
    blocks = [
        lead,
        Para(segment_line),
        Table("summary", columns, rows, left=(0, 2, 3, 9), col_keys=col_keys, row_attrs=attrs, fills=fills,
              caption=f"Primary metric {metric}; best tone per scope against control. A tone wins when its lift reaches "
                      f"{_pct(config.minimum_lift, True)}, its Holm-adjusted p < {config.alpha:g}, and the overall arm sizes pass "
                      "the sample-ratio-mismatch test."),
        Para("Segments are analysed one by one with no correction across segments: a segment-only result is a lead "
             "to confirm, not a finding (see Caveats).", "note"),
    ]
    return Section("summary", "Executive summary", blocks), headline


def _design_section(inputs: ReportInputs, segment_names: dict[str, str]) -> tuple[Section, object]:
    config, assignments = inputs.config, inputs.assignments
    srm = sample_ratio_mismatch(assignments, config)
    arms = design_table(assignments, config)
    tones = [a for a in config.arm_names if a != CONTROL_ARM]
    blocks = [
        Para(f"Experiment **{config.experiment_id}**: every customer is assigned to an arm by a deterministic hash of "
             f"(experiment id, customer id) into the weighted arms, within each segment; the control arm gets the generic "
             f"message, each tone arm ({', '.join(tones)}) the message written for the customer's segment in that tone. "
             f"Primary metric {config.metrics.primary}; secondary {', '.join(config.metrics.all[1:]) or 'none'}; "
             f"alpha {config.alpha:g}; target lift {_pct(config.minimum_lift, True)}."),
        Table("arms", list(arms.columns), [[str(v) if not isinstance(v, (int, np.integer)) else _int(v) for v in row]
                                           for row in arms.itertuples(index=False)],
              col_keys=["arm", "weight", "expected", "assigned", "sent", "held_out"],
              row_attrs=[{"arm": a} for a in arms["arm"]],
              caption="Expected = customers assigned × weight. Held-out customers are counted in the sample-ratio test "
                      "(it checks the assignment itself) but not in the results."),
    ]
    df = sum(1 for w in config.arm_weights.values() if w > 0) - 1
    srm_text = (f"Sample-ratio mismatch test (chi-square of assigned customers per arm against the weights, df {df}): "
                f"chi² = {srm.chi2:.2f}, p = {_p(srm.p_value)}: ")
    blocks.append(Para(srm_text + ("**FLAGGED** (p < 0.001): the assignment or the data lost or duplicated customers in some "
                                   "arm; do not trust this wave's lifts." if srm.flagged else "no mismatch."),
                       "bad" if srm.flagged else "good"))
    held = assignments.loc[~assignments["sent"].astype(bool)]
    if len(held):
        reasons = held["hold_reason"].fillna("unknown").astype(str).value_counts()
        blocks.append(Table("held_out", ["reason", "customers", "what it means"],
                            [[r, _int(n), HOLD_EXPLANATIONS.get(r, "")] for r, n in reasons.items()], left=(0, 2),
                            col_keys=["hold_reason", "customers", "explanation"]))
    else:
        blocks.append(Para("Nobody was held out: every assigned customer's variant was approved and sent."))
    blocks.append(Subhead("Customers per segment and arm (assigned; held out in parentheses)"))
    segments = assignments["segment"].astype(str)
    arm_values = assignments["arm"].astype(str)
    assigned = pd.crosstab(segments, arm_values).reindex(columns=list(config.arm_names), fill_value=0)
    held_counts = pd.crosstab(segments[~assignments["sent"].astype(bool)], arm_values[~assignments["sent"].astype(bool)])
    rows, attrs = [], []
    for segment in [s for s in inputs.catalog.ids if s in assigned.index]:
        cells = [segment_names.get(segment, segment)]
        for arm in config.arm_names:
            n = int(assigned.loc[segment, arm])
            h = int(held_counts.loc[segment, arm]) if segment in held_counts.index and arm in held_counts.columns else 0
            cells.append(_int(n) + (f" ({_int(h)})" if h else ""))
        cells.append(_int(assigned.loc[segment].sum()))
        rows.append(cells)
        attrs.append({"segment": segment})
    rows.append(["all segments", *[_int(assigned[a].sum()) for a in config.arm_names], _int(assigned.to_numpy().sum())])
    attrs.append({"segment": "all"})
    blocks.append(Table("arm_segment", ["segment", *config.arm_names, "total"], rows,
                        col_keys=["segment", *config.arm_names, "total"], row_attrs=attrs))
    return Section("design", "Design", blocks), srm


def _results_section(inputs: ReportInputs, scopes: Sequence[str], segment_names: dict[str, str]) -> Section:
    config, results = inputs.config, inputs.results
    covariates = sorted({c for m in config.metrics.all for c in METRIC_COVARIATES.get(m, [])})
    blocks = [
        Para("Relative lift = treatment rate ÷ control rate − 1, with a delta-method 95% CI. p: pooled two-proportion "
             "z-test (Fisher's exact test when an expected cell count is below 5); p (Holm): adjusted across every "
             f"tone × metric comparison of the scope; significant = p (Holm) < {config.alpha:g}. CUPED re-estimates each "
             f"lift after removing what the customers' pre-experiment {', '.join(covariates)} predict (narrower "
             "intervals, same target). P(beat control): normal posterior with a flat prior. MDE: the smallest lift "
             "this arm's and control's sizes detect with 80% power at this alpha. Method details: docs/statistics.md.",
             "note"),
        *[Chart(forest_plot(_forest_rows(results, [(metric, OVERALL, metric)]),
                            title=f"Relative lift in {metric} vs control, overall (95% CI)",
                            references=[(config.minimum_lift, f"target {_pct(config.minimum_lift, True)}")]
                            if metric == config.metrics.primary else []))
          for metric in config.metrics.all],
        results_table(results, OVERALL, config.metrics.all, "results-overall"),
        Subhead(f"Per segment ({config.metrics.primary})"),
        Chart(forest_plot(
            _forest_rows(results, [(segment_names.get(s, s), s, config.metrics.primary) for s in scopes[1:]]),
            title=f"Relative lift in {config.metrics.primary} vs control, per segment (95% CI)",
            references=[(config.minimum_lift, f"target {_pct(config.minimum_lift, True)}")])),
    ]
    for scope in scopes[1:]:
        blocks.append(Subhead(f"{segment_names.get(scope, scope)} ({scope})"))
        blocks.append(results_table(results, scope, config.metrics.all, f"results-{scope}"))
    return Section("results", "Results", blocks)


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _safety_section(inputs: ReportInputs, segment_names: dict[str, str]) -> tuple[Section, object]:
    config, verdicts, variants = inputs.config, inputs.verdicts.copy(), inputs.variants
    gate = evaluate_safety_gate(verdicts, config.safety.pass_rate_threshold)
    for column in ("arm", "reasons", "blocklist_hits", "rule_hits"):
        if column not in verdicts.columns:
            verdicts[column] = ""
    severity_columns = [c for c in ("hate", "self_harm", "sexual", "violence") if c in verdicts.columns]
    verdicts["max_severity"] = verdicts[severity_columns].max(axis=1) if severity_columns else np.nan
    keys = ["variant_id", "arm", "decision", "reasons", "blocklist_hits", "rule_hits"]
    for column in keys:
        verdicts[column] = verdicts[column].map(_text)
    all_segments = set(inputs.catalog.ids)
    grouped = verdicts.groupby(keys, sort=False).agg(segments=("segment", lambda s: sorted(set(map(str, s)))),
                                                     max_severity=("max_severity", "max")).reset_index()
    grouped["is_blocked"] = grouped["decision"] != "approved"
    grouped = grouped.sort_values(["is_blocked", "variant_id"], ascending=[False, True], kind="stable")
    rows, fills = [], []
    for r in grouped.itertuples(index=False):
        segments = "all segments" if set(r.segments) == all_segments and len(r.segments) > 1 else ", ".join(r.segments)
        severity = DASH if not _finite(r.max_severity) else ("service error" if r.max_severity < 0 else str(int(r.max_severity)))
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
    calls = calls.drop_duplicates([*keys, "prompt_sha256"])
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


def _cost_section(inputs: ReportInputs) -> tuple[Section, pd.DataFrame]:
    summary = cost_summary(inputs.variants)
    rows = [[str(r.backend), str(r.model), _int(r.variants), _int(r.calls), _int(r.input_tokens), _int(r.output_tokens),
             f"${r.cost_usd:,.4f}", r.cache_hits if isinstance(r.cache_hits, str) else _int(r.cache_hits)]
            for r in summary.itertuples(index=False)]
    numeric_hits = [h for h in summary["cache_hits"] if not isinstance(h, str)]
    rows.append(["total", "", _int(summary["variants"].sum()), _int(summary["calls"].sum()), _int(summary["input_tokens"].sum()),
                 _int(summary["output_tokens"].sum()), f"${summary['cost_usd'].sum():,.4f}",
                 _int(sum(numeric_hits)) if numeric_hits else "n/a"])
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


def _std_fill(value: float) -> str | None:
    if not _finite(value) or abs(value) < 0.1:
        return None
    strength = min(abs(value), 1.5) / 1.5
    base = (31, 78, 121) if value > 0 else (217, 130, 43)
    r, g, b = (round(255 - (255 - c) * (0.12 + 0.33 * strength)) for c in base)
    return f"#{r:02x}{g:02x}{b:02x}"


def _interaction_fill(low: float, high: float) -> str | None:
    if not (_finite(low) and _finite(high)) or (low <= 0 <= high):
        return None
    return "#e3f4ec" if low > 0 else "#fde8e8"


def _response_blocks(model: ResponseModel, config: CampaignConfig, results: pd.DataFrame) -> list:
    metric = config.metrics.primary
    sample_note = (f"Fitted on a seeded random sample of {model.n_used:,} of the {model.n_available:,} customers sent a "
                   f"message (seed {model.seed})" if model.n_used < model.n_available
                   else f"Fitted on all {model.n_used:,} customers sent a message")
    blocks = [Para(
        f"Logistic regression of {metric} ({METRIC_COLUMNS[metric]} = 1) on the customer features standardized to mean 0 "
        "and SD 1, an indicator per tone, and every tone × feature interaction (statsmodels, Wald 95% CIs). A feature's "
        "coefficient is how it predicts response under the control message (log-odds per SD); a tone × feature "
        "coefficient is how much that tone's effect changes per SD of the feature. This separates who responds anyway "
        f"from whom the message changes, which raw correlations cannot. {sample_note}.", "note")]
    if model.error:
        blocks.append(Para(f"The response model was not fitted: {model.error}.", "bad"))
        return blocks
    if not model.converged:
        blocks.append(Para("The fit did not converge; read the coefficients with care.", "bad"))
    coefficients = model.coefficients
    arm_rows = []
    primary = results[(results["scope"] == OVERALL) & (results["metric"] == metric)].set_index("arm")
    for arm in model.arms:
        t = model.term("arm", arm=arm)
        lift = _pct(primary.loc[arm, "rel_lift"], True) if arm in primary.index else DASH
        arm_rows.append([arm, _coef(t["coef"], t["ci_low"], t["ci_high"]), f"{math.exp(t['coef']):.3f}", lift])
    blocks.append(Table("response-arms", ["tone", "effect at the average customer (log-odds) [95% CI]", "odds ratio",
                                          "observed relative lift"], arm_rows,
                        col_keys=["arm", "coef", "odds_ratio", "rel_lift"]))
    columns = ["feature", "predicts response (control) [95% CI]", *[f"{a} × feature [95% CI]" for a in model.arms]]
    rows, fills = [], []
    for feature in model.features:
        main = model.term("feature", feature=feature)
        cells = [FEATURE_LABELS.get(feature, feature), _coef(main["coef"], main["ci_low"], main["ci_high"])]
        row_fill = [None, _interaction_fill(main["ci_low"], main["ci_high"])]
        for arm in model.arms:
            t = model.term("interaction", feature=feature, arm=arm)
            cells.append(_coef(t["coef"], t["ci_low"], t["ci_high"]))
            row_fill.append(_interaction_fill(t["ci_low"], t["ci_high"]))
        rows.append(cells)
        fills.append(row_fill)
    blocks.append(Table("response-model", columns, rows, col_keys=["feature", "main", *[f"x_{a}" for a in model.arms]],
                        row_attrs=[{"feature": f} for f in model.features], fills=fills,
                        caption="Shaded: the 95% CI excludes 0 (green above, red below)."))
    findings = []
    mains = coefficients[(coefficients["kind"] == "feature") & ((coefficients["ci_low"] > 0) | (coefficients["ci_high"] < 0))]
    for r in mains.reindex(mains["coef"].abs().sort_values(ascending=False).index).head(3).itertuples():
        direction = "more" if r.coef > 0 else "less"
        findings.append(f"Customers with a higher {FEATURE_LABELS.get(r.feature, r.feature)} respond {direction} whatever "
                        f"they are sent ({r.coef:+.3f} log-odds per SD, 95% CI [{r.ci_low:+.3f}, {r.ci_high:+.3f}]).")
    inter = coefficients[(coefficients["kind"] == "interaction") & ((coefficients["ci_low"] > 0) | (coefficients["ci_high"] < 0))]
    for r in inter.reindex(inter["coef"].abs().sort_values(ascending=False).index).itertuples():
        direction = "larger" if r.coef > 0 else "smaller"
        findings.append(f"The {r.arm} tone's effect is {direction} for customers with a higher "
                        f"{FEATURE_LABELS.get(r.feature, r.feature)} ({r.coef:+.3f} per SD, 95% CI [{r.ci_low:+.3f}, {r.ci_high:+.3f}]).")
    n_interactions = int((coefficients["kind"] == "interaction").sum())
    if inter.empty:
        findings.append(f"No feature changes any tone's effect detectably: all {n_interactions} tone × feature intervals include 0.")
    else:
        findings.append(f"{len(inter)} of {n_interactions} tone × feature intervals exclude 0; at 95% about "
                        f"{0.05 * n_interactions:.1f} would by chance alone, so treat these as leads to test, not findings.")
    blocks.append(Bullets(findings))
    return blocks


def _silhouette_reading(score: float) -> str:
    # Kaufman & Rousseeuw's reading of the average silhouette width.
    if score > 0.70:
        return "strong structure"
    if score > 0.50:
        return "reasonable structure"
    if score > 0.25:
        return "weak structure that may be artificial"
    return "no substantial structure"


def _exploration_blocks(exploration: pd.DataFrame | None, segment_names: dict[str, str]) -> list:
    if exploration is None or exploration.empty:
        return [Para("The k-means exploration has no clusters for this wave (too few customers).", "note")]
    first = exploration.iloc[0]
    k, silhouette = int(first["k"]), float(first["silhouette"])
    sample = (f"a seeded random sample of {int(first['sample_size']):,} of {int(first['population']):,} customers (seed {int(first['seed'])})"
              if int(first["sample_size"]) < int(first["population"]) else f"all {int(first['population']):,} customers")
    blocks = [
        Para("k-means is an exploration that proposes segments; it does not drive the partitions or the experiment. "
             f"Fitted on {sample}, features standardized (purchase frequency, order value and days since engagement on a "
             f"log scale); every customer is then assigned to the nearest centre. k = {k} was chosen by the silhouette "
             f"score ({first['silhouette_by_k']}); {silhouette:.3f} means {_silhouette_reading(silhouette)}. A depth-"
             f"{int(first['tree_depth'])} decision tree on the raw features explains the clusters with "
             f"{float(first['tree_accuracy']):.1%} accuracy on the 30% of the sample it was not trained on.", "note"),
    ]
    feature_columns = [f for f in MODEL_FEATURES]
    rows = []
    for r in exploration.itertuples(index=False):
        rows.append([
            f"cluster {int(r.cluster)}", _int(r.customers), _pct(r.share),
            *[_feature_value(f, getattr(r, f"mean_{f}")) for f in feature_columns],
            f"{segment_names.get(r.top_segment, r.top_segment)} ({_pct(r.top_segment_share)})",
        ])
    blocks.append(Table("clusters", ["cluster", "customers", "share", *[FEATURE_LABELS[f] for f in feature_columns],
                                     "mostly in segment"], rows, left=(0, len(feature_columns) + 3),
                        col_keys=["cluster", "customers", "share", *feature_columns, "top_segment"],
                        caption="Cluster means over every customer; the last column is the rule segment most of the cluster's customers belong to."))
    blocks.append(Table("cluster-rules", ["cluster", "decision-tree rules that lead to it"],
                        [[f"cluster {int(r.cluster)}", str(r.tree_rule)] for r in exploration.itertuples(index=False)],
                        left=(0, 1), col_keys=["cluster", "tree_rule"]))
    blocks.append(Pre(str(first["tree_text"])))
    return blocks


def _explain_section(inputs: ReportInputs, segment_names: dict[str, str]) -> Section:
    config, catalog = inputs.config, inputs.catalog
    blocks: list = [Subhead("What defines each segment")]
    sizes = inputs.assignments["segment"].astype(str).value_counts()
    total = int(sizes.sum())
    blocks.append(Table("segment-rules", ["segment", "id", "rule (first match wins, in this order)", "customers", "share"],
                        [[s.name, s.segment_id, s.rule_text(), _int(sizes.get(s.segment_id, 0)),
                          _pct(sizes.get(s.segment_id, 0) / total if total else float("nan"))] for s in catalog.segments],
                        left=(0, 1, 2), col_keys=["name", "segment", "rule", "customers", "share"]))
    if inputs.customer_segments is not None and len(inputs.customer_segments):
        profiles = segment_profiles(inputs.customer_segments, catalog)
        rows, fills = [], []
        for r in profiles.to_dict("records"):
            name = "all customers" if r["segment"] == "population" else segment_names.get(r["segment"], r["segment"])
            cells, row_fill = [name, _int(r["customers"])], [None, None]
            for feature in PROFILE_FEATURES:
                diff = r[f"{feature}_std_diff"]
                suffix = f" ({diff:+.1f} SD)" if r["segment"] != "population" and _finite(diff) else ""
                cells.append(_feature_value(feature, r[feature]) + suffix)
                row_fill.append(None if r["segment"] == "population" else _std_fill(diff))
            rows.append(cells)
            fills.append(row_fill)
        blocks.append(Table("profiles", ["segment", "customers", *[FEATURE_LABELS[f] for f in PROFILE_FEATURES]], rows,
                            col_keys=["segment", "customers", *PROFILE_FEATURES],
                            row_attrs=[{"segment": s} for s in profiles["segment"]], fills=fills,
                            caption="Mean per segment against all customers of the wave; in parentheses the difference in "
                                    "population standard deviations (blue above the population, orange below)."))
    blocks.append(Subhead("Which customer features predict response, and whether the tone's effect differs by them"))
    if inputs.customer_segments is not None and inputs.engagement is not None and len(inputs.engagement):
        outcome = METRIC_COLUMNS[config.metrics.primary]
        sample, available = response_sample(inputs.assignments, inputs.engagement, inputs.customer_segments, outcome,
                                            sample_size=inputs.sample_size, seed=inputs.seed)
        model = fit_response_model(sample, outcome, control=CONTROL_ARM, arms=config.arm_names, n_available=available,
                                   seed=inputs.seed, alpha=0.05)
        blocks += _response_blocks(model, config, inputs.results)
    else:
        blocks.append(Para("No customer-level engagement was available to model response.", "note"))
    blocks.append(Subhead("k-means exploration: the segments the data would propose"))
    blocks += _exploration_blocks(inputs.exploration, segment_names)
    return Section("explain", "Explainability", blocks)


def _caveats_section(inputs: ReportInputs, simulated: bool, freshness: list[tuple[str, str]], version: str,
                     generated: dt.datetime) -> Section:
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
        "The confidence interval of a relative lift is symmetric although the ratio's distribution is skewed; in "
        "simulation it covers the true lift about 94–95% of the time, less with small counts.",
        "P(beat control) restates the unadjusted evidence as a probability (flat prior); it is not an independent confirmation.",
        "The response model and the k-means exploration are fitted on seeded samples and describe associations among "
        "customers; only the tone effects (randomized) are causal.",
    ]
    return Section("caveats", "Caveats and provenance", [Bullets(items)])


def build_report(inputs: ReportInputs) -> Report:
    config, results = inputs.config, inputs.results
    simulated = bool((results["engagement_source"] == SOURCE_SIMULATED).any()) if "engagement_source" in results else False
    source = str(results["engagement_source"].iloc[0]) if "engagement_source" in results and len(results) else SOURCE_SIMULATED
    generated = inputs.generated_at or dt.datetime.now(dt.timezone.utc)
    version = inputs.code_version or code_version()
    freshness = inputs.freshness if inputs.freshness is not None else data_freshness(config, inputs.wave, source)
    segment_names = {s.segment_id: s.name for s in inputs.catalog.segments}
    present = set(results["scope"])
    scopes = [OVERALL, *[s for s in inputs.catalog.ids if s in present]]
    title = f"Campaign {config.campaign_id}: wave {inputs.wave}" + (" (SIMULATED ENGAGEMENT)" if simulated else "")
    subtitle = (f"Experiment {config.experiment_id} · primary metric {config.metrics.primary} · generated "
                f"{generated.strftime('%Y-%m-%d %H:%M UTC')} · {version}")

    gate, verdicts = scope_verdicts(inputs, scopes)
    summary, headline = _summary_section(inputs, gate, verdicts, segment_names)
    design, srm = _design_section(inputs, segment_names)
    safety, safety_gate = _safety_section(inputs, segment_names)
    cost, costs = _cost_section(inputs)
    sections = [
        summary,
        design,
        _results_section(inputs, scopes, segment_names),
        safety,
        cost,
        _explain_section(inputs, segment_names),
        _caveats_section(inputs, simulated, freshness, version, generated),
    ]
    sent = int(inputs.assignments["sent"].astype(bool).sum())
    markdown = _markdown(title, headline, verdicts, segment_names, config, sent=sent, assigned=len(inputs.assignments),
                         srm=srm, safety_gate=safety_gate, costs=costs)
    return Report(title, subtitle, simulated, headline, sections, markdown)


def _markdown(title, headline, verdicts, segment_names, config, *, sent, assigned, srm, safety_gate, costs) -> str:
    lines = [f"### {title}", "", f"**{headline}**", "",
             f"| scope | verdict | best arm | {config.metrics.primary} lift | 95% CI | p (Holm) |", "|---|---|---|---|---|---|"]
    for v in verdicts:
        r = v.row
        lines.append(
            f"| {segment_names.get(v.scope, v.scope)} | {'**' + v.winner + '**' if v.winner else 'no reliable winner'} | "
            f"{v.best_arm or DASH} | {DASH if r is None else _pct(r['rel_lift'], True)} | "
            f"{DASH if r is None else _ci(r['rel_lift_ci_low'], r['rel_lift_ci_high'])} | "
            f"{DASH if r is None else _p(r['p_value_adjusted'])} |"
        )
    hits = [h for h in costs["cache_hits"] if not isinstance(h, str)]
    lines += [
        "",
        f"- sent {sent:,} of {assigned:,} customers ({assigned - sent:,} held out); sample-ratio mismatch p = "
        f"{_p(srm.p_value)} ({'FLAGGED' if srm.flagged else 'ok'})",
        f"- variants: {safety_gate.n_variants - safety_gate.n_blocked} approved, {safety_gate.n_blocked} blocked",
        f"- generation: {int(costs['calls'].sum()):,} calls, {int(costs['input_tokens'].sum() + costs['output_tokens'].sum()):,} "
        f"tokens, ${costs['cost_usd'].sum():,.4f}" + (f", {sum(hits):,} cache hits" if hits else ""),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# HTML


STYLE = """
:root{--ink:#1f2933;--muted:#52606d;--line:#d9e2ec;--head:#f0f4f8;--good:#0c6b58;--bad:#ab091e}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:var(--ink);background:#fff;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:1.5rem 1.5rem 4rem}
h1{font-size:1.65rem;margin:.2rem 0}
.subtitle{color:var(--muted);font-size:.88rem;margin:0 0 1rem}
nav{font-size:.88rem;margin:.6rem 0 1.2rem;display:flex;flex-wrap:wrap;gap:.3rem 1rem}
nav a{color:#1f4e79;text-decoration:none}
h2{font-size:1.25rem;margin:2.2rem 0 .6rem;border-bottom:2px solid var(--line);padding-bottom:.3rem}
h3{font-size:1rem;margin:1.4rem 0 .4rem}
p{margin:.5rem 0}
.table-wrap{overflow-x:auto;margin:.4rem 0 1rem}
table{border-collapse:collapse;font-size:.78rem;font-variant-numeric:tabular-nums}
caption{caption-side:bottom;text-align:left;color:var(--muted);font-size:.78rem;padding-top:.3rem}
th,td{border:1px solid var(--line);padding:.25rem .42rem;text-align:right;vertical-align:top}
td:not(.l),td:first-child{white-space:nowrap}
th{background:var(--head);font-weight:600}
.l{text-align:left}
td.l{max-width:34rem}
.banner{background:#fff3c4;border:1px solid #f0b429;padding:.6rem 1rem;border-radius:4px}
.good{border-left:4px solid var(--good);background:#f0faf6;padding:.5rem .8rem}
.bad{border-left:4px solid var(--bad);background:#fdf3f3;padding:.5rem .8rem}
.lead{font-size:1.05rem}
.note{color:var(--muted);font-size:.85rem}
pre{background:#f8fafc;border:1px solid var(--line);padding:.6rem;font-size:.78rem;overflow-x:auto}
ul{margin:.4rem 0;padding-left:1.3rem}
li{margin:.2rem 0}
.chart{display:block;margin:.6rem 0}
@media print{main{max-width:none}nav{display:none}}
"""


def _inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def _attrs(values: dict[str, str]) -> str:
    return "".join(f' data-{html.escape(k)}="{html.escape(str(v))}"' for k, v in values.items())


def _html_table(table: Table) -> str:
    def cls(i: int) -> str:
        return ' class="l"' if i in table.left else ""

    head = "".join(f"<th{cls(i)}>{html.escape(c)}</th>" for i, c in enumerate(table.columns))
    body = []
    for index, row in enumerate(table.rows):
        attrs = _attrs(table.row_attrs[index]) if table.row_attrs else ""
        cells = []
        for i, value in enumerate(row):
            col = f' data-col="{html.escape(table.col_keys[i])}"' if table.col_keys else ""
            fill = table.fills[index][i] if table.fills else None
            style = f' style="background:{fill}"' if fill else ""
            cells.append(f"<td{cls(i)}{col}{style}>{html.escape(str(value))}</td>")
        body.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return (f'<div class="table-wrap"><table id="{html.escape(table.key)}">{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _html_block(block) -> str:
    if isinstance(block, Para):
        style = f' class="{block.style}"' if block.style else ""
        return f"<p{style}>{_inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Subhead):
        return f"<h3>{html.escape(block.text)}</h3>"
    if isinstance(block, Pre):
        return f"<pre>{html.escape(block.text)}</pre>"
    if isinstance(block, Chart):
        return block.figure.to_svg()
    if isinstance(block, Table):
        return _html_table(block)
    raise TypeError(f"unknown report block {block!r}")


def render_html(report: Report) -> str:
    nav = "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in report.sections)
    banner = (
        '<p class="banner"><b>Simulated engagement.</b> The opens, clicks and conversions in this report were simulated '
        "from the campaign's configured ground truth: they demonstrate the pipeline, not real customer behaviour.</p>"
        if report.simulated else ""
    )
    sections = "".join(
        f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>{"".join(_html_block(b) for b in s.blocks)}</section>'
        for s in report.sections
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(report.title)}</title>'
        f"<style>{STYLE}</style></head><body><main><h1>{html.escape(report.title)}</h1>"
        f'<p class="subtitle">{html.escape(report.subtitle)}</p>{banner}<nav>{nav}</nav>{sections}</main></body></html>'
    )


def write_report(out_dir: Path, inputs: ReportInputs) -> ReportFiles:
    """Write `report.html` and `report.pdf` into `out_dir`; returns their paths and the Markdown
    summary (with the paths) for the asset's metadata."""
    from personalization_assets.report.pdf import render_pdf

    report = build_report(inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, pdf_path = out_dir / REPORT_HTML, out_dir / REPORT_PDF
    html_path.write_text(render_html(report), encoding="utf-8")
    render_pdf(report, pdf_path)
    markdown = report.markdown + f"\n- report: `{html_path}` (PDF: `{pdf_path}`)"
    return ReportFiles(html_path, pdf_path, markdown, report)
