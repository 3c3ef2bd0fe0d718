"""Per-wave customer-level assets: segments, assignment, messages, engagement, results, report.

Each wave is its own time partition: next week's run never overwrites this week's experiment.
They read every segment partition of the content assets through an AllPartitionMapping.
"""


import contextlib
from collections.abc import Sequence

import dagster as dg
import numpy as np
import pandas as pd

from personalization_assets.audience.customers import (
    NUMERIC_RULES,
    OPTIONAL_TEXT_COLUMNS,
    REQUIRED_COLUMNS,
    TIERS,
    load_customers,
)
from personalization_assets.audience.segmentation import (
    assign_segments,
    check_rules_against_columns,
    segment_sizes,
)
from personalization_assets.campaign.paths import exports_dir, reports_dir
from personalization_assets.defs.content_assets import ALL_SEGMENTS
from personalization_assets.defs.resources import AuditResource, CampaignResource
from personalization_assets.experiment.assignment import build_assignments
from personalization_assets.experiment.engagement import (
    SOURCE_SIMULATED,
    import_engagement,
    simulate_engagement,
)
from personalization_assets.experiment.joins import left_join_rows
from personalization_assets.experiment.results import (
    OVERALL,
    analysis_frame,
    campaign_lift_gate,
    campaign_rollout,
    compute_results,
    gated_rollout,
    sample_ratio_mismatch,
)
from personalization_assets.explain.models import explore_clusters
from personalization_assets.messages.rendering import EXPORT_FILE, export_messages
from personalization_assets.report.document import ReportInputs, write_report
from personalization_assets.safety.gate import evaluate_safety_gate

with contextlib.suppress(ImportError):
    # fpdf (the report's PDF writer) keeps the exception of its optional `cryptography` import,
    # and with it the stack that imported it: imported lazily inside the report step, that stack
    # holds the step's inputs (a million rows) until the process exits. Imported here, it holds
    # nothing.
    import fpdf  # noqa: F401

WAVE_GROUP = "wave"
# Waves are stored as 'YYYY-MM-DD' text; the cast lets the IO manager select a week's rows.
WAVE_PARTITION_EXPR = "CAST(wave AS TIMESTAMP)"

# The contract's value rules (ranges, uniqueness, tiers, ...) are enforced by load_customers before
# the frame exists, whole columns at a time, with line numbers in the error. The Dagster type checks
# what that guarantees structurally (columns and dtypes), so a million rows are not validated twice.
_WHOLE = {rule.column for rule in NUMERIC_RULES if rule.whole}
_DTYPE_KINDS = {column: ("i" if column in _WHOLE else "f") for column in (rule.column for rule in NUMERIC_RULES)}
CUSTOMER_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(
            column,
            "int64" if column in _WHOLE else "float64" if column in _DTYPE_KINDS else "string",
            description=next((rule.describe() for rule in NUMERIC_RULES if rule.column == column), None)
            or {"customer_id": "non-empty, unique", "tier": f"one of {list(TIERS)}"}.get(column, "non-empty"),
        )
        for column in REQUIRED_COLUMNS
    ]
)


def _check_customer_frame(_, value: object) -> dg.TypeCheck:
    if not isinstance(value, pd.DataFrame):
        return dg.TypeCheck(False, description=f"expected a pandas DataFrame, got {type(value).__name__}")
    missing = [column for column in REQUIRED_COLUMNS if column not in value.columns]
    wrong = [f"{column} ({value[column].dtype})" for column, kind in _DTYPE_KINDS.items()
             if column in value.columns and value[column].dtype.kind != kind]
    wrong += [f"{column} ({value[column].dtype})" for column in REQUIRED_COLUMNS
              if column not in _DTYPE_KINDS and column in value.columns and value[column].dtype != object]
    problems = ([f"missing columns {missing}"] if missing else []) + ([f"wrong dtypes: {', '.join(wrong)}"] if wrong else [])
    return dg.TypeCheck(not problems, description="; ".join(problems) or None, metadata={"rows": len(value)})


CustomerDataFrame = dg.DagsterType(
    name="CustomerDataFrame",
    description="Customers that passed the data contract (DESIGN section 5).",
    type_check_fn=_check_customer_frame,
    typing_type=pd.DataFrame,
    metadata={"schema": CUSTOMER_SCHEMA},
)
# customer_segments keeps what later assets read, not a copy of the customer file: the segment and
# the contract's tier and numbers (analysis covariates, explainability). Free text (names, emails,
# locations, extra columns) stays in `customers`, read from there by the one asset that needs it.
SEGMENT_COLUMNS = ("wave", "customer_id", "segment", "tier", *(rule.column for rule in NUMERIC_RULES))


