"""The short summary `cpo run` prints after a wave, read back from the warehouse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from personalization_assets.campaign.config import CampaignConfig
from personalization_assets.campaign.paths import (
    WAREHOUSE_SCHEMA,
    exports_dir,
    reports_dir,
    table_exists,
)
from personalization_assets.experiment.engagement import SOURCE_SIMULATED
from personalization_assets.experiment.results import weights_vary
from personalization_assets.messages.rendering import EXPORT_FILE
from personalization_assets.report import REPORT_HTML, REPORT_PDF, results_display
from personalization_assets.report.formatting import (
    metric_gain,
    metric_gain_interval,
    metric_value,
)
from personalization_assets.warehouse import Warehouse, as_warehouse


def _query(connection, sql: str, *params: object) -> pd.DataFrame:
    return connection.execute(sql.replace("{schema}", WAREHOUSE_SCHEMA), list(params)).df()


WAVE_SUMMARY_TABLES = ("customer_segments", "safety_verdicts", "assignments", "experiment_results", "rollout_recommendation",
                       "personalized_messages", "arm_allocation")


def wave_summary(warehouse: Warehouse | Path, config: CampaignConfig, wave: str) -> str:
    with as_warehouse(warehouse).reader(WAVE_SUMMARY_TABLES, wave=wave) as connection:
        sizes = _query(connection, "SELECT segment, count(*) AS customers FROM {schema}.customer_segments WHERE wave = ? GROUP BY segment ORDER BY customers DESC", wave)
        verdicts = _query(connection, "SELECT DISTINCT variant_id, decision, reasons FROM {schema}.safety_verdicts ORDER BY variant_id")
        arms = _query(
            connection,
            "SELECT arm, count(*) AS assigned, count(*) FILTER (WHERE sent) AS sent, count(*) FILTER (WHERE NOT sent) AS held_out "
            "FROM {schema}.assignments WHERE wave = ? GROUP BY arm ORDER BY arm",
            wave,
        )
        holds = _query(connection, "SELECT hold_reason, count(*) AS customers FROM {schema}.assignments WHERE wave = ? AND NOT sent "
                               "GROUP BY hold_reason ORDER BY customers DESC, hold_reason", wave)
        results = _query(connection, "SELECT * FROM {schema}.experiment_results WHERE wave = ?", wave)
        rollout = _query(connection, "SELECT scope, recommended_arm, reason FROM {schema}.rollout_recommendation WHERE wave = ?", wave)
        emails = int(_query(connection, "SELECT count(*) AS n FROM {schema}.personalized_messages WHERE wave = ?", wave)["n"].iloc[0])
        allocation = (_query(connection, "SELECT segment, arm, allocation, weight, adapted FROM {schema}.arm_allocation WHERE wave = ?",
                             wave) if table_exists(connection, "arm_allocation")
                      else pd.DataFrame(columns=["segment", "arm", "allocation", "weight", "adapted"]))
    blocked = verdicts[verdicts["decision"] != "approved"]
    simulated = bool((results["engagement_source"] == SOURCE_SIMULATED).any())
    lines = [
        "segments (customers): " + ", ".join(f"{r.segment} {r.customers}" for r in sizes.itertuples()),
        f"variants: {len(verdicts) - len(blocked)} approved, {len(blocked)} blocked"
        + "".join(f"\n  blocked {r.variant_id}: {r.reasons}" for r in blocked.itertuples()),
        "arms: " + ", ".join(f"{r.arm} {r.assigned} assigned / {r.sent} sent / {r.held_out} held" for r in arms.itertuples()),
        ("held out (not sent, not analysed): " + ", ".join(f"{r.hold_reason} {r.customers}" for r in holds.itertuples())) if len(holds) else "",
        allocation_line(allocation) if (allocation["allocation"] == "thompson").any() else "",
        f"lift, overall{' stratified by segment' if weights_vary(allocation) else ''}{' (engagement SIMULATED)' if simulated else ''}:",
        results_display(results, "overall", (config.metrics.primary,)).to_string(index=False),
        guardrail_line(results),
        incremental_line(results),
        "rollout: " + "; ".join(f"{r.scope} -> {r.recommended_arm}" for r in rollout.itertuples()),
        f"  overall: {rollout.loc[rollout['scope'] == 'overall', 'reason'].iloc[0]}" if len(rollout) else "",
        f"emails: {exports_dir() / wave / EXPORT_FILE} ({emails} rendered)",
        f"report: {reports_dir() / wave / REPORT_HTML}",
        f"report (PDF): {reports_dir() / wave / REPORT_PDF}",
    ]
    return "\n".join(line for line in lines if line)


def allocation_line(allocation: pd.DataFrame) -> str:
    """Thompson allocation's weights this wave: per adapted segment, each arm's share."""
    adapted = allocation[allocation["adapted"].astype(bool)]
    if not len(adapted):
        return ("allocation: thompson; every segment on the configured weights (a tone without thompson.min_exposures earlier "
                "customers there, or no earlier wave with imported engagement)")
    shares = "; ".join(f"{segment} " + ", ".join(f"{r.arm} {r.weight:.0%}" for r in part.itertuples())
                       for segment, part in adapted.groupby("segment", sort=False))
    return f"allocation: thompson; adapted in {adapted['segment'].nunique()} of {allocation['segment'].nunique()} segments: {shares}"


def incremental_line(results: pd.DataFrame) -> str:
    """The email's incremental effect on conversions against the no-email holdout ("" without one)."""
    from personalization_assets.campaign.config import NO_EMAIL_ARM
    from personalization_assets.experiment.results import VS_NO_EMAIL

    rows = results[(results["scope"] == VS_NO_EMAIL) & (results["arm"] != NO_EMAIL_ARM)]
    if rows.empty:
        return ""
    def effect(r) -> str:
        if not np.isfinite(r.rel_lift):  # e.g. a holdout without any conversion: no ratio to state
            return f"{r.arm} {r.metric} not measurable ({r.unmeasurable_reason or 'no relative lift'})"
        interval = (f" [{r.rel_lift_ci_low:+.1%}, {r.rel_lift_ci_high:+.1%}]"
                    if np.isfinite(r.rel_lift_ci_low) and np.isfinite(r.rel_lift_ci_high) else "")
        return f"{r.arm} {r.metric} {r.rel_lift:+.1%}{interval}"

    return "the email's effect vs the no-email holdout: " + "; ".join(effect(r) for r in rows.itertuples())


