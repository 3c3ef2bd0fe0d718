"""dagster-pandas DataFrame types of the tables users read, with their schemas for the UI.

Each type checks structure only: the columns are there, with the dtype kinds the contract promises.
Value rules (ranges, uniqueness, tiers, ...) are enforced once, whole columns at a time, by the
loaders that build each frame (`audience/customers.py`, the safety policy, ...), which name the
file, column and rows. Measured at 1M customer rows, dagster-pandas value constraints cost 2.3 s
against 0.49 s for structure only, on data that the loader has already checked.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type
from dagster_pandas.constraints import ColumnDTypeInSetConstraint

from personalization_assets.audience.customers import (
    NUMERIC_RULES,
    REQUIRED_COLUMNS,
    TIERS,
)
from personalization_assets.content.corpus import CORPUS_COLUMNS
from personalization_assets.experiment.allocation import ALLOCATION_COLUMNS
from personalization_assets.experiment.assignment import ASSIGNMENT_COLUMNS
from personalization_assets.experiment.policies import POLICY_VALUE_COLUMNS
from personalization_assets.experiment.results import RESULTS_COLUMNS
from personalization_assets.experiment.rollout import CHOICE_COLUMNS, ROLLOUT_COLUMNS
from personalization_assets.messages.variants import VARIANT_COLUMNS
from personalization_assets.safety.documents import DOCUMENT_VERDICT_COLUMNS
from personalization_assets.safety.screening import VERDICT_COLUMNS

INTEGER = ("int64", "int32", "int16", "int8")
FLOAT = ("float64", "float32")
TEXT = ("object", "string")
BOOLEAN = ("bool",)

# Column -> (dtypes it may have, what it means). Columns not listed need only exist.
_COLUMN_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "customer_id": (TEXT, "non-empty, unique"),
    "location": (TEXT, "non-empty"),
    "tier": (TEXT, f"one of {list(TIERS)}"),
    **{rule.column: (INTEGER if rule.whole else FLOAT, rule.describe()) for rule in NUMERIC_RULES},
    "wave": (TEXT, "the wave partition key, YYYY-MM-DD (its Monday)"),
    "segment": (TEXT, "segment id, a partition key"),
    "variant_id": (TEXT, "segment:arm (control: the shared control message)"),
    "arm": (TEXT, "control or a tone"),
    "sent": (BOOLEAN, "whether the customer is sent the variant"),
    "hold_reason": ((*TEXT, "float64"), "why a customer is held out (empty when sent)"),
    "contact_hold": ((*TEXT, "float64"), "why a customer may not be emailed (empty when they may)"),
    "subject": (TEXT, "email subject"),
    "body": (TEXT, "email body, merge fields unfilled"),
    "citations": (TEXT, "comma-separated document ids"),
    "decision": (TEXT, "approved or blocked"),
    "input_tokens": (INTEGER, "tokens sent (0 for a cached answer)"),
    "output_tokens": (INTEGER, "tokens received"),
    "cost_usd": (FLOAT, "what this run paid"),
    "n": (INTEGER, "customers analysed"),
    "successes": (INTEGER, "customers with the outcome"),
    "rate": (FLOAT, "successes / n; for revenue_per_recipient the arm's mean revenue per recipient"),
    "outcome_sd": (FLOAT, "the arm's standard deviation of the outcome (sqrt(rate (1 - rate)) for a 0/1 metric)"),
    "past_spend": (FLOAT, "purchase_frequency x avg_order_value: the CUPED covariate of revenue per recipient"),
    "revenue": (FLOAT, "the customer's revenue in the wave (empty where the export has no revenue column)"),
    "rel_lift": (FLOAT, "relative lift against control, a fraction (0.12 = +12%)"),
    "p_value_adjusted": (FLOAT, "Holm-adjusted within the scope"),
    "significant": (BOOLEAN, "adjusted p < alpha"),
    "rel_lift_ci_low": (FLOAT, "score interval of the relative lift, lower bound (never below -1)"),
    "rel_lift_ci_high": (FLOAT, "score interval of the relative lift, upper bound"),
    "chance_to_beat_control": (FLOAT, "P(arm rate > control rate): exact Beta-Binomial posterior, Beta(1, 1) priors; normal for revenue and for rows stratified by segment"),
    "mde": (FLOAT, "minimum detectable lift at alpha / comparisons, power 0.8"),
    "unmeasurable_reason": (TEXT, "why the comparison cannot be measured (empty when it can)"),
    "engagement_rows": (INTEGER, "sent customers of the arm the engagement export listed"),
    "guardrail_margin": (FLOAT, "guardrail rows: the largest acceptable rise of the rate over control's (absolute)"),
    "guardrail_lower": (FLOAT, "guardrail rows: one-sided (1 - alpha) lower bound of the arm's rate minus control's (Newcombe)"),
    "guardrail_upper": (FLOAT, "guardrail rows: one-sided (1 - alpha) upper bound of the arm's rate minus control's (Newcombe)"),
    "allocation": (TEXT, "arm_allocation: fixed (the configured weights) or thompson (adapted to the earlier waves)"),
    "weight": (FLOAT, "arm_allocation: the arm's share of the segment's customers in the wave"),
    "exposures": (FLOAT, "arm_allocation, thompson: the arm's customers in the segment in earlier waves"),
    "earlier_mean": (FLOAT, "arm_allocation, thompson: the arm's primary-metric mean in the segment in earlier waves"),
    "chance_best": (FLOAT, "arm_allocation, thompson: posterior probability that the tone is the segment's best tone"),
    "adapted": (BOOLEAN, "arm_allocation: whether the segment's weights adapted (every tone had thompson.min_exposures)"),
    "policy": (TEXT, "the rollout policy: control_for_all, best_single_tone, winner_per_segment, personalized (winner in a rollout)"),
    "value": (FLOAT, "doubly robust, cross-fitted estimate of the policy's primary-metric rate on the test's customers"),
    "ci_low": (FLOAT, "lower bound of the value's (1 - alpha) interval"),
    "ci_high": (FLOAT, "upper bound of the value's (1 - alpha) interval"),
    "diff_vs_baseline": (FLOAT, "value minus the best non-personalized policy's, from paired scores"),
    "diff_ci_low": (FLOAT, "lower bound of that difference's interval: the personalized gate needs it above 0"),
    "gate_passed": (BOOLEAN, "personalized row: whether its gate passed (gain's lower bound above 0, the test's SRM clean)"),
    "guardrails": (TEXT, "personalized row: its guardrails against the baseline policy (difference, one-sided bounds, margin, verdict)"),
    "is_baseline": (BOOLEAN, "the best non-personalized policy, the one the gains are measured against"),
    "true_value": (FLOAT, "the simulator's true value of the same picks (simulated engagement only; else empty)"),
    "rollout_group": (TEXT, "rollout (sent the policy's pick) or holdout (kept on the control message)"),
    "winner_arm": (TEXT, "the customer's segment winner under the lift gate (control without one)"),
    "personalized_arm": (TEXT, "the uplift model's predicted best arm for the customer"),
    **{category: (INTEGER, "Azure severity 0-7 (-1: not analysed)") for category in ("hate", "self_harm", "sexual", "violence")},
}


def _pandas_column(name: str) -> PandasColumn:
    kinds = _COLUMN_KINDS.get(name)
    if kinds is None:
        return PandasColumn(name)
    return PandasColumn(name, constraints=[ColumnDTypeInSetConstraint(set(kinds[0]))])


def table_schema(columns: Sequence[str]) -> dg.TableSchema:
    """The schema the UI shows for a table (`dagster/column_schema`)."""
    # A column of no declared kind is "any": shown as such, and stored as its values come (no cast).
    described = {name: _COLUMN_KINDS.get(name, (("any",), "")) for name in columns}
    return dg.TableSchema(columns=[
        dg.TableColumn(name, dtypes[0], description=meaning or None) for name, (dtypes, meaning) in described.items()
    ])


def dataframe_type(name: str, description: str, columns: Sequence[str]) -> dg.DagsterType:
    return create_dagster_pandas_dataframe_type(name=name, description=description, columns=[_pandas_column(c) for c in columns])


CustomersFrame = dataframe_type(
    "CustomersFrame", "Customers that passed the data contract (README, Data contracts).", REQUIRED_COLUMNS
)
AssignmentsFrame = dataframe_type(
    "AssignmentsFrame", "Each customer's arm, variant and whether it is sent, for one wave.", ASSIGNMENT_COLUMNS
)
MessageVariantsFrame = dataframe_type(
    "MessageVariantsFrame", "One variant per tone per segment, plus the control, with provenance and cost.", VARIANT_COLUMNS
)
SafetyVerdictsFrame = dataframe_type(
    "SafetyVerdictsFrame", "A verdict for every variant: severities, blocklist and rule hits, reasons.", VERDICT_COLUMNS
)
ExperimentResultsFrame = dataframe_type(
    "ExperimentResultsFrame", "Every arm against control, per metric, overall and per segment.", RESULTS_COLUMNS
)
RolloutAssignmentsFrame = dataframe_type(
    "RolloutAssignmentsFrame", "After a test on a share: each other customer's arm, variant, rollout group and policy.", ROLLOUT_COLUMNS
)
SCHEMAS = {
    "customers": table_schema((*REQUIRED_COLUMNS, "contact_hold")),
    "screened_corpus": table_schema((*CORPUS_COLUMNS, *DOCUMENT_VERDICT_COLUMNS[1:])),
    "arm_allocation": table_schema(ALLOCATION_COLUMNS),
    "assignments": table_schema(ASSIGNMENT_COLUMNS),
    "message_variants": table_schema(VARIANT_COLUMNS),
    "safety_verdicts": table_schema(VERDICT_COLUMNS),
    "experiment_results": table_schema(RESULTS_COLUMNS),
    "policy_values": table_schema(("wave", *POLICY_VALUE_COLUMNS, "engagement_source")),
    "rollout_choices": table_schema(CHOICE_COLUMNS),
    "rollout_assignments": table_schema(ROLLOUT_COLUMNS),
}
