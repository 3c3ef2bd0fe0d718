"""A campaign with a no-email holdout, end to end through `cpo run`: the holdout is sent nothing,
is measured, and the report and summary state the email's own effect. Engagement is SIMULATED."""

import pytest

from personalization_assets.campaign.config import NO_EMAIL_ARM
from personalization_assets.cli import commands as cli
from personalization_assets.experiment.results import VS_NO_EMAIL
from personalization_assets_tests.conftest import TEST_WAVE
from personalization_assets_tests.defs.pipeline import read_export, read_table

pytestmark = pytest.mark.e2e


def test_a_no_email_holdout_is_sent_nothing_and_measures_the_emails_effect(campaign_folder, capsys):
    campaign_folder.edit_campaign(arms={"control": 0.2, "urgent": 0.2, "informational": 0.2, "friendly": 0.2, NO_EMAIL_ARM: 0.2},
                                  engagement__conversions="any_channel", simulation__organic_conversion_rate=0.02,
                                  metrics__secondary=["click_rate", "conversion_rate", "revenue_per_recipient"])
    assert cli.main(["run", "--campaign", str(campaign_folder.campaign), "--wave", TEST_WAVE]) == cli.EXIT_OK
    out = capsys.readouterr().out
    warehouse = campaign_folder.warehouse
    assignments = read_table(warehouse, "assignments")
    holdout = assignments[assignments["arm"] == NO_EMAIL_ARM]
    assert len(holdout) > 0 and not holdout["sent"].any()
    assert not set(holdout["customer_id"]) & set(read_export(campaign_folder.home, TEST_WAVE)["customer_id"])
    engagement = read_table(warehouse, "engagement").set_index("customer_id")
    measured = engagement.loc[engagement.index.isin(holdout["customer_id"])]
    assert len(measured) == int((holdout["hold_reason"] == "no_email_holdout").sum()) and measured["opened"].eq(0).all()
    results = read_table(warehouse, "experiment_results")
    assert set(results.loc[results["scope"] == VS_NO_EMAIL, "arm"]) == {NO_EMAIL_ARM, "control", "urgent", "informational", "friendly"}
    # Revenue, measured, is compared with the holdout too (its customers buy by other channels).
    assert set(results.loc[results["scope"] == VS_NO_EMAIL, "metric"]) == {"conversion_rate", "revenue_per_recipient"}
    assert "the email's effect vs the no-email holdout: control conversion_rate" in out
    assert "assignments.sample_ratio_mismatch: passed" in out
    report = (campaign_folder.home / "reports" / TEST_WAVE / "report.html").read_text()
    assert "The email&#39;s incremental effect" in report or "The email's incremental effect" in report
    vs_no_email = report.split('id="results-vs-no-email"', 1)[1].split("</table>", 1)[0]
    assert "revenue_per_recipient" in vs_no_email
    capsys.readouterr()
    assert cli.main(["audit", "verify"]) == cli.EXIT_OK, capsys.readouterr().out
