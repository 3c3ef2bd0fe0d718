"""`allocation: thompson` end to end through `cpo run`, two waves on SIMULATED engagement: the
second wave's weights adapt per segment to the first wave's results, the assignment follows them
(the sample-ratio test against each segment's own weights passes), the overall comparison is
stratified, and re-running a wave keeps its weights and its customers' arms, after a switch back to fixed weights too."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from personalization_assets.campaign.config import load_campaign
from personalization_assets.cli import commands as cli
from personalization_assets.experiment.allocation import stratified_lift
from personalization_assets.experiment.results import OVERALL, sample_ratio_mismatch
from personalization_assets_tests.conftest import TEST_WAVE
from personalization_assets_tests.defs.pipeline import read_table

pytestmark = pytest.mark.e2e

NEXT_WAVE = (dt.date.fromisoformat(TEST_WAVE) + dt.timedelta(days=7)).isoformat()


def test_thompson_allocation_adapts_the_next_wave_and_an_assigned_wave_keeps_its_weights(campaign_folder, capsys):
    campaign_folder.edit_campaign(allocation="thompson", thompson__min_exposures=20, thompson__floor=0.1,
                                  thompson__from_simulated_engagement=True)
    run = ["run", "--campaign", str(campaign_folder.campaign), "--wave"]
    assert cli.main([*run, TEST_WAVE]) == cli.EXIT_OK
    first = read_table(campaign_folder.warehouse, "arm_allocation")
    assert not first["adapted"].any() and (first["exposures"] == 0).all()  # nothing earlier: the configured weights
    assert cli.main([*run, NEXT_WAVE]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "allocation: thompson;" in out and "stratified by segment" in out

    warehouse = campaign_folder.warehouse
    allocation = read_table(warehouse, "arm_allocation")
    second = allocation[allocation["wave"] == NEXT_WAVE]
    adapted = second[second["adapted"].astype(bool)]
    assert adapted["segment"].nunique() >= 2
    control = adapted[adapted["arm"] == "control"]
    assert np.allclose(control["weight"], 0.25)  # the control keeps its share
    tones = adapted[adapted["arm"] != "control"]
    assert (tones["weight"] >= 0.1 - 1e-12).all() and not np.allclose(tones["weight"], 0.25)
    # The tone with the highest chance of being best gets the largest share of its segment.
    for _, part in tones.groupby("segment"):
        assert part.loc[part["chance_best"].idxmax(), "weight"] == part["weight"].max()
    assert np.allclose(second.groupby("segment")["weight"].sum(), 1.0)
    # Earlier customers are the first wave's, per segment and arm.
    results = read_table(warehouse, "experiment_results")
    earlier = results[(results["wave"] == TEST_WAVE) & (results["metric"] == "open_rate") & (results["scope"] != OVERALL)]
    seen = second.merge(earlier[["scope", "arm", "n"]], left_on=["segment", "arm"], right_on=["scope", "arm"])
    assert len(seen) and (seen["exposures"] == seen["n"]).all()

    assignments = read_table(warehouse, "assignments")
    wave2 = assignments[assignments["wave"] == NEXT_WAVE]
    srm = sample_ratio_mismatch(wave2, load_campaign(campaign_folder.campaign), second)
    assert not srm.flagged and srm.degrees_of_freedom > 3
    # The assignment followed the segment's weights (30+ customers per cell).
    for segment, part in adapted.groupby("segment"):
        customers = wave2[wave2["segment"] == segment]
        shares = customers["arm"].value_counts(normalize=True).reindex(part["arm"]).fillna(0).to_numpy()
        assert np.abs(shares - part["weight"].to_numpy()).max() < 0.5 / np.sqrt(len(customers)) + 0.05

    # The overall rows of the adapted wave are the segments' rates stratified.
    rows = results[(results["wave"] == NEXT_WAVE) & (results["metric"] == "open_rate")]
    segments = rows[rows["scope"] != OVERALL]
    pivot = {column: segments.pivot(index="scope", columns="arm", values=column) for column in ("n", "rate", "outcome_sd")}
    sizes = pivot["n"].sum(axis=1)
    overall = rows[rows["scope"] == OVERALL].set_index("arm")
    lift = stratified_lift(*(pivot[c]["control"].fillna(0) for c in ("n", "rate", "outcome_sd")),
                           *(pivot[c]["friendly"].fillna(0) for c in ("n", "rate", "outcome_sd")), sizes)
    assert overall.loc["friendly", "rel_lift"] == pytest.approx(float(lift.rel_lift))
    assert overall.loc["friendly", "rel_lift_ci_low"] == pytest.approx(float(lift.ci_low))
    assert np.isnan(overall.loc["friendly", "cuped_rel_lift"]) and np.isnan(overall.loc["friendly", "always_valid_p_value"])
    report = (campaign_folder.home / "reports" / NEXT_WAVE / "report.html").read_text()
    assert "Adaptive allocation (Thompson sampling)" in report and "stratified by segment" in report

    # Re-running the wave keeps its weights and every customer's arm, whatever else changed since.
    assert cli.main([*run, NEXT_WAVE]) == cli.EXIT_OK
    again = read_table(warehouse, "arm_allocation")
    pd.testing.assert_frame_equal(again[again["wave"] == NEXT_WAVE].reset_index(drop=True), second.reset_index(drop=True))
    rerun = read_table(warehouse, "assignments")
    rerun = rerun[rerun["wave"] == NEXT_WAVE].set_index("customer_id")["arm"]
    assert (rerun.reindex(wave2["customer_id"]).to_numpy() == wave2["arm"].to_numpy()).all()

    # Switched back to fixed weights, an assigned wave still keeps how it was assigned.
    campaign_folder.edit_campaign(allocation="fixed")
    assert cli.main([*run, NEXT_WAVE]) == cli.EXIT_OK
    fixed = read_table(warehouse, "arm_allocation", f"wave = '{NEXT_WAVE}'")
    pd.testing.assert_frame_equal(fixed.reset_index(drop=True), second.reset_index(drop=True))
    switched = read_table(warehouse, "assignments", f"wave = '{NEXT_WAVE}'").set_index("customer_id")["arm"]
    assert (switched.reindex(wave2["customer_id"]).to_numpy() == wave2["arm"].to_numpy()).all()
