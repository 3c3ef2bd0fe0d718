"""The engagement sensor: a wave's CSV landing in the engagement folder re-runs that wave's analysis."""

import os

import dagster as dg
import pandas as pd
import pytest

from personalization_assets.definitions import campaign_definitions
from personalization_assets.defs.jobs import ANALYSIS_JOB, WAVE_JOB
from personalization_assets.defs.partitions import ROLLOUT_GROUP, WAVE_GROUP
from personalization_assets.defs.sensors import ENGAGEMENT_SENSOR
from personalization_assets.experiment.engagement import (
    SOURCE_IMPORTED,
    SOURCE_SIMULATED,
)
from personalization_assets_tests.conftest import TEST_WAVE
from personalization_assets_tests.defs.pipeline import (
    check_results,
    read_table,
)

# arm_allocation too: the results read it; an assigned wave keeps its weights (defs/test_thompson_allocation.py).
RERUN = {"arm_allocation", "engagement", "experiment_results", "experiment_report", "rollout_recommendation"}
UPSTREAM = {"customers", "customer_segments", "assignments", "personalized_messages"}


@pytest.fixture
def defs(campaign_folder):
    return campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)


@pytest.fixture
def engagement_dir(campaign_folder):
    folder = campaign_folder.data / "engagement"  # the sample campaign's `paths.engagement`
    folder.mkdir(exist_ok=True)
    return folder


def tick(defs, instance, cursor=None):
    sensor = defs.resolve_sensor_def(ENGAGEMENT_SENSOR)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources)
    return sensor.evaluate_tick(context)


def mark_assigned(instance, wave: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="assignments", partition=wave))


def write_csv(path, rows: str, *, mtime_ns: int | None = None) -> None:
    path.write_text("customer_id,opened,clicked,converted\n" + rows)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_sensor_targets_the_wave_and_rollout_job_and_is_off_by_default(defs):
    sensor = defs.resolve_sensor_def(ENGAGEMENT_SENSOR)
    assert sensor.job_name == ANALYSIS_JOB
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED


def test_new_same_modified_and_badly_named_files(defs, engagement_dir):
    with dg.instance_for_test() as instance:
        mark_assigned(instance, TEST_WAVE)
        assert tick(defs, instance).run_requests == []  # nothing there yet

        csv = engagement_dir / f"{TEST_WAVE}.csv"
        write_csv(csv, "C0000001,1,0,0\n", mtime_ns=1_700_000_000_000_000_000)
        first = tick(defs, instance)
        assert len(first.run_requests) == 1
        request = first.run_requests[0]
        assert request.partition_key == TEST_WAVE
        selected = {key.to_user_string() for key in request.asset_selection}
        graph = defs.resolve_asset_graph()
        assert selected >= RERUN  # engagement and everything after it in the wave...
        assert not selected & UPSTREAM  # ...and nothing before it: the send is not redone
        assert all(graph.get(key).group_name == WAVE_GROUP for key in request.asset_selection)
        assert request.run_key and TEST_WAVE in request.run_key

        # The same file again, and the same content merely touched: no request.
        assert tick(defs, instance, first.cursor).run_requests == []
        write_csv(csv, "C0000001,1,0,0\n", mtime_ns=1_700_000_100_000_000_000)
        touched = tick(defs, instance, first.cursor)
        assert touched.run_requests == []

        # Modified content: one new request, with a new run key.
        write_csv(csv, "C0000001,1,1,0\n", mtime_ns=1_700_000_200_000_000_000)
        modified = tick(defs, instance, touched.cursor)
        assert [r.partition_key for r in modified.run_requests] == [TEST_WAVE]
        assert modified.run_requests[0].run_key != request.run_key
        assert tick(defs, instance, modified.cursor).run_requests == []

        # Names that are not wave partition keys are ignored: not a date, not a Monday, a week
        # that has no partition (before the first wave, far in the future), a hidden temp file.
        for name in ("latest.csv", "2026-11-17.csv", "2025-12-29.csv", "2099-01-05.csv", f".{TEST_WAVE}.csv.tmp.csv"):
            write_csv(engagement_dir / name, "C0000001,0,0,0\n")
        bad = tick(defs, instance, modified.cursor)
        assert bad.run_requests == []
        assert tick(defs, instance, bad.cursor).run_requests == []


