"""A whole campaign through Dagster on the embedded defaults, in an ephemeral instance."""

import dagster as dg
import pandas as pd
import pypdf
import pytest

from personalization_assets.audit.trail import AuditLog
from personalization_assets.definitions import campaign_definitions
from personalization_assets.experiment.engagement import SOURCE_SIMULATED
from personalization_assets_tests.conftest import TEST_CUSTOMERS, TEST_WAVE
from personalization_assets_tests.defs.pipeline import (
    check_results,
    materialize_segments,
    materialize_wave,
    read_export,
    read_table,
    table_exists,
)

# Whole campaign runs through Dagster on an ephemeral instance: `pytest -m "not e2e"` skips them.
pytestmark = pytest.mark.e2e


@pytest.fixture
def defs(campaign_folder):
    return campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)


def segment_ids(defs) -> list[str]:
    return defs.resolve_job_def("campaign_content").partitions_def.get_partition_keys()


def test_whole_wave_materializes_with_checks(materialized_campaign):
    campaign_folder = materialized_campaign
    segments = segment_ids(campaign_folder.definitions())
    content = campaign_folder.runs["content"]
    assert content.success
    assert check_results(content)["safety_pass_rate"].passed

    wave = campaign_folder.runs["wave"]
    assert wave.success
    checks = check_results(wave)
    assert checks["sample_ratio_mismatch"].passed
    assert "lift_threshold" in checks  # passes or not on 2,000 customers; it must be evaluated

    warehouse = campaign_folder.warehouse
    variants = read_table(warehouse, "message_variants")
    assert sorted(variants["segment"].unique()) == sorted(segments)
    assert len(variants) == len(segments) * 4  # control + 3 tones per segment
    assert variants["subject"].str.len().le(60).all()
    assert variants["citations"].str.len().gt(0).all()
    assert set(variants["backend"]) == {"local-template"}

    verdicts = read_table(warehouse, "safety_verdicts")
    assert set(verdicts["variant_id"]) == set(variants["variant_id"])
    assert {"hate", "self_harm", "sexual", "violence", "policy_version", "backend"} <= set(verdicts.columns)

    customer_segments = read_table(warehouse, "customer_segments")
    assert len(customer_segments) == TEST_CUSTOMERS
    assert set(customer_segments["wave"]) == {TEST_WAVE}

    assignments = read_table(warehouse, "assignments")
    assert len(assignments) == TEST_CUSTOMERS  # nobody dropped
    assert list(assignments.columns) == ["wave", "customer_id", "segment", "arm", "variant_id", "sent", "hold_reason"]
    decisions = verdicts.drop_duplicates(["segment", "variant_id"]).set_index(["segment", "variant_id"])["decision"]
    sent_decisions = decisions.reindex(pd.MultiIndex.from_frame(assignments.loc[assignments["sent"], ["segment", "variant_id"]]))
    assert (sent_decisions == "approved").all()  # nobody is sent a blocked variant

    messages = read_table(warehouse, "personalized_messages")
    assert len(messages) == int(assignments["sent"].sum())
    # The table is the send list; the rendered emails are in the wave's export file, row for row.
    assert list(messages.columns) == ["wave", "customer_id", "segment", "arm", "variant_id", "email"]
    emails = read_export(campaign_folder.root / "home", TEST_WAVE)
    assert list(emails["customer_id"]) == list(messages["customer_id"])
    assert not emails["body"].str.contains("{{", regex=False).any()
    assert emails["body"].str.startswith("Hi ").all()

    engagement = read_table(warehouse, "engagement")
    assert set(engagement["source"]) == {SOURCE_SIMULATED}
    assert set(engagement["customer_id"]) == set(messages["customer_id"])

    results = read_table(warehouse, "experiment_results")
    expected_rows = (1 + len(segments)) * (3 + 2) * 4  # scopes x (metrics + the simulated guardrails) x arms
    assert len(results) == expected_rows
    overall_control = results[(results["scope"] == "overall") & (results["arm"] == "control") & (results["metric"] == "open_rate")]
    assert overall_control["n"].iloc[0] == (assignments["sent"] & (assignments["arm"] == "control")).sum()

    rollout = read_table(warehouse, "rollout_recommendation")
    assert rollout["scope"].iloc[0] == "overall"
    report = campaign_folder.root / "home" / "reports" / TEST_WAVE / "report.html"
    assert report.is_file()
    assert "SIMULATED ENGAGEMENT" in report.read_text()
    # The PDF beside it, the headline in the asset's metadata, the k-means exploration it reads.
    assert len(pypdf.PdfReader(report.with_name("report.pdf")).pages) > 0
    materialization = next(m for m in wave.asset_materializations_for_node("experiment_report"))
    summary = materialization.metadata["summary"].value
    assert summary.startswith("### Campaign") and "SIMULATED ENGAGEMENT" in summary
    winner = rollout.loc[rollout["scope"] == "overall"].iloc[0]
    assert ("Winner overall" in summary) == bool(winner["has_reliable_winner"])
    exploration = read_table(warehouse, "segment_exploration")
    assert set(exploration["wave"]) == {TEST_WAVE} and exploration["customers"].sum() == TEST_CUSTOMERS

    # The audit trail: intact, one decision per customer, every send traced to an approved verdict.
    trail = AuditLog(campaign_folder.root / "home" / "audit")
    assert trail.verify()[1] is None
    kinds = pd.Series([r["kind"] for r in trail.records()]).value_counts().to_dict()
    assert kinds == {"variant": len(variants), "verdict": len(verdicts), "send_decisions": 1, "rendered_emails": 1}
    assert trail.unapproved_sends().empty
    sealed = next(r for r in trail.records() if r["kind"] == "send_decisions")
    assert sealed["rows"] == TEST_CUSTOMERS and sealed["sent"] == len(messages)


