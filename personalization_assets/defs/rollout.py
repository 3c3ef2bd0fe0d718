"""Rollout stage (after a test on a share, `rollout.test_share`): the candidate policies' honest
values, the personalized-policy gate, and the send to everyone the test left out, with its holdout,
engagement, realized lift and report. These are their own assets: the test's never change."""

import dagster as dg
import numpy as np
import pandas as pd

from personalization_assets.audience.customers import OPTIONAL_TEXT_COLUMNS
from personalization_assets.audit.trail import STAGE_ROLLOUT
from personalization_assets.campaign.config import CONTROL_ARM, METRIC_COLUMNS
from personalization_assets.campaign.paths import reports_dir
from personalization_assets.defs.assignment import sendable_decisions
from personalization_assets.defs.engagement import take_engagement
from personalization_assets.defs.partitions import (
    ALL_SEGMENTS,
    ROLLOUT_GROUP,
    columns,
    per_wave,
    wave_out,
    wave_partitions,
)
from personalization_assets.defs.rendering import export_and_seal
from personalization_assets.defs.resources import AuditResource, CampaignResource
from personalization_assets.defs.types import (
    SCHEMAS,
    ExperimentResultsFrame,
    RolloutAssignmentsFrame,
)
from personalization_assets.experiment.engagement import (
    ANALYSED_COLUMNS,
    SOURCE_IMPORTED,
    SOURCE_SIMULATED,
    engagement_source,
    expected_outcomes,
)
from personalization_assets.experiment.gates import guardrail_blocked_arms
from personalization_assets.experiment.joins import PROFILE_COLUMNS, analysis_frame
from personalization_assets.experiment.policies import (
    campaign_test_data,
    evaluate_campaign_policies,
    personalized_gate_passes,
    qini_coefficient,
)
from personalization_assets.experiment.results import (
    OVERALL,
    compute_results,
    result_scopes,
    sample_ratio_mismatch,
)
from personalization_assets.experiment.rollout import (
    HOLDOUT,
    ROLLED_OUT,
    build_rollout_assignments,
    rollout_choices,
)
from personalization_assets.experiment.uplift import choice_drivers, uplift_features
from personalization_assets.messages.rendering import ROLLOUT_EXPORT_FILE
from personalization_assets.report.rollout import RolloutInputs, write_rollout_report
from personalization_assets.stats import srm_test

ROLLOUT_ARMS = (CONTROL_ARM, ROLLED_OUT)  # the rollout's analysis: its holdout (control) against what it sent


def _require_rollout(config) -> None:
    if config.rollout is None:
        raise dg.Failure("no rollout is configured: set rollout.test_share (and rollout.policy) in the campaign file to test on a "
                         "share of each segment and roll out to the rest")