def test_a_file_for_a_wave_not_assigned_yet_waits_for_the_wave_run(defs, engagement_dir):
    with dg.instance_for_test() as instance:
        write_csv(engagement_dir / f"{TEST_WAVE}.csv", "C0000001,1,0,0\n")
        early = tick(defs, instance)
        assert early.run_requests == []  # the wave's own run will read the file
        mark_assigned(instance, TEST_WAVE)
        assert tick(defs, instance, early.cursor).run_requests == []  # and it was not changed since

        # Removed and put back (with new content) after the wave was assigned: requested.
        (engagement_dir / f"{TEST_WAVE}.csv").unlink()
        gone = tick(defs, instance, early.cursor)
        write_csv(engagement_dir / f"{TEST_WAVE}.csv", "C0000001,1,1,1\n")
        assert len(tick(defs, instance, gone.cursor).run_requests) == 1


def test_a_lost_cursor_does_not_run_the_same_file_version_twice(defs, engagement_dir):
    with dg.instance_for_test() as instance:
        mark_assigned(instance, TEST_WAVE)
        write_csv(engagement_dir / f"{TEST_WAVE}.csv", "C0000001,1,0,0\n")
        first, again = tick(defs, instance), tick(defs, instance)  # the second as if the cursor were lost
        assert first.run_requests[0].run_key == again.run_requests[0].run_key  # Dagster skips a repeated run key