def guardrail_line(results: pd.DataFrame) -> str:
    """Each tone's guardrails overall, in one line ("" when none was measured)."""
    rows = results[(results["scope"] == "overall") & results["guardrail_margin"].notna()] if "guardrail_margin" in results else results.iloc[:0]
    from personalization_assets.experiment.gates import guardrail_verdict

    verdicts = {"holds": "holds", "unproven": "not shown within the margin (no significant rise)",
                "fails": "FAILS: significant rise, not shown within the margin; cannot win"}
    return "guardrails (rise over control, one-sided bounds, margin):\n" + "\n".join(
        f"  {r.arm} {r.metric}: {(r.rate - r.control_rate) * 100:+.2f} pts [{r.guardrail_lower * 100:+.2f}, "
        f"{r.guardrail_upper * 100:+.2f}], margin +{r.guardrail_margin * 100:.2f}: "
        f"{verdicts[guardrail_verdict(r.guardrail_lower, r.guardrail_upper, r.guardrail_margin)]}"
        for r in rows.itertuples()) if len(rows) else ""


def wave_rows_stored(warehouse: Warehouse | Path, table: str, wave: str) -> bool:
    """Whether the warehouse holds rows of `wave` in `table` (e.g. the wave was decided: assignments)."""
    return as_warehouse(warehouse).has_rows(table, wave)


def rollout_sent(warehouse: Warehouse | Path, wave: str) -> bool:
    """Whether the warehouse holds a rollout's send decisions for `wave` (its emails were exported)."""
    return wave_rows_stored(warehouse, "rollout_assignments", wave)