@dg.multi_asset(
    partitions_def=wave_partitions,
    outs={
        "policy_values": wave_out(SCHEMAS["policy_values"]),
        "uplift_qini": wave_out(),
        "policy_drivers": wave_out(),
        "rollout_choices": wave_out(SCHEMAS["rollout_choices"]),
    },
    ins={
        "assignments": columns("customer_id", "segment", "arm", "sent", "hold_reason"),
        "engagement": columns(*ANALYSED_COLUMNS),
        "customer_segments": columns("customer_id", "segment", *PROFILE_COLUMNS),
        "experiment_results": columns("scope", "metric", "arm", "rate", "control_rate", "guardrail_margin", "guardrail_lower",
                                      "guardrail_upper"),
    },
    check_specs=[dg.AssetCheckSpec("personalized_policy_gate", asset="policy_values",
                                   description="The personalized policy ships only when the lower bound of its cross-fitted doubly "
                                               "robust gain over the best other policy is above 0")],
)
def policy_evaluation(
    context: dg.AssetExecutionContext, campaign: CampaignResource, assignments: pd.DataFrame, engagement: pd.DataFrame,
    customer_segments: pd.DataFrame, experiment_results: pd.DataFrame,
):
    """Each candidate policy's value from the test (doubly robust, cross-fitted, with intervals),
    the uplift model's Qini curve and drivers, and each waiting customer's two candidate arms."""
    config, wave = campaign.config, context.partition_key
    _require_rollout(config)
    segments = campaign.catalog.ids
    frame = analysis_frame(assignments, engagement, customer_segments, profile=PROFILE_COLUMNS)
    simulated = engagement_source(engagement) == SOURCE_SIMULATED
    # A tone that fails a guardrail on the whole test is never sent by any policy.
    blocked = guardrail_blocked_arms(experiment_results)
    data = campaign_test_data(frame, config, segments, blocked)
    evaluation, model = evaluate_campaign_policies(data, config, segments, sample_ratio_mismatch(assignments, config),
                                                   simulation=config.simulation if simulated else None)

    # Waiting: every customer of the wave the test did not assign (not a hash recomputed now: a
    # changed customers file or test share must neither skip nor re-send anyone).
    waiting = customer_segments.loc[~customer_segments["customer_id"].isin(assignments["customer_id"]).to_numpy()].reset_index(drop=True)
    features = uplift_features(waiting, segments)
    predicted = model.predict(features)
    best = model.best_arms(predicted)
    gain = predicted[np.arange(len(best)), best] - predicted[:, 0]
    # The winners and the model that were valued: the rollout ships exactly them.
    choices = rollout_choices(waiting, evaluation.winners, np.array(config.arm_names, dtype=object)[best], gain, wave)
    drivers = choice_drivers(model, features, seed=config.personalization.seed)

    values = evaluation.values.assign(wave=wave, engagement_source=SOURCE_SIMULATED if simulated else SOURCE_IMPORTED)
    gate = evaluation.gate
    source = "SIMULATED engagement" if simulated else "imported engagement"
    yield dg.Output(values[["wave", *evaluation.values.columns, "engagement_source"]], output_name="policy_values",
                    metadata={"dagster/row_count": len(values), "engagement": source, "folds": evaluation.folds,
                              "guardrail_blocked_arms": ", ".join(blocked) or "none",
                              **{f"value_{r.policy}": float(r.value) for r in values.itertuples()}})
    yield dg.Output(evaluation.qini.assign(wave=wave), output_name="uplift_qini",
                    metadata={"qini_coefficient": qini_coefficient(evaluation.qini)})
    yield dg.Output(drivers.assign(wave=wave), output_name="policy_drivers",
                    metadata={"top_driver": str(drivers.iloc[0]["feature"]) if len(drivers) else "none"})
    yield dg.Output(choices, output_name="rollout_choices",
                    metadata={"dagster/row_count": len(choices), **{f"personalized_{arm}": int(n) for arm, n in
                                                                  choices["personalized_arm"].value_counts().items()}})
    yield dg.AssetCheckResult(
        check_name="personalized_policy_gate", asset_key="policy_values", passed=gate.passed,
        # Not blocking: the rollout falls back to the winners when it fails, and applies the same rule itself.
        severity=dg.AssetCheckSeverity.WARN, description=gate.summary(),
        metadata={"baseline": gate.baseline, "gain": gate.difference, "gain_ci_low": gate.ci_low, "gain_ci_high": gate.ci_high,
                  "engagement": source},
    )


