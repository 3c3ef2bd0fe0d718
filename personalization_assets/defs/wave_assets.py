"""Per-wave customer-level assets: segments, assignment, messages, engagement, results, report.

Each wave is its own time partition: next week's run never overwrites this week's experiment.
They read every segment partition of the content assets through an AllPartitionMapping.
"""


import dagster as dg
import pandas as pd
from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type

from personalization_assets.assignment import build_assignments
from personalization_assets.config import reports_dir
from personalization_assets.customers import TIERS, load_customers
from personalization_assets.defs.content_assets import ALL_SEGMENTS
from personalization_assets.defs.resources import AuditResource, CampaignResource
from personalization_assets.engagement import SOURCE_SIMULATED, import_engagement, simulate_engagement
from personalization_assets.gates import evaluate_safety_gate, rollout_recommendations
from personalization_assets.rendering import render_messages
from personalization_assets.report import write_report
from personalization_assets.results import OVERALL, analysis_frame, campaign_lift_gate, compute_results, sample_ratio_mismatch
from personalization_assets.segmentation import assign_segments, segment_sizes

WAVE_GROUP = "wave"
# Waves are stored as 'YYYY-MM-DD' text; the cast lets the IO manager select a week's rows.
WAVE_PARTITION_EXPR = "CAST(wave AS TIMESTAMP)"

CustomerDataFrame = create_dagster_pandas_dataframe_type(
    name="CustomerDataFrame",
    description="Customers that passed the data contract (DESIGN section 5).",
    columns=[
        PandasColumn.string_column("customer_id", unique=True, non_nullable=True),
        PandasColumn.integer_column("age", min_value=13, max_value=120, non_nullable=True),
        PandasColumn.string_column("location", non_nullable=True),
        PandasColumn.categorical_column("tier", categories=set(TIERS), non_nullable=True),
        PandasColumn.integer_column("purchase_frequency", min_value=0, non_nullable=True),
        PandasColumn.float_column("avg_order_value", min_value=0, non_nullable=True),
        PandasColumn.integer_column("last_engagement_days", min_value=0, non_nullable=True),
        PandasColumn.float_column("historical_open_rate", min_value=0, max_value=1, non_nullable=True),
        PandasColumn.float_column("historical_click_rate", min_value=0, max_value=1, non_nullable=True),
    ],
)


