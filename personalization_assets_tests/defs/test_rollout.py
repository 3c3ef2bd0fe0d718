"""Test on a share, then roll out, end to end through `cpo run` on an ephemeral home: the test is
the configured share, the rollout sends everyone else (its own tables, exports and audit seals),
keeps a randomized holdout, is stable when re-run, and is reported. Engagement is SIMULATED."""

import duckdb
import numpy as np
import pytest

from personalization_assets.cli import commands as cli
from personalization_assets.experiment.rollout import HOLDOUT, ROLLED_OUT
from personalization_assets.messages.rendering import ROLLOUT_EXPORT_FILE
from personalization_assets_tests.conftest import TEST_CUSTOMERS, TEST_WAVE
from personalization_assets_tests.defs.pipeline import read_table

pytestmark = pytest.mark.e2e

HETEROGENEITY = [{"when": {"column": "age", "below": 35}, "effects": {"friendly": 1.4, "urgent": 0.8}}]


def _run(campaign_folder) -> int:
    return cli.main(["run", "--campaign", str(campaign_folder.campaign), "--wave", TEST_WAVE])


def test_a_rollout_sends_everyone_the_test_left_out_and_measures_it(campaign_folder, capsys):
    campaign_folder.edit_campaign(rollout={"test_share": 0.4, "policy": "personalized", "holdout_share": 0.2,
                                           "from_simulated_engagement": True},
                                  simulation__heterogeneity=HETEROGENEITY)
    assert _run(campaign_folder) == cli.EXIT_OK
    out = capsys.readouterr().out
    warehouse, home = campaign_folder.warehouse, campaign_folder.home

    test = read_table(warehouse, "assignments")
    rollout = read_table(warehouse, "rollout_assignments")
    segments = read_table(warehouse, "customer_segments")
    # The test is about 40% of every segment; the rollout is everyone else; nobody is in both.
    assert abs(len(test) / TEST_CUSTOMERS - 0.4) < 0.05
    assert not set(test["customer_id"]) & set(rollout["customer_id"])
    assert set(test["customer_id"]) | set(rollout["customer_id"]) == set(segments["customer_id"])
    # The randomized holdout gets the control message; the rest gets what the policy chose.
    holdout = rollout[rollout["rollout_group"] == HOLDOUT]
    assert abs(len(holdout) / len(rollout) - 0.2) < 0.05 and set(holdout["arm"]) == {"control"}
    assert set(rollout["policy"]) <= {"winner", "personalized"}
    choices = read_table(warehouse, "rollout_choices").set_index("customer_id")
    treated = rollout[rollout["rollout_group"] == ROLLED_OUT].set_index("customer_id")
    column = "personalized_arm" if rollout["policy"].iloc[0] == "personalized" else "winner_arm"
    assert (treated["arm"] == choices.loc[treated.index, column]).all()
    # Contact holds are honoured in the rollout exactly as in the test.
    assert not rollout.loc[rollout["hold_reason"].fillna("").str.startswith("suppressed"), "sent"].any()

    values = read_table(warehouse, "policy_values").set_index("policy")
    assert set(values.index) == {"control_for_all", "best_single_tone", "winner_per_segment", "personalized"}
    assert values["true_value"].notna().all()  # simulated: the simulator's truth is shown beside each estimate
    assert ((values["ci_low"] <= values["value"]) & (values["value"] <= values["ci_high"])).all()
    personalized_passed = values.loc["personalized", "diff_ci_low"] > 0
    assert (rollout["policy"].iloc[0] == "personalized") == personalized_passed

    results = read_table(warehouse, "rollout_results")
    assert set(results["arm"]) == {"control", ROLLED_OUT} and set(results["engagement_source"]) == {"simulated"}
    overall = results[(results["scope"] == "overall") & (results["metric"] == "open_rate")].set_index("arm")
    assert overall.loc["control", "n"] == int(holdout["sent"].sum())
    # The rollout's emails are their own export, and its engagement its own table; the test's stay as they were.
    with duckdb.connect() as connection:
        exported = connection.execute("SELECT count(*) FROM read_parquet(?)", [str(home / "exports" / TEST_WAVE / ROLLOUT_EXPORT_FILE)]).fetchone()[0]
    assert exported == int(rollout["sent"].sum())
    assert len(read_table(warehouse, "rollout_engagement")) == int(rollout["sent"].sum())
    assert (home / "reports" / TEST_WAVE / "rollout.html").is_file() and (home / "reports" / TEST_WAVE / "rollout.pdf").is_file()
    html = (home / "reports" / TEST_WAVE / "rollout.html").read_text()
    assert "Candidate policies, side by side" in html and "Qini curve" in html and "What drives the personalized choice" in html
    assert "rollout run" in out and "policies, valued on the test" in out and "realized open_rate lift over the holdout" in out
    assert "personalized_policy_gate" in out and "holdout_ratio: passed" in out

    # The audit trail seals the rollout's decisions and emails, and they match what was stored.
    capsys.readouterr()
    assert cli.main(["audit", "verify"]) == cli.EXIT_OK, capsys.readouterr().out
    customer = str(treated.index[0])
    assert cli.main(["audit", "explain", customer]) == cli.EXIT_OK
    assert f"wave {TEST_WAVE} (rollout)" in capsys.readouterr().out

    # Decided once: a second `cpo run` does not decide the rollout again...
    capsys.readouterr()
    assert _run(campaign_folder) == cli.EXIT_OK
    assert "rollout was already decided" in capsys.readouterr().out
    # ...and decided again on request, it is stable: the same customers get the same messages, test and rollout.
    assert cli.main(["run", "--campaign", str(campaign_folder.campaign), "--wave", TEST_WAVE, "--redecide-rollout"]) == cli.EXIT_OK
    assert "rollout run" in capsys.readouterr().out
    again = read_table(warehouse, "rollout_assignments")
    key = ["customer_id"]
    np.testing.assert_array_equal(rollout.sort_values(key)[["customer_id", "arm", "variant_id", "rollout_group", "sent"]].to_numpy(),
                                  again.sort_values(key)[["customer_id", "arm", "variant_id", "rollout_group", "sent"]].to_numpy())
    assert read_table(warehouse, "assignments").sort_values(key)["arm"].tolist() == test.sort_values(key)["arm"].tolist()


