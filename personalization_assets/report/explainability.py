"""The report's explainability section: what defines each segment, which customer features
predict response and whether a tone's effect differs by them (a logistic regression fitted with
statsmodels), and the k-means exploration. Pure logic: no Dagster import."""

from __future__ import annotations

import math

import pandas as pd

from personalization_assets.campaign.config import (
    CONTROL_ARM,
    METRIC_COLUMNS,
    CampaignConfig,
    binary_outcome,
)
from personalization_assets.experiment.results import OVERALL
from personalization_assets.explain.models import (
    FEATURE_LABELS,
    MODEL_FEATURES,
    PROFILE_FEATURES,
    ResponseModel,
    fit_response_model,
    response_sample,
    segment_profiles,
)
from personalization_assets.report.formatting import (
    DASH,
    coefficient,
    count,
    feature_value,
    is_finite,
    percent,
)
from personalization_assets.report.model import (
    Block,
    Bullets,
    Para,
    Pre,
    ReportInputs,
    Section,
    Subhead,
    Table,
)


def std_diff_fill(value: float) -> str | None:
    """A profile cell's shade: blue above the population, orange below, stronger up to 1.5 SD."""
    if not is_finite(value) or abs(value) < 0.1:
        return None
    strength = min(abs(value), 1.5) / 1.5
    base = (31, 78, 121) if value > 0 else (217, 130, 43)
    r, g, b = (round(255 - (255 - c) * (0.12 + 0.33 * strength)) for c in base)
    return f"#{r:02x}{g:02x}{b:02x}"


def interval_fill(low: float, high: float) -> str | None:
    """A coefficient cell's shade when its interval excludes 0: green above, red below."""
    if not (is_finite(low) and is_finite(high)) or (low <= 0 <= high):
        return None
    return "#e3f4ec" if low > 0 else "#fde8e8"