def test_waves_keep_their_own_rows(materialized_copy):
    # The copy has every segment's content and the wave TEST_WAVE; an earlier wave is added to it.
    campaign_folder = materialized_copy
    defs = campaign_folder.definitions()
    assert materialize_wave(defs, dg.DagsterInstance.ephemeral(), "2026-11-09").success
    assignments = read_table(campaign_folder.warehouse, "assignments")
    assert assignments.groupby("wave").size().to_dict() == {"2026-11-09": TEST_CUSTOMERS, TEST_WAVE: TEST_CUSTOMERS}


def test_safety_failure_below_threshold_stops_assignments(campaign_folder):
    # Every message names the company, so blocklisting it blocks every variant.
    campaign_folder.edit_campaign(safety__blocklists={"test_list": ["Northwind Outfitters"]})
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    instance = dg.DagsterInstance.ephemeral()
    content = materialize_segments(defs, instance, segment_ids(defs))
    # Screening worked and blocked everything; the blocking check then fails the run.
    assert not content.success
    gate = check_results(content)["safety_pass_rate"]
    assert not gate.passed
    assert gate.severity == dg.AssetCheckSeverity.ERROR

    wave = materialize_wave(defs, instance, TEST_WAVE)
    assert not wave.success
    failure = next(e for e in wave.all_events if e.is_step_failure)
    assert failure.step_key == "assignments"
    assert "safety pass rate 0.0%" in str(failure.step_failure_data.error)
    assert not table_exists(campaign_folder.warehouse, "assignments")
    assert not table_exists(campaign_folder.warehouse, "personalized_messages")


def test_bad_customer_file_fails_before_anything_downstream(defs, campaign_folder):
    customers = pd.read_csv(campaign_folder.data / "customers.csv")
    customers.loc[3, "historical_open_rate"] = 1.7
    customers.to_csv(campaign_folder.data / "customers.csv", index=False)
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_segments(defs, instance, segment_ids(defs)).success
    wave = materialize_wave(defs, instance, TEST_WAVE)
    assert not wave.success
    failure = next(e for e in wave.all_events if e.is_step_failure)
    assert failure.step_key == "customers"
    message = str(failure.step_failure_data.error)
    assert "customers.csv" in message and "historical_open_rate" in message and "[0, 1]" in message
    assert not table_exists(campaign_folder.warehouse, "customer_segments")
