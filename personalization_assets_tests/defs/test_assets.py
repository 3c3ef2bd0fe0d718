"""Each asset alone: its function invoked directly with its resources and its upstream tables.

The upstream tables are those the session's materialized campaign stored; each asset, run on its
own, must give back what the whole run stored for it, and its output must pass its Dagster type.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from personalization_assets.defs.assignment import arm_allocation, assignments
from personalization_assets.defs.audience import customer_segments, customers
from personalization_assets.defs.content import (
    content_index,
    retrieved_content,
    screened_corpus,
)
from personalization_assets.defs.engagement import engagement
from personalization_assets.defs.messages import message_variants
from personalization_assets.defs.rendering import personalized_messages
from personalization_assets.defs.resources import (
    AuditResource,
    CampaignResource,
    DeliveryLedgerResource,
    EmbeddedWarehouse,
    LocalBM25Search,
    LocalSafety,
    LocalTemplateGenerator,
)
from personalization_assets.defs.results import (
    experiment_results,
    rollout_recommendation,
)
from personalization_assets.defs.safety import (
    reviewer_approval,
    safety_pass_rate,
    safety_verdicts,
)
from personalization_assets.defs.types import (
    AssignmentsFrame,
    CustomersFrame,
    ExperimentResultsFrame,
    MessageVariantsFrame,
    SafetyVerdictsFrame,
)
from personalization_assets_tests.conftest import TEST_CUSTOMERS, TEST_WAVE
from personalization_assets_tests.defs.pipeline import read_table

SEGMENT = "at_risk"


@pytest.fixture
def stored(materialized_campaign):
    """What the session's whole run stored, table by table."""
    return lambda table, where="TRUE": read_table(materialized_campaign.warehouse, table, where)


@pytest.fixture
def campaign(materialized_campaign) -> CampaignResource:
    return CampaignResource(campaign_path=str(materialized_campaign.campaign))


@pytest.fixture
def audit(tmp_path: Path) -> AuditResource:
    return AuditResource(directory=str(tmp_path / "audit"))


@pytest.fixture(autouse=True)
def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Exports and reports written by an asset go to the test's folder, not the shared campaign's.
    monkeypatch.setenv("CPO_HOME", str(tmp_path / "home"))


def _same_rows(frame: pd.DataFrame, expected: pd.DataFrame, key: list[str]) -> None:
    left = frame.sort_values(key).reset_index(drop=True)
    right = expected[list(frame.columns)].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_dtype=False)


def _passes(dagster_type: dg.DagsterType, frame: pd.DataFrame) -> None:
    result = dg.check_dagster_type(dagster_type, frame)
    assert result.success, result.description


def test_customers_loads_the_contract_and_passes_its_type(campaign):
    frame = customers(dg.build_asset_context(), campaign=campaign)
    assert len(frame) == TEST_CUSTOMERS and frame["customer_id"].is_unique
    _passes(CustomersFrame, frame)
    # The type checks structure: a frame without a required column, or with a wrong dtype, fails it.
    assert not dg.check_dagster_type(CustomersFrame, frame.drop(columns=["tier"])).success
    assert not dg.check_dagster_type(CustomersFrame, frame.assign(age=frame["age"].astype(str))).success


def test_customer_segments_alone_equals_the_stored_wave(campaign, stored, tmp_path):
    upstream = stored("customers")
    frame = customer_segments(dg.build_asset_context(partition_key=TEST_WAVE), campaign=campaign, customers=upstream,
                              delivery_ledger=DeliveryLedgerResource(path=str(tmp_path / "ledger.sqlite3")))
    _same_rows(frame, stored("customer_segments"), ["customer_id"])


def test_retrieval_generation_and_screening_of_one_segment(campaign, audit, stored):
    screened = screened_corpus(dg.build_asset_context(), campaign=campaign, safety=LocalSafety())
    _same_rows(screened, stored("screened_corpus"), ["document_id"])
    assert (screened["decision"] == "approved").all()  # the sample's documents all pass the screen
    corpus = content_index(dg.build_asset_context(), search=LocalBM25Search(), screened_corpus=screened)
    _same_rows(corpus, stored("content_index"), ["document_id"])

    context = dg.build_asset_context(partition_key=SEGMENT)
    retrieved = retrieved_content(context, campaign=campaign, search=LocalBM25Search(), content_index=corpus)
    assert set(retrieved["segment"]) == {SEGMENT}
    _same_rows(retrieved, stored("retrieved_content", f"segment = '{SEGMENT}'"), ["purpose", "rank"])

    variants = message_variants(dg.build_asset_context(partition_key=SEGMENT), campaign=campaign,
                                generator=LocalTemplateGenerator(), audit=audit, retrieved_content=retrieved, content_index=corpus)
    _passes(MessageVariantsFrame, variants)
    assert len(variants) == 4  # control + 3 tones
    _same_rows(variants[["segment", "variant_id", "subject", "body", "citations"]],
               stored("message_variants", f"segment = '{SEGMENT}'"), ["variant_id"])
    assert [r["kind"] for r in audit.log().records()] == ["variant"] * 4

    verdicts = safety_verdicts(dg.build_asset_context(partition_key=SEGMENT), campaign=campaign, safety=LocalSafety(),
                               audit=audit, message_variants=variants, retrieved_content=retrieved, content_index=corpus)
    _passes(SafetyVerdictsFrame, verdicts)
    _same_rows(verdicts, stored("safety_verdicts", f"segment = '{SEGMENT}'"), ["variant_id"])