def response_blocks(model: ResponseModel, config: CampaignConfig, results: pd.DataFrame) -> list[Block]:
    """The response model's tone effects, feature and tone × feature coefficients, and what they show."""
    metric = config.metrics.primary
    sample_note = (f"Fitted on a seeded random sample of {model.n_used:,} of the {model.n_available:,} customers sent a "
                   f"message (seed {model.seed})" if model.n_used < model.n_available
                   else f"Fitted on all {model.n_used:,} customers sent a message")
    blocks = [Para(
        f"Logistic regression of {metric if binary_outcome(metric) == METRIC_COLUMNS[metric] else 'a purchase'} "
        f"({binary_outcome(metric)} = 1) on the customer features standardized to mean 0 "
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
        lift = percent(primary.loc[arm, "rel_lift"], True) if arm in primary.index else DASH
        arm_rows.append([arm, coefficient(t["coef"], t["ci_low"], t["ci_high"]), f"{math.exp(t['coef']):.3f}", lift])
    blocks.append(Table("response-arms", ["tone", "effect at the average customer (log-odds) [95% CI]", "odds ratio",
                                          "observed relative lift"], arm_rows,
                        col_keys=["arm", "coef", "odds_ratio", "rel_lift"]))
    columns = ["feature", "predicts response (control) [95% CI]", *[f"{a} × feature [95% CI]" for a in model.arms]]
    rows, fills = [], []
    for feature in model.features:
        main = model.term("feature", feature=feature)
        cells = [FEATURE_LABELS.get(feature, feature), coefficient(main["coef"], main["ci_low"], main["ci_high"])]
        row_fill = [None, interval_fill(main["ci_low"], main["ci_high"])]
        for arm in model.arms:
            t = model.term("interaction", feature=feature, arm=arm)
            cells.append(coefficient(t["coef"], t["ci_low"], t["ci_high"]))
            row_fill.append(interval_fill(t["ci_low"], t["ci_high"]))
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


def silhouette_reading(score: float) -> str:
    # Kaufman & Rousseeuw's reading of the average silhouette width.
    if score > 0.70:
        return "strong structure"
    if score > 0.50:
        return "reasonable structure"
    if score > 0.25:
        return "weak structure that may be artificial"
    return "no substantial structure"


def exploration_blocks(exploration: pd.DataFrame | None, segment_names: dict[str, str]) -> list[Block]:
    """The k-means clusters the data would propose, and the decision-tree rules that explain them."""
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
             f"score ({first['silhouette_by_k']}); {silhouette:.3f} means {silhouette_reading(silhouette)}. A depth-"
             f"{int(first['tree_depth'])} decision tree on the raw features explains the clusters with "
             f"{float(first['tree_accuracy']):.1%} accuracy on the 30% of the sample it was not trained on.", "note"),
    ]
    feature_columns = [f for f in MODEL_FEATURES]
    rows = []
    for r in exploration.itertuples(index=False):
        rows.append([
            f"cluster {int(r.cluster)}", count(r.customers), percent(r.share),
            *[feature_value(f, getattr(r, f"mean_{f}")) for f in feature_columns],
            f"{segment_names.get(r.top_segment, r.top_segment)} ({percent(r.top_segment_share)})",
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


def explain_section(inputs: ReportInputs, segment_names: dict[str, str]) -> Section:
    """Segment rules and profiles, the response model (fitted here, on a seeded sample), the exploration."""
    config, catalog = inputs.config, inputs.catalog
    blocks: list[Block] = [Subhead("What defines each segment")]
    sizes = inputs.assignments["segment"].astype(str).value_counts()
    total = int(sizes.sum())
    blocks.append(Table("segment-rules", ["segment", "id", "rule (first match wins, in this order)", "customers", "share"],
                        [[s.name, s.segment_id, s.rule_text(), count(sizes.get(s.segment_id, 0)),
                          percent(sizes.get(s.segment_id, 0) / total if total else float("nan"))] for s in catalog.segments],
                        left=(0, 1, 2), col_keys=["name", "segment", "rule", "customers", "share"]))
    if inputs.customer_segments is not None and len(inputs.customer_segments):
        profiles = segment_profiles(inputs.customer_segments, catalog)
        rows, fills = [], []
        for r in profiles.to_dict("records"):
            name = "all customers" if r["segment"] == "population" else segment_names.get(r["segment"], r["segment"])
            cells, row_fill = [name, count(r["customers"])], [None, None]
            for feature in PROFILE_FEATURES:
                diff = r[f"{feature}_std_diff"]
                suffix = f" ({diff:+.1f} SD)" if r["segment"] != "population" and is_finite(diff) else ""
                cells.append(feature_value(feature, r[feature]) + suffix)
                row_fill.append(None if r["segment"] == "population" else std_diff_fill(diff))
            rows.append(cells)
            fills.append(row_fill)
        blocks.append(Table("profiles", ["segment", "customers", *[FEATURE_LABELS[f] for f in PROFILE_FEATURES]], rows,
                            col_keys=["segment", "customers", *PROFILE_FEATURES],
                            row_attrs=[{"segment": s} for s in profiles["segment"]], fills=fills,
                            caption="Mean per segment against all customers of the wave; in parentheses the difference in "
                                    "population standard deviations (blue above the population, orange below)."))
    blocks.append(Subhead("Which customer features predict response, and whether the tone's effect differs by them"))
    if inputs.customer_segments is not None and inputs.engagement is not None and len(inputs.engagement):
        outcome = binary_outcome(config.metrics.primary)
        sample, available = response_sample(inputs.assignments, inputs.engagement, inputs.customer_segments, outcome,
                                            sample_size=inputs.sample_size, seed=inputs.seed)
        model = fit_response_model(sample, outcome, control=CONTROL_ARM, arms=config.arm_names, n_available=available,
                                   seed=inputs.seed, alpha=0.05)
        blocks += response_blocks(model, config, inputs.results)
    else:
        blocks.append(Para("No customer-level engagement was available to model response.", "note"))
    blocks.append(Subhead("k-means exploration: the segments the data would propose"))
    blocks += exploration_blocks(inputs.exploration, segment_names)
    return Section("explain", "Explainability", blocks)