def build_wave_assets(wave_partitions: dg.PartitionsDefinition) -> list:
    per_wave = dict(partitions_def=wave_partitions, metadata={"partition_expr": WAVE_PARTITION_EXPR}, group_name=WAVE_GROUP)

    @dg.asset(group_name=WAVE_GROUP, dagster_type=CustomerDataFrame)
    def customers(context: dg.AssetExecutionContext, campaign: CampaignResource) -> pd.DataFrame:
        """The customer file, validated against its contract; a bad file stops the wave here."""
        path = campaign.config.customers_path
        frame = load_customers(path)
        context.add_output_metadata({"dagster/row_count": len(frame), "source": str(path)})
        return frame

    @dg.asset(**per_wave)
    def customer_segments(context: dg.AssetExecutionContext, campaign: CampaignResource, customers: pd.DataFrame) -> pd.DataFrame:
        """This wave's snapshot of customers, each with its segment (first matching rule wins)."""
        segments = assign_segments(customers, campaign.catalog)
        frame = customers.assign(segment=segments.astype(str), wave=context.partition_key)
        sizes = segment_sizes(segments, campaign.catalog)
        context.add_output_metadata({"dagster/row_count": len(frame), **{f"segment_{k}": v for k, v in sizes.items()}})
        return frame

    @dg.asset(
        **per_wave,
        ins={"message_variants": ALL_SEGMENTS, "safety_verdicts": ALL_SEGMENTS},
        check_specs=[dg.AssetCheckSpec("sample_ratio_mismatch", asset="assignments", description="Chi-square of arm counts vs weights; flagged at p < 0.001")],
    )
    def assignments(
        context: dg.AssetExecutionContext,
        campaign: CampaignResource,
        audit: AuditResource,
        customer_segments: pd.DataFrame,
        message_variants: pd.DataFrame,
        safety_verdicts: pd.DataFrame,
    ):
        """Each customer's arm (deterministic hash), variant, and whether it is sent."""
        config = campaign.config
        # The gate holds even when the safety check ran in another run (or not at all).
        gate = evaluate_safety_gate(safety_verdicts, config.safety.pass_rate_threshold)
        if not gate.passed:
            raise dg.Failure(f"assignments not made: {gate.summary()}; blocked: {', '.join(gate.blocked_variants)}")
        frame = build_assignments(
            customer_segments, message_variants, safety_verdicts,
            experiment_id=config.experiment_id, weights=config.arm_weights, wave=context.partition_key,
        )
        sealed = audit.log().append_send_decisions(context.run_id, context.partition_key, frame)
        srm = sample_ratio_mismatch(frame, config)
        held = int((~frame["sent"]).sum())
        yield dg.Output(frame, metadata={"dagster/row_count": len(frame), "sent": len(frame) - held, "held_out": held, "audit_record": sealed["seq"],
                                         **{f"arm_{k}": v for k, v in srm.observed.items()}})
        yield dg.AssetCheckResult(
            check_name="sample_ratio_mismatch",
            passed=not srm.flagged,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"chi2": srm.chi2, "p_value": srm.p_value, **{f"observed_{k}": v for k, v in srm.observed.items()},
                      **{f"expected_{k}": round(v, 1) for k, v in srm.expected.items()}},
        )

    @dg.asset(**per_wave, ins={"message_variants": ALL_SEGMENTS})
    def personalized_messages(
        context: dg.AssetExecutionContext, assignments: pd.DataFrame, customer_segments: pd.DataFrame, message_variants: pd.DataFrame
    ) -> pd.DataFrame:
        """Send-ready emails: the customer's approved variant with merge fields filled in locally."""
        frame = render_messages(assignments, customer_segments, message_variants)
        context.add_output_metadata({"dagster/row_count": len(frame)})
        return frame

    @dg.asset(**per_wave, deps=[personalized_messages])
    def engagement(
        context: dg.AssetExecutionContext, campaign: CampaignResource, assignments: pd.DataFrame, customer_segments: pd.DataFrame
    ) -> pd.DataFrame:
        """Opens, clicks, conversions: the wave's ESP export if present, else SIMULATED from ground truth."""
        config, wave = campaign.config, context.partition_key
        sent = assignments.loc[assignments["sent"].astype(bool), ["customer_id", "segment", "arm"]].merge(
            customer_segments[["customer_id", "historical_open_rate", "historical_click_rate"]], on="customer_id"
        )
        path = config.engagement_file(wave)
        if path.is_file():
            frame, missing = import_engagement(path, sent, wave)
            metadata = {"source": f"imported from {path}", "sent_customers_missing_from_file": missing}
        else:
            frame = simulate_engagement(sent, config.simulation, wave)
            metadata = {"source": f"SIMULATED (no {path.name} in {path.parent})"}
        context.add_output_metadata({"dagster/row_count": len(frame), **metadata,
                                     **{k: int(frame[k].sum()) for k in ("opened", "clicked", "converted")}})
        return frame

    @dg.asset(
        **per_wave,
        check_specs=[dg.AssetCheckSpec("lift_threshold", asset="experiment_results",
                                       description="Best tone's primary-metric lift >= target, significant after Holm, no SRM")],
    )
    def experiment_results(
        context: dg.AssetExecutionContext,
        campaign: CampaignResource,
        assignments: pd.DataFrame,
        engagement: pd.DataFrame,
        customer_segments: pd.DataFrame,
    ):
        """Rates, lifts with CIs, p-values (Holm-adjusted), CUPED, chance to beat control: overall and per segment."""
        config = campaign.config
        frame = analysis_frame(assignments, engagement, customer_segments)
        source = str(engagement["source"].iloc[0]) if len(engagement) else SOURCE_SIMULATED
        segments = [s for s in campaign.catalog.ids if s in set(frame["segment"])]
        results = compute_results(frame, config, wave=context.partition_key, segments=segments, source=source)
        gate = campaign_lift_gate(results, assignments, config)
        yield dg.Output(results, metadata={"dagster/row_count": len(results), "engagement_source": source})
        yield dg.AssetCheckResult(
            check_name="lift_threshold",
            passed=gate.passed,
            # Not blocking: the report must still say "no reliable winner". The rollout asset
            # applies the same gate to itself.
            severity=dg.AssetCheckSeverity.WARN,
            description=gate.summary(),
            metadata={"best_arm": gate.best_arm or "none", "rel_lift": gate.rel_lift, "p_value_adjusted": gate.p_value_adjusted,
                      "mde": gate.mde, "n_per_arm": gate.n_per_arm, "minimum_lift": gate.minimum_lift,
                      "srm_p_value": gate.srm_p_value, "failures": "; ".join(gate.failures) or "none", "engagement_source": source},
        )

    @dg.asset(**per_wave, ins={"safety_verdicts": ALL_SEGMENTS, "message_variants": ALL_SEGMENTS})
    def experiment_report(
        context: dg.AssetExecutionContext,
        campaign: CampaignResource,
        experiment_results: pd.DataFrame,
        assignments: pd.DataFrame,
        safety_verdicts: pd.DataFrame,
        message_variants: pd.DataFrame,
    ) -> dg.MaterializeResult:
        """The wave's HTML report under $CPO_HOME/reports/<wave>/."""
        path, summary = write_report(
            reports_dir() / context.partition_key,
            campaign.config,
            campaign.catalog,
            wave=context.partition_key,
            results=experiment_results,
            assignments=assignments,
            verdicts=safety_verdicts,
            variants=message_variants,
        )
        return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(path)), "summary": dg.MetadataValue.md(summary)})

    @dg.asset(**per_wave)
    def rollout_recommendation(
        context: dg.AssetExecutionContext, campaign: CampaignResource, experiment_results: pd.DataFrame, assignments: pd.DataFrame
    ) -> pd.DataFrame:
        """The tone to roll out per segment, only where the data supports it; control otherwise."""
        config = campaign.config
        gate = campaign_lift_gate(experiment_results, assignments, config)
        scopes = [OVERALL, *[s for s in campaign.catalog.ids if s in set(experiment_results["scope"])]]
        frame = rollout_recommendations(experiment_results, scopes=scopes, primary_metric=config.primary_metric,
                                        minimum_lift=config.minimum_lift, alpha=config.alpha)
        if not gate.passed:
            # The campaign-level gate failed: no tone is rolled out anywhere, whatever a segment shows.
            frame = frame.assign(recommended_arm="control", has_reliable_winner=False,
                                 reason="lift gate not passed: " + "; ".join(gate.failures))
        frame.insert(0, "wave", context.partition_key)
        context.add_output_metadata({"dagster/row_count": len(frame), "lift_gate": gate.summary(),
                                     "winners": ", ".join(f"{r.scope}={r.recommended_arm}" for r in frame.itertuples() if r.has_reliable_winner) or "none"})
        return frame

    return [customers, customer_segments, assignments, personalized_messages, engagement, experiment_results,
            experiment_report, rollout_recommendation]