def delivery_summary(config: CampaignConfig, wave: str, *, rehearsal: bool = False) -> tuple[str, int, int]:
    """The wave's delivery records in a few lines (the outbox's own when `rehearsal`), how many
    messages are still open (the next send takes them) and how many failed for good."""
    from personalization_assets.campaign.paths import delivery_dir
    from personalization_assets.delivery.ledger import (
        EXPORTED,
        FAILED,
        LEDGER_FILE,
        OPEN_STATUSES,
        STATUS_MEANINGS,
        Ledger,
        rehearsal_ledger_path,
    )

    path = rehearsal_ledger_path(delivery_dir() / LEDGER_FILE) if rehearsal else delivery_dir() / LEDGER_FILE
    with Ledger(path) as ledger:
        rows = ledger.rows(config.campaign_id, wave)
    counts = rows["status"].value_counts()
    kind = "the outbox's records (a rehearsal: no frequency cap counts them, a real send sends them again)" if rehearsal else "the ledger"
    lines = [f"delivery of wave {wave}: {len(rows)} messages in {kind} ({path})"]
    lines += [f"  {status}: {int(counts[status])} ({STATUS_MEANINGS[status]})" for status in STATUS_MEANINGS if status in counts]
    lines += [f"  {reply}" for reply in rows.loc[rows["status"] == EXPORTED, "reply"].drop_duplicates()]
    left, failed = int(counts.reindex(list(OPEN_STATUSES)).fillna(0).sum()), int(counts.get(FAILED, 0))
    if left:
        lines.append(f"{left} messages are not delivered yet: run `cpo send --wave {wave}` again to retry them (nothing is sent twice)")
    if failed:
        lines.append(f"{failed} messages failed for good (refused or deferred delivery.max_attempts times); their replies are in the "
                     "deliveries table")
    return "\n".join(lines), left, failed


def rollout_summary(warehouse: Warehouse | Path, config: CampaignConfig, wave: str) -> str:
    """What `cpo run` prints after a rollout: the policies' values, what was sent, the realized lift."""
    from personalization_assets.experiment.rollout import ROLLED_OUT
    from personalization_assets.messages.rendering import ROLLOUT_EXPORT_FILE
    from personalization_assets.report.rollout import ROLLOUT_HTML

    with as_warehouse(warehouse).reader(["policy_values", "rollout_assignments", "rollout_results"], wave=wave) as connection:
        values = _query(connection, "SELECT * FROM {schema}.policy_values WHERE wave = ?", wave)
        sent = _query(connection, "SELECT policy, rollout_group, arm, count(*) AS customers FROM {schema}.rollout_assignments "
                                  "WHERE wave = ? AND sent GROUP BY ALL ORDER BY rollout_group, arm", wave)
        results = _query(connection, "SELECT * FROM {schema}.rollout_results WHERE wave = ? AND scope = 'overall' AND metric = ? "
                                     "AND arm = ?", wave, config.metrics.primary, ROLLED_OUT)
    simulated = bool(values["true_value"].notna().any())
    metric = config.metrics.primary
    table = values.assign(
        value=[metric_value(metric, v, digits=2) for v in values["value"]],
        interval=[f"[{metric_value(metric, lo, 2)}, {metric_value(metric, hi, 2)}]" for lo, hi in
                  zip(values["ci_low"], values["ci_high"], strict=True)],
        gain=[f"{metric_gain(metric, d)} {metric_gain_interval(metric, lo, hi)}" for d, lo, hi in
              zip(values["diff_vs_baseline"], values["diff_ci_low"], values["diff_ci_high"], strict=True)],
        **({"true_value": [metric_value(metric, v, digits=2) for v in values["true_value"]]} if simulated else {}),
    )[["policy", "value", "interval", "gain", *(["true_value"] if simulated else [])]]
    policy = str(sent["policy"].iloc[0]) if len(sent) else "none"
    realized = (f"{results['rel_lift'].iloc[0]:+.1%} [{results['rel_lift_ci_low'].iloc[0]:+.1%}, {results['rel_lift_ci_high'].iloc[0]:+.1%}]"
                if len(results) else "not measurable")
    source = " (engagement SIMULATED)" if len(results) and (results["engagement_source"] == SOURCE_SIMULATED).any() else ""
    return "\n".join([
        f"policies, valued on the test ({config.rollout.test_share:.0%} of each segment; doubly robust, cross-fitted"
        f"{'; true values from the simulator' if simulated else ''}):",
        table.to_string(index=False),
        f"rollout by the {policy} policy: " + ", ".join(f"{r.rollout_group}/{r.arm} {r.customers}" for r in sent.itertuples()),
        f"realized {config.metrics.primary} lift over the holdout{source}: {realized}",
        f"emails: {exports_dir() / wave / ROLLOUT_EXPORT_FILE}",
        f"report: {reports_dir() / wave / ROLLOUT_HTML}",
    ])