@pytest.mark.e2e
def test_engagement_file_end_to_end(materialized_copy):
    """A wave ran on simulated engagement (the copy's instance has its runs); its ESP export lands;
    the sensor's run re-analyses it."""
    campaign_folder = materialized_copy
    defs = campaign_folder.definitions()
    engagement_dir = campaign_folder.data / "engagement"
    engagement_dir.mkdir(exist_ok=True)
    warehouse = campaign_folder.warehouse
    with dg.DagsterInstance.local_temp(tempdir=str(campaign_folder.dagster_home)) as instance:
        assert set(read_table(warehouse, "engagement")["source"]) == {SOURCE_SIMULATED}
        results_before = read_table(warehouse, "experiment_results")
        assignments_before = read_table(warehouse, "assignments")
        messages_before = read_table(warehouse, "personalized_messages")

        # A broken export first (a customer who was not sent anything): its run fails at
        # `engagement`, and the wave's results stay as they were.
        unsent = assignments_before.loc[~assignments_before["sent"], "customer_id"].tolist() or ["C9999999"]
        write_csv(engagement_dir / f"{TEST_WAVE}.csv", f"{unsent[0]},1,0,0\n")
        broken = tick(defs, instance)
        assert len(broken.run_requests) == 1
        failed = defs.resolve_job_def(WAVE_JOB).execute_in_process(
            instance=instance, partition_key=TEST_WAVE, asset_selection=list(broken.run_requests[0].asset_selection),
            raise_on_error=False,
        )
        assert not failed.success
        assert "must be a customer sent a message" in str(failed.all_events)
        pd.testing.assert_frame_equal(read_table(warehouse, "experiment_results"), results_before)
        assert set(read_table(warehouse, "engagement")["source"]) == {SOURCE_SIMULATED}

        # The corrected export: every sent customer, an engagement pattern unlike the simulation's.
        sent = assignments_before.loc[assignments_before["sent"], ["customer_id", "arm"]].sort_values("customer_id")
        position = pd.Series(range(len(sent)), index=sent.index)
        opened = ((position % 2 == 0) | (sent["arm"] == "friendly")).astype(int)
        clicked = (opened.astype(bool) & (position % 3 == 0)).astype(int)
        converted = (clicked.astype(bool) & (position % 5 == 0)).astype(int)
        export = pd.DataFrame({"customer_id": sent["customer_id"], "opened": opened, "clicked": clicked, "converted": converted})
        export.to_csv(engagement_dir / f"{TEST_WAVE}.csv", index=False)

        data = tick(defs, instance, broken.cursor)
        assert len(data.run_requests) == 1
        request = data.run_requests[0]
        assert request.run_key != broken.run_requests[0].run_key
        result = defs.resolve_job_def(WAVE_JOB).execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            asset_selection=list(request.asset_selection),
            tags=request.tags,
            raise_on_error=False,
        )
        assert result.success
        materialized = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
        assert materialized == {key.to_user_string() for key in request.asset_selection}
        assert check_results(result)["lift_threshold"].metadata["engagement_source"].value == SOURCE_IMPORTED

        engagement = read_table(warehouse, "engagement")
        assert set(engagement["source"]) == {SOURCE_IMPORTED}
        assert engagement.set_index("customer_id")["opened"].sort_index().tolist() == export.set_index("customer_id")["opened"].sort_index().tolist()
        results_after = read_table(warehouse, "experiment_results")
        assert set(results_after["wave"]) == {TEST_WAVE}
        # The export has no guardrail columns: the simulated wave's guardrail rows are gone, the rest re-analysed.
        guardrails = results_before["metric"].isin(["unsubscribe_rate", "complaint_rate"])
        assert guardrails.any() and not results_after["metric"].isin(["unsubscribe_rate", "complaint_rate"]).any()
        assert len(results_after) == int((~guardrails).sum())
        key = ["scope", "metric", "arm"]
        before, after = results_before[~guardrails].set_index(key).sort_index(), results_after.set_index(key).sort_index()
        assert (before["successes"] != after["successes"]).any()  # re-analysed on the imported data
        friendly = after.loc[("overall", "open_rate", "friendly")]
        assert friendly["rate"] == 1.0  # every friendly customer opened, as the file says
        # The send itself was not redone.
        pd.testing.assert_frame_equal(read_table(warehouse, "assignments"), assignments_before)
        pd.testing.assert_frame_equal(read_table(warehouse, "personalized_messages"), messages_before)
        report = campaign_folder.root / "home" / "reports" / TEST_WAVE / "report.html"
        assert report.is_file() and "imported" in report.read_text().lower()

        # Acted on: the next tick requests nothing.
        assert tick(defs, instance, data.cursor).run_requests == []

        # The same export with a fifth of one arm's rows lost on the ESP side: the engagement-rows
        # test sees it through the results asset, and the lift check fails naming it.
        informational = export[sent["arm"].to_numpy() == "informational"]
        export.drop(informational.index[: len(informational) // 5]).to_csv(engagement_dir / f"{TEST_WAVE}.csv", index=False)
        lost = tick(defs, instance, data.cursor)
        assert len(lost.run_requests) == 1
        rerun = defs.resolve_job_def(WAVE_JOB).execute_in_process(
            instance=instance, partition_key=TEST_WAVE, asset_selection=list(lost.run_requests[0].asset_selection),
            tags=lost.run_requests[0].tags, raise_on_error=False,
        )
        assert rerun.success
        lift_check = check_results(rerun)["lift_threshold"]
        assert not lift_check.passed and "engagement rows missing unevenly between arms" in lift_check.metadata["failures"].value
        rows = read_table(warehouse, "experiment_results").set_index(["scope", "metric", "arm"])
        assert rows.loc[("overall", "open_rate", "informational"), "engagement_rows"] < rows.loc[("overall", "open_rate", "informational"), "n"]


def test_with_a_rollout_a_tests_file_reruns_the_rollout_and_a_rollouts_file_only_its_own_analysis(campaign_folder, engagement_dir):
    campaign_folder.edit_campaign(rollout={"test_share": 0.3, "policy": "personalized"})
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    graph = defs.resolve_asset_graph()
    with dg.instance_for_test() as instance:
        mark_assigned(instance, TEST_WAVE)
        write_csv(engagement_dir / f"{TEST_WAVE}.csv", "C0000001,1,0,0\n")
        test_file = tick(defs, instance)
        (request,) = test_file.run_requests
        selected = {key.to_user_string() for key in request.asset_selection}
        assert selected >= RERUN | {"policy_values", "rollout_assignments", "rollout_messages", "rollout_results", "rollout_report"}
        assert not selected & UPSTREAM
        assert {graph.get(key).group_name for key in request.asset_selection} == {WAVE_GROUP, ROLLOUT_GROUP}

        # The rollout's own export, before the rollout was sent: waits for the rollout run.
        rollout_dir = engagement_dir / "rollout"
        rollout_dir.mkdir()
        write_csv(rollout_dir / f"{TEST_WAVE}.csv", "C0000002,1,0,0\n")
        early = tick(defs, instance, test_file.cursor)
        assert early.run_requests == []
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="rollout_assignments", partition=TEST_WAVE))
        write_csv(rollout_dir / f"{TEST_WAVE}.csv", "C0000002,1,1,0\n")
        latest = tick(defs, instance, early.cursor)
        (rollout_request,) = latest.run_requests
        assert {key.to_user_string() for key in rollout_request.asset_selection} == {"rollout_engagement", "rollout_results", "rollout_report"}
        assert rollout_request.run_key != request.run_key and "rollout" in rollout_request.run_key
        assert rollout_request.tags["cpo/engagement_file"].endswith(f"rollout/{TEST_WAVE}.csv")

        # Once the rollout was sent, a corrected test export re-runs the test's analysis only, never a second rollout send.
        write_csv(engagement_dir / f"{TEST_WAVE}.csv", "C0000001,1,1,0\n")
        (corrected,) = tick(defs, instance, latest.cursor).run_requests
        selected = {key.to_user_string() for key in corrected.asset_selection}
        assert selected >= RERUN and not {"rollout_assignments", "rollout_messages", "policy_values"} & selected