def _columns(*names: str) -> dg.AssetIn:
    """Load only these columns of an upstream table (the DuckDB IO manager selects them in SQL)."""
    return dg.AssetIn(metadata={"columns": list(names)})


def _sent_with_rates(assignments: pd.DataFrame, customer_segments: pd.DataFrame) -> pd.DataFrame:
    """Sent customers (customer_id, segment, arm) with their historical rates; an inner join on
    customer_id, as row positions rather than a merge on text keys."""
    sent_mask = assignments["sent"].astype(bool).to_numpy()
    sent = assignments.loc[sent_mask, ["customer_id", "segment", "arm"]].reset_index(drop=True)
    # Joined before the sent filter: the wave's customers in the same order, a one-comparison join.
    (rows,) = left_join_rows(assignments["customer_id"].to_numpy(), customer_segments["customer_id"].to_numpy())
    rows = rows[sent_mask]
    found = rows >= 0
    if not found.all():
        sent, rows = sent.loc[found].reset_index(drop=True), rows[found]
    for column in ("historical_open_rate", "historical_click_rate"):
        sent[column] = customer_segments[column].to_numpy()[rows]
    return sent


def build_wave_assets(wave_partitions: dg.PartitionsDefinition, rule_columns: Sequence[str] | None = None) -> list:
    """The wave assets. `rule_columns`: the customer columns the segment catalog's rules read, so
    customer_segments loads only what it needs from `customers` (None: every column)."""
    segmentation_input = (
        _columns(*dict.fromkeys(["customer_id", "tier", *(rule.column for rule in NUMERIC_RULES), *rule_columns]))
        if rule_columns is not None else dg.AssetIn()
    )
    per_wave = dict(partitions_def=wave_partitions, metadata={"partition_expr": WAVE_PARTITION_EXPR}, group_name=WAVE_GROUP)

    @dg.asset(group_name=WAVE_GROUP, dagster_type=CustomerDataFrame)
    def customers(context: dg.AssetExecutionContext, campaign: CampaignResource) -> pd.DataFrame:
        """The customer file, validated against its contract; a bad file stops the wave here."""
        path = campaign.config.paths.customers
        frame = load_customers(path)
        # A rule on a column the file lacks fails here, before anything is stored.
        check_rules_against_columns(campaign.catalog, frame.columns)
        for column in OPTIONAL_TEXT_COLUMNS:  # optional merge fields: empty when the file has none
            if column not in frame.columns:
                frame[column] = ""
        context.add_output_metadata({"dagster/row_count": len(frame), "source": str(path), "dagster/column_schema": CUSTOMER_SCHEMA})
        return frame

    @dg.asset(**per_wave, ins={"customers": segmentation_input})
    def customer_segments(context: dg.AssetExecutionContext, campaign: CampaignResource, customers: pd.DataFrame) -> pd.DataFrame:
        """This wave's snapshot of customers, each with its segment (first matching rule wins): the
        columns later assets read (SEGMENT_COLUMNS), not every column of the file."""
        segments = assign_segments(customers, campaign.catalog)
        labels = np.asarray(segments.cat.categories, dtype=object)[segments.cat.codes.to_numpy()]
        columns = {"wave": context.partition_key, "customer_id": customers["customer_id"].to_numpy(), "segment": labels}
        for column in SEGMENT_COLUMNS[3:]:
            columns[column] = customers[column].to_numpy()
        frame = pd.DataFrame(columns, columns=list(SEGMENT_COLUMNS))
        sizes = segment_sizes(segments, campaign.catalog)
        context.add_output_metadata({"dagster/row_count": len(frame), **{f"segment_{k}": v for k, v in sizes.items()}})
        return frame

    @dg.asset(
        **per_wave,
        ins={"message_variants": ALL_SEGMENTS, "safety_verdicts": ALL_SEGMENTS, "customer_segments": _columns("customer_id", "segment")},
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

    @dg.asset(
        **per_wave,
        ins={
            "message_variants": ALL_SEGMENTS,
            "assignments": _columns("wave", "customer_id", "segment", "arm", "variant_id", "sent"),
            "customers": _columns("customer_id", *OPTIONAL_TEXT_COLUMNS),
        },
    )
    def personalized_messages(
        context: dg.AssetExecutionContext, assignments: pd.DataFrame, customers: pd.DataFrame, message_variants: pd.DataFrame
    ) -> pd.DataFrame:
        """The send list (who gets which approved variant, at which address); the send-ready emails,
        merge fields filled in locally, go to $CPO_HOME/exports/<wave>/personalized_messages.parquet."""
        path = exports_dir() / context.partition_key / EXPORT_FILE
        frame = export_messages(assignments, customers, message_variants, path)
        context.add_output_metadata({"dagster/row_count": len(frame), "emails": dg.MetadataValue.path(str(path)),
                                     "emails_bytes": path.stat().st_size})
        return frame

    @dg.asset(
        **per_wave,
        deps=[personalized_messages],
        ins={
            "assignments": _columns("customer_id", "segment", "arm", "sent"),
            "customer_segments": _columns("customer_id", "historical_open_rate", "historical_click_rate"),
        },
    )
    def engagement(
        context: dg.AssetExecutionContext, campaign: CampaignResource, assignments: pd.DataFrame, customer_segments: pd.DataFrame
    ) -> pd.DataFrame:
        """Opens, clicks, conversions: the wave's ESP export if present, else SIMULATED from ground truth."""
        config, wave = campaign.config, context.partition_key
        sent = _sent_with_rates(assignments, customer_segments)
        path = config.paths.engagement_file(wave)
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
        ins={
            "assignments": _columns("customer_id", "segment", "arm", "sent"),
            "engagement": _columns("customer_id", "opened", "clicked", "converted", "source"),
            "customer_segments": _columns("customer_id", "historical_open_rate", "historical_click_rate"),
        },
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
        present = set(pd.unique(frame["segment"]))  # once, not once per catalog entry
        segments = [s for s in campaign.catalog.ids if s in present]
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

    @dg.asset(**per_wave)
    def segment_exploration(context: dg.AssetExecutionContext, customer_segments: pd.DataFrame) -> pd.DataFrame:
        """k-means on the customer features (k by silhouette, on a seeded sample) and a depth-3 tree
        that explains the clusters: proposes segments, does not drive the partitions."""
        frame = explore_clusters(customer_segments)
        frame.insert(0, "wave", context.partition_key)
        first = frame.iloc[0] if len(frame) else None
        context.add_output_metadata({
            "dagster/row_count": len(frame),
            **({} if first is None else {
                "k": int(first["k"]), "silhouette": float(first["silhouette"]), "tree_accuracy": float(first["tree_accuracy"]),
                "sample_size": int(first["sample_size"]),
                "tree_rules": dg.MetadataValue.md("\n".join(f"- cluster {r.cluster}: {r.tree_rule}" for r in frame.itertuples())),
            }),
        })
        return frame

    @dg.asset(**per_wave, ins={"safety_verdicts": ALL_SEGMENTS, "message_variants": ALL_SEGMENTS})
    def experiment_report(
        context: dg.AssetExecutionContext,
        campaign: CampaignResource,
        experiment_results: pd.DataFrame,
        assignments: pd.DataFrame,
        safety_verdicts: pd.DataFrame,
        message_variants: pd.DataFrame,
        customer_segments: pd.DataFrame,
        engagement: pd.DataFrame,
        segment_exploration: pd.DataFrame,
        content_index: pd.DataFrame,
    ) -> dg.MaterializeResult:
        """The wave's report, HTML and PDF under $CPO_HOME/reports/<wave>/; its headline in the metadata."""
        files = write_report(
            reports_dir() / context.partition_key,
            ReportInputs(
                config=campaign.config,
                catalog=campaign.catalog,
                wave=context.partition_key,
                results=experiment_results,
                assignments=assignments,
                verdicts=safety_verdicts,
                variants=message_variants,
                customer_segments=customer_segments,
                engagement=engagement,
                exploration=segment_exploration,
                corpus=content_index,
            ),
        )
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(files.html)),
            "pdf": dg.MetadataValue.path(str(files.pdf)),
            "summary": dg.MetadataValue.md(files.markdown),
            "headline": files.report.headline,
        })

    @dg.asset(**per_wave, ins={"assignments": _columns("arm")})
    def rollout_recommendation(
        context: dg.AssetExecutionContext, campaign: CampaignResource, experiment_results: pd.DataFrame, assignments: pd.DataFrame
    ) -> pd.DataFrame:
        """The tone to roll out per segment, only where the data supports it; control otherwise."""
        config = campaign.config
        scopes = [OVERALL, *[s for s in campaign.catalog.ids if s in set(experiment_results["scope"])]]
        gate, own = campaign_rollout(experiment_results, assignments, config, scopes)
        frame = gated_rollout(own, gate)
        frame.insert(0, "wave", context.partition_key)
        context.add_output_metadata({"dagster/row_count": len(frame), "lift_gate": gate.summary(),
                                     "winners": ", ".join(f"{r.scope}={r.recommended_arm}" for r in frame.itertuples() if r.has_reliable_winner) or "none"})
        return frame

    return [customers, customer_segments, assignments, personalized_messages, engagement, experiment_results,
            segment_exploration, experiment_report, rollout_recommendation]