def test_reviewer_approval_passes_in_screen_mode_and_says_nobody_reviewed(materialized_campaign, campaign, audit):
    result = reviewer_approval(campaign=campaign, warehouse=EmbeddedWarehouse(database=str(materialized_campaign.warehouse)),
                               audit=audit)
    assert result.passed and "no person reviewed them" in result.description and result.metadata["pending"].value == 0


def test_safety_pass_rate_reads_every_segment_from_the_warehouse(materialized_campaign, campaign):
    result = safety_pass_rate(campaign=campaign, warehouse=EmbeddedWarehouse(database=str(materialized_campaign.warehouse)))
    assert result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["variants"].value == 19  # 6 segments x 3 tones + the shared control
    assert result.metadata["blocked_reasons"].value == "none"


def test_arm_allocation_alone_equals_the_stored_wave(campaign, stored, tmp_path):
    # A fixed allocation reads no earlier wave: an empty warehouse gives the stored weights.
    allocation = arm_allocation(dg.build_asset_context(partition_key=TEST_WAVE), campaign=campaign,
                                warehouse=EmbeddedWarehouse(database=str(tmp_path / "empty.duckdb")))
    _same_rows(allocation, stored("arm_allocation"), ["segment", "arm"])
    assert (allocation["allocation"] == "fixed").all() and (allocation["weight"] == 0.25).all()


def test_assignments_alone_equals_the_stored_wave_and_reports_srm(campaign, audit, stored):
    outputs = list(assignments(
        dg.build_asset_context(partition_key=TEST_WAVE), campaign=campaign, audit=audit,
        customer_segments=stored("customer_segments")[["customer_id", "segment", "contact_hold"]],
        message_variants=stored("message_variants"), safety_verdicts=stored("safety_verdicts"),
        arm_allocation=stored("arm_allocation"),
    ))
    output, check = outputs
    _passes(AssignmentsFrame, output.value)
    _same_rows(output.value, stored("assignments"), ["customer_id"])
    assert check.check_name == "sample_ratio_mismatch" and check.passed
    assert output.metadata["sent"].value + output.metadata["held_out"].value == TEST_CUSTOMERS


def test_assignments_refuse_to_run_below_the_safety_threshold(campaign, audit, stored):
    verdicts = stored("safety_verdicts").assign(decision="blocked")
    with pytest.raises(dg.Failure, match="assignments not made: safety pass rate 0.0%"):
        list(assignments(dg.build_asset_context(partition_key=TEST_WAVE), campaign=campaign, audit=audit,
                         customer_segments=stored("customer_segments")[["customer_id", "segment"]],
                         message_variants=stored("message_variants"), safety_verdicts=verdicts,
                         arm_allocation=stored("arm_allocation")))
    assert audit.log().records() == []  # nothing was decided, so nothing was sealed


def test_personalized_messages_and_engagement_alone(campaign, audit, stored, tmp_path):
    sent_list = personalized_messages(
        dg.build_asset_context(partition_key=TEST_WAVE), audit=audit,
        assignments=stored("assignments")[["wave", "customer_id", "segment", "arm", "variant_id", "sent"]],
        customers=stored("customers")[["customer_id", "first_name", "email"]], message_variants=stored("message_variants"),
    )
    _same_rows(sent_list, stored("personalized_messages"), ["customer_id"])
    assert (tmp_path / "home" / "exports" / TEST_WAVE / "personalized_messages.parquet").is_file()
    sealed = [r for r in audit.log().records() if r["kind"] == "rendered_emails"]
    assert len(sealed) == 1 and sealed[0]["rows"] == len(sent_list)  # every exported email's hash sealed

    taken = engagement(dg.build_asset_context(partition_key=TEST_WAVE), campaign=campaign,
                       delivery_ledger=DeliveryLedgerResource(path=str(tmp_path / "ledger.sqlite3")),
                       assignments=stored("assignments"), customer_segments=stored("customer_segments"))
    _same_rows(taken, stored("engagement"), ["customer_id"])


def test_results_and_rollout_alone_equal_the_stored_wave(campaign, stored):
    output, check = list(experiment_results(
        dg.build_asset_context(partition_key=TEST_WAVE), campaign=campaign, assignments=stored("assignments"),
        engagement=stored("engagement"), customer_segments=stored("customer_segments"), arm_allocation=stored("arm_allocation"),
    ))
    _passes(ExperimentResultsFrame, output.value)
    _same_rows(output.value, stored("experiment_results"), ["scope", "metric", "arm"])
    assert check.check_name == "lift_threshold" and check.severity == dg.AssetCheckSeverity.WARN

    rollout = rollout_recommendation(dg.build_asset_context(partition_key=TEST_WAVE), campaign=campaign,
                                     experiment_results=output.value, assignments=stored("assignments")[["segment", "arm"]],
                                     arm_allocation=stored("arm_allocation"))
    _same_rows(rollout, stored("rollout_recommendation"), ["scope"])
    assert rollout["scope"].iloc[0] == "overall"