def test_without_a_rollout_the_rollout_assets_refuse_with_the_setting_to_use(materialized_copy):
    import dagster as dg

    from personalization_assets.defs.jobs import ROLLOUT_JOB

    defs = materialized_copy.definitions()
    with dg.DagsterInstance.local_temp(tempdir=str(materialized_copy.dagster_home)) as instance:
        result = defs.resolve_job_def(ROLLOUT_JOB).execute_in_process(instance=instance, partition_key=TEST_WAVE, raise_on_error=False)
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert "set rollout.test_share" in failure.step_failure_data.error.message


def test_a_real_campaigns_rollout_waits_for_the_tests_engagement(campaign_folder, capsys):
    """Without the test's ESP export, `cpo run` does not decide a rollout on simulated engagement,
    and the rollout's send decision refuses it when materialized by hand."""
    import dagster as dg

    from personalization_assets.defs.jobs import ROLLOUT_JOB

    campaign_folder.edit_campaign(rollout={"test_share": 0.5, "policy": "winner"})
    assert _run(campaign_folder) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "rollout: waits for the test's engagement" in out and "rollout run" not in out
    defs = campaign_folder.definitions()
    with dg.DagsterInstance.local_temp(tempdir=str(campaign_folder.dagster_home)) as instance:
        result = defs.resolve_job_def(ROLLOUT_JOB).execute_in_process(instance=instance, partition_key=TEST_WAVE, raise_on_error=False)
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert failure.step_key == "rollout_assignments" and "is SIMULATED" in failure.step_failure_data.error.message
