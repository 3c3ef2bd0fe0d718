"""Revenue per recipient as the primary metric, end to end through `cpo run` and `cpo plan`:
revenue is SIMULATED (a conversion's order value), compared by its means with CUPED on past spend."""

import numpy as np
import pytest

from personalization_assets.cli import commands as cli
from personalization_assets.experiment.results import OVERALL
from personalization_assets_tests.conftest import TEST_WAVE
from personalization_assets_tests.defs.pipeline import read_table

pytestmark = pytest.mark.e2e


def test_revenue_per_recipient_as_the_primary_metric(campaign_folder, capsys):
    campaign_folder.edit_campaign(metrics__primary="revenue_per_recipient")
    assert cli.main(["run", "--campaign", str(campaign_folder.campaign), "--wave", TEST_WAVE]) == cli.EXIT_OK
    out = capsys.readouterr().out
    warehouse = campaign_folder.warehouse
    engagement = read_table(warehouse, "engagement")
    assert (engagement.loc[engagement["converted"] == 0, "revenue"] == 0).all() and engagement["revenue"].sum() > 0
    results = read_table(warehouse, "experiment_results")
    revenue = results[(results["scope"] == OVERALL) & (results["metric"] == "revenue_per_recipient")].set_index("arm")
    assert revenue.loc["control", "rate"] > 0 and revenue.loc["control", "outcome_sd"] > revenue.loc["control", "rate"]
    assert np.isfinite(revenue.loc["friendly", ["p_value", "rel_lift_ci_low", "cuped_rel_lift", "mde", "always_valid_p_value"]]
                       .astype(float)).all()
    assert "revenue_per_recipient" in out
    report = (campaign_folder.home / "reports" / TEST_WAVE / "report.html").read_text()
    assert "revenue_per_recipient" in report and f"{revenue.loc['control', 'rate']:,.2f}" in report

    capsys.readouterr()
    assert cli.main(["plan", "--campaign", str(campaign_folder.campaign)]) == cli.EXIT_USAGE
    assert "pass --base-rate and --sd" in capsys.readouterr().err
    assert cli.main(["plan", "--campaign", str(campaign_folder.campaign), "--base-rate", "1.5", "--sd", "18"]) == cli.EXIT_OK
    assert "mean 1.50 per recipient (standard deviation 18.00)" in capsys.readouterr().out
    assert cli.main(["plan", "--campaign", str(campaign_folder.campaign), "--base-rate", "1.5", "--sd", "0"]) == cli.EXIT_USAGE
    assert "needs a positive mean (--base-rate) and standard deviation (--sd)" in capsys.readouterr().err
