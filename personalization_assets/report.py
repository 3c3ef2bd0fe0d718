"""The wave report: a self-contained HTML page (no external references) and a Markdown headline.

Every number is computed from the tables passed in; nothing is typed in by hand.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import pandas as pd

from personalization_assets.config import CONTROL_ARM, CampaignConfig
from personalization_assets.engagement import SOURCE_SIMULATED
from personalization_assets.gates import rollout_recommendations
from personalization_assets.results import OVERALL, campaign_lift_gate
from personalization_assets.segmentation import SegmentCatalog

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2933;padding:0 1rem}
h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:1px solid #d9e2ec;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}th,td{border:1px solid #d9e2ec;padding:.3rem .6rem;text-align:right}
th{background:#f0f4f8}td.l,th.l{text-align:left}.banner{background:#fff3c4;border:1px solid #f0b429;padding:.6rem 1rem;border-radius:4px}
.pass{color:#0c6b58;font-weight:600}.fail{color:#ab091e;font-weight:600}.muted{color:#627d98;font-size:.85rem}
"""


def _pct(value: float, signed: bool = False) -> str:
    if pd.isna(value):
        return "–"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _p(value: float) -> str:
    return "–" if pd.isna(value) else (f"{value:.4f}" if value >= 1e-4 else "<0.0001")


def _table(frame: pd.DataFrame, left: tuple[str, ...] = ()) -> str:
    head = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(str(c))}</th>' for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if c in left else ""}">{html.escape(str(v))}</td>' for c, v in row.items()) + "</tr>"
        for _, row in frame.iterrows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def results_display(results: pd.DataFrame, scope: str, metrics: tuple[str, ...]) -> pd.DataFrame:
    rows = results[(results["scope"] == scope) & (results["metric"].isin(metrics))]
    return pd.DataFrame(
        {
            "metric": rows["metric"],
            "arm": rows["arm"],
            "n": rows["n"],
            "rate": rows["rate"].map(_pct),
            "relative lift": rows["rel_lift"].map(lambda v: _pct(v, True)),
            "95% CI": [
                "–" if pd.isna(lo) else f"[{lo:+.1%}, {hi:+.1%}]" for lo, hi in zip(rows["rel_lift_ci_low"], rows["rel_lift_ci_high"])
            ],
            "p (Holm)": rows["p_value_adjusted"].map(_p),
            "significant": rows["significant"].map(lambda s: "yes" if s else "no"),
            "CUPED lift": rows["cuped_rel_lift"].map(lambda v: _pct(v, True)),
            "P(beat control)": rows["chance_to_beat_control"].map(_pct),
            "MDE": rows["mde"].map(_pct),
        }
    )


def design_table(assignments: pd.DataFrame, config: CampaignConfig) -> pd.DataFrame:
    counts = assignments.groupby("arm", observed=True).agg(assigned=("customer_id", "size"), sent=("sent", "sum"))
    counts = counts.reindex(list(config.arms), fill_value=0)
    return pd.DataFrame(
        {
            "arm": counts.index,
            "weight": [f"{config.arm_weights[a]:.0%}" for a in counts.index],
            "assigned": counts["assigned"].astype(int).to_numpy(),
            "sent": counts["sent"].astype(int).to_numpy(),
            "held out (variant blocked)": (counts["assigned"] - counts["sent"]).astype(int).to_numpy(),
        }
    )


def write_report(
    out_dir: Path,
    config: CampaignConfig,
    catalog: SegmentCatalog,
    *,
    wave: str,
    results: pd.DataFrame,
    assignments: pd.DataFrame,
    verdicts: pd.DataFrame,
    variants: pd.DataFrame,
) -> tuple[Path, str]:
    """Write `report.html` into `out_dir`; returns its path and a Markdown headline for the UI."""
    simulated = bool((results["engagement_source"] == SOURCE_SIMULATED).any())
    gate = campaign_lift_gate(results, assignments, config)
    scopes = [OVERALL, *[s for s in catalog.ids if s in set(results["scope"])]]
    rollout = rollout_recommendations(
        results, scopes=scopes, primary_metric=config.primary_metric, minimum_lift=config.minimum_lift, alpha=config.alpha
    )
    title = f"Campaign {config.campaign_id} — wave {wave}" + (" (SIMULATED ENGAGEMENT)" if simulated else "")
    headline = (
        f"**Winner: {gate.best_arm}** ({_pct(gate.rel_lift, True)} {config.primary_metric}, adjusted p {_p(gate.p_value_adjusted)})"
        if gate.passed
        else f"**No reliable winner** — {'; '.join(gate.failures)}"
    )
    segment_sizes = assignments.groupby("segment").size()
    segments_frame = pd.DataFrame(
        {
            "segment": [s.segment_id for s in catalog.segments],
            "name": [s.name for s in catalog.segments],
            "rule": [s.rule_text() for s in catalog.segments],
            "customers": [int(segment_sizes.get(s.segment_id, 0)) for s in catalog.segments],
        }
    )
    per_segment = results[(results["scope"] != OVERALL)]
    verdict_view = verdicts.drop_duplicates("variant_id")[["variant_id", "segment", "decision", "reasons"]].copy()
    verdict_view.loc[verdict_view["variant_id"] == "control", "segment"] = "(all)"
    variant_view = variants.drop_duplicates("variant_id")[["variant_id", "arm", "subject", "citations", "backend", "model"]]
    rollout_view = rollout[["scope", "recommended_arm", "best_arm", "reason"]].copy()
    rollout_view["rel_lift"] = rollout["rel_lift"].map(lambda v: _pct(v, True))

    sections = [
        f"<h1>{html.escape(title)}</h1>",
        '<p class="banner">Engagement in this report is <b>simulated</b> from the campaign\'s configured ground truth; '
        "it demonstrates the pipeline, not real customer behaviour.</p>" if simulated else "",
        "<h2>Summary</h2>",
        f'<p class="{"pass" if gate.passed else "fail"}">{html.escape(gate.summary())}</p>',
        _table(rollout_view, left=("scope", "recommended_arm", "best_arm", "reason")),
        "<h2>Design</h2>",
        f"<p>Experiment <code>{html.escape(config.experiment_id)}</code>; primary metric {config.primary_metric}; "
        f"alpha {config.alpha:g}; minimum lift {config.minimum_lift:.0%}; sample-ratio mismatch p = {_p(gate.srm_p_value)}"
        f"{' (FLAGGED)' if gate.srm_flagged else ''}.</p>",
        _table(design_table(assignments, config), left=("arm",)),
        _table(segments_frame, left=("segment", "name", "rule")),
        "<h2>Results (overall)</h2>",
        _table(results_display(results, OVERALL, config.metrics), left=("metric", "arm")),
        "<h2>Results per segment (primary metric)</h2>",
        *[
            f"<h3>{html.escape(scope)}</h3>" + _table(results_display(per_segment, scope, (config.primary_metric,)), left=("metric", "arm"))
            for scope in scopes[1:]
        ],
        "<h2>Safety and quality</h2>",
        _table(verdict_view, left=("variant_id", "segment", "decision", "reasons")),
        _table(variant_view, left=("variant_id", "arm", "subject", "citations", "backend", "model")),
        f'<p class="muted">Policy {html.escape(config.safety.policy_version)}; generated '
        f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}; control arm '{CONTROL_ARM}'.</p>",
    ]
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(document)
    summary = f"### {title}\n\n{headline}\n\nReport: `{path}`"
    return path, summary