@dg.asset(
    **per_wave(SCHEMAS["rollout_assignments"], group=ROLLOUT_GROUP),
    ins={"message_variants": ALL_SEGMENTS, "safety_verdicts": ALL_SEGMENTS,
         "customer_segments": columns("customer_id", "segment", "contact_hold"), "policy_values": columns("policy", "diff_ci_low", "gate_passed", "engagement_source")},
    check_specs=[dg.AssetCheckSpec("holdout_ratio", asset="rollout_assignments",
                                   description="Chi-square of holdout vs rollout counts against rollout.holdout_share; flagged at p < 0.001")],
    dagster_type=RolloutAssignmentsFrame,
)
def rollout_assignments(
    context: dg.AssetExecutionContext, campaign: CampaignResource, audit: AuditResource, rollout_choices: pd.DataFrame,
    policy_values: pd.DataFrame, customer_segments: pd.DataFrame, message_variants: pd.DataFrame, safety_verdicts: pd.DataFrame,
):
    """Each waiting customer's message by the rollout policy (personalized only where its gate
    passed), a randomized holdout on control; held out exactly as in the test; sealed in the audit trail."""
    config = campaign.config
    _require_rollout(config)
    source = set(policy_values["engagement_source"].dropna().astype(str)) if "engagement_source" in policy_values else {SOURCE_SIMULATED}
    if SOURCE_SIMULATED in source and not config.rollout.from_simulated_engagement:
        raise dg.Failure(f"rollout_assignments not made: the test's engagement for wave {context.partition_key} is SIMULATED (no "
                         f"{config.paths.engagement_file(context.partition_key)} yet). A rollout is decided on the test's real "
                         "engagement: the engagement sensor runs it when the export arrives. For a demonstration on simulated "
                         "data, set rollout.from_simulated_engagement: true.")
    decisions = sendable_decisions(config, audit, message_variants, safety_verdicts, "rollout_assignments")
    passed = personalized_gate_passes(policy_values)
    frame = build_rollout_assignments(
        customer_segments, rollout_choices, message_variants, decisions, settings=config.rollout, experiment_id=config.experiment_id,
        arms=config.arm_names, wave=context.partition_key, personalized_passed=passed,
    )
    sealed = audit.log().append_send_decisions(context.run_id, context.partition_key, frame, STAGE_ROLLOUT)
    groups = frame["rollout_group"].value_counts()
    share = config.rollout.holdout_share
    srm = srm_test({HOLDOUT: int(groups.get(HOLDOUT, 0)), ROLLED_OUT: int(groups.get(ROLLED_OUT, 0))}, {HOLDOUT: share, ROLLED_OUT: 1 - share})
    held = int((~frame["sent"]).sum())
    yield dg.Output(frame, metadata={
        "dagster/row_count": len(frame), "policy": str(frame["policy"].iloc[0]) if len(frame) else "none",
        "personalized_gate": "passed" if passed else "not passed", "sent": len(frame) - held, "held_out": held,
        "audit_record": sealed["seq"], **{f"arm_{arm}": int(n) for arm, n in frame.loc[frame["sent"], "arm"].value_counts().items()},
    })
    yield dg.AssetCheckResult(check_name="holdout_ratio", passed=not srm.flagged, severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"chi2": srm.chi2, "p_value": srm.p_value, **{f"observed_{k}": v for k, v in srm.observed.items()}})


@dg.asset(
    **per_wave(group=ROLLOUT_GROUP),
    ins={"message_variants": ALL_SEGMENTS, "rollout_assignments": columns("wave", "customer_id", "segment", "arm", "variant_id", "sent"),
         "customers": columns("customer_id", *OPTIONAL_TEXT_COLUMNS)},
)
def rollout_messages(context: dg.AssetExecutionContext, audit: AuditResource, rollout_assignments: pd.DataFrame, customers: pd.DataFrame,
                     message_variants: pd.DataFrame) -> pd.DataFrame:
    """The rollout's send list; its emails go to $CPO_HOME/exports/<wave>/rollout_messages.parquet, sealed in the audit trail."""
    return export_and_seal(context, audit, rollout_assignments, customers, message_variants, ROLLOUT_EXPORT_FILE, STAGE_ROLLOUT)


@dg.asset(
    **per_wave(group=ROLLOUT_GROUP),
    deps=[dg.AssetKey("rollout_messages")],
    ins={"rollout_assignments": columns("customer_id", "segment", "arm", "sent", "hold_reason"),
         "customer_segments": columns("customer_id", *PROFILE_COLUMNS)},
)
def rollout_engagement(context: dg.AssetExecutionContext, campaign: CampaignResource, rollout_assignments: pd.DataFrame,
                       customer_segments: pd.DataFrame) -> pd.DataFrame:
    """The rollout send's opens, clicks, conversions: paths.engagement/rollout/<wave>.csv if present, else SIMULATED."""
    config = campaign.config
    return take_engagement(context, config, rollout_assignments, customer_segments,
                           config.paths.rollout_engagement_file(context.partition_key), salt=":rollout")


@dg.asset(
    **per_wave(SCHEMAS["experiment_results"], group=ROLLOUT_GROUP),
    ins={"rollout_assignments": columns("customer_id", "segment", "arm", "sent", "rollout_group"),
         "rollout_engagement": columns(*ANALYSED_COLUMNS),
         "customer_segments": columns("customer_id", *PROFILE_COLUMNS)},
    check_specs=[dg.AssetCheckSpec("rollout_lift", asset="rollout_results",
                                   description="The rollout's realized primary-metric lift over its holdout is above 0 (interval)")],
    dagster_type=ExperimentResultsFrame,
)
def rollout_results(context: dg.AssetExecutionContext, campaign: CampaignResource, rollout_assignments: pd.DataFrame,
                    rollout_engagement: pd.DataFrame, customer_segments: pd.DataFrame):
    """The rollout's realized lift: what it sent (arm `rollout`) against its randomized holdout
    (arm `control`), overall and per segment, with the wave's statistics."""
    config = campaign.config
    _require_rollout(config)
    by_group = rollout_assignments.assign(arm=np.where(rollout_assignments["rollout_group"] == HOLDOUT, CONTROL_ARM, ROLLED_OUT))
    frame = analysis_frame(by_group, rollout_engagement, customer_segments, profile=PROFILE_COLUMNS)
    source = engagement_source(rollout_engagement)
    scopes = result_scopes(campaign.catalog.ids, pd.unique(frame["segment"]))
    results = compute_results(frame, config, wave=context.partition_key, segments=scopes[1:], source=source, arms=ROLLOUT_ARMS)
    row = results[(results["scope"] == OVERALL) & (results["metric"] == config.metrics.primary) & (results["arm"] == ROLLED_OUT)]
    lift, low, high = (float(row[c].iloc[0]) if len(row) else float("nan") for c in ("rel_lift", "rel_lift_ci_low", "rel_lift_ci_high"))
    metadata = {"dagster/row_count": len(results), "engagement_source": source, "rel_lift": lift, "rel_lift_ci_low": low, "rel_lift_ci_high": high}
    if source == SOURCE_SIMULATED:
        # What the simulator says the rollout's picks are worth, against control for the same customers.
        sent = frame[frame["arm"] == ROLLED_OUT]
        picked = rollout_assignments.set_index("customer_id").loc[sent["customer_id"], "arm"].to_numpy()
        outcome = METRIC_COLUMNS[config.metrics.primary]
        true_rate = expected_outcomes(sent, config.simulation, picked)[outcome].mean()
        control_rate = expected_outcomes(sent, config.simulation, np.full(len(sent), CONTROL_ARM))[outcome].mean()
        metadata["true_rel_lift_simulated"] = float(true_rate / control_rate - 1) if control_rate else float("nan")
    yield dg.Output(results, metadata=metadata)
    yield dg.AssetCheckResult(
        check_name="rollout_lift", passed=bool(low > 0), severity=dg.AssetCheckSeverity.WARN,
        description=f"rollout vs holdout on {config.metrics.primary}: {lift:+.1%} [{low:+.1%}, {high:+.1%}]" if np.isfinite(lift)
        else "rollout vs holdout: not measurable", metadata=metadata,
    )


@dg.asset(**per_wave(group=ROLLOUT_GROUP), ins={"rollout_assignments": columns("segment", "arm", "sent", "hold_reason", "rollout_group", "policy")})
def rollout_report(
    context: dg.AssetExecutionContext, campaign: CampaignResource, policy_values: pd.DataFrame, uplift_qini: pd.DataFrame,
    policy_drivers: pd.DataFrame, rollout_assignments: pd.DataFrame, rollout_results: pd.DataFrame,
) -> dg.MaterializeResult:
    """The rollout's report (HTML and PDF under $CPO_HOME/reports/<wave>/rollout.*): the policies
    side by side, the Qini curve, what drives the personalized choice, and the realized lift."""
    files = write_rollout_report(reports_dir() / context.partition_key, RolloutInputs(
        config=campaign.config, catalog=campaign.catalog, wave=context.partition_key, policy_values=policy_values,
        qini=uplift_qini, drivers=policy_drivers, assignments=rollout_assignments, results=rollout_results,
    ))
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(files.html)), "pdf": dg.MetadataValue.path(str(files.pdf)),
                                          "summary": dg.MetadataValue.md(files.markdown), "headline": files.report.headline})
