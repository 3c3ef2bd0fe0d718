"""The code location loads, and its graph, partitions, checks and schedule are what we ship."""

import datetime as dt

import dagster as dg
import pytest

from personalization_assets.audience.segmentation import load_catalog
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.definitions import campaign_definitions
from personalization_assets.defs.jobs import (
    ANALYSIS_JOB,
    CONTENT_JOB,
    DELIVERY_JOB,
    ROLLOUT_JOB,
    WAVE_JOB,
)

CONTENT_ASSETS = {"screened_corpus", "content_index", "retrieved_content", "message_variants", "safety_verdicts"}
WAVE_ASSETS = {
    "customers",
    "customer_segments",
    "arm_allocation",
    "assignments",
    "personalized_messages",
    "engagement",
    "experiment_results",
    "segment_exploration",
    "experiment_report",
    "rollout_recommendation",
}
ROLLOUT_ASSETS = {"policy_values", "uplift_qini", "policy_drivers", "rollout_choices", "rollout_assignments", "rollout_messages",
                  "rollout_engagement", "rollout_results", "rollout_report"}
DELIVERY_ASSETS = {"email_messages", "deliveries"}
ALL_ASSETS = CONTENT_ASSETS | WAVE_ASSETS | ROLLOUT_ASSETS | DELIVERY_ASSETS


def test_default_code_location_loads_and_validates():
    from personalization_assets.definitions import code_location

    defs = code_location()
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert keys == ALL_ASSETS


def test_dagsters_own_loader_sees_the_whole_graph_in_the_defs_package():
    import personalization_assets.defs as defs_package

    loaded = dg.components.load_defs(defs_package)
    graph = loaded.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == ALL_ASSETS
    assert len(graph.asset_check_keys) == 8
    assert [s.name for s in loaded.schedules] == ["weekly_campaign_wave"]
    assert [s.name for s in loaded.sensors] == ["engagement_file_sensor"]
    assert {job.name for job in loaded.jobs} == {CONTENT_JOB, WAVE_JOB, ROLLOUT_JOB, ANALYSIS_JOB, DELIVERY_JOB}
    assert set(loaded.resources) == {"campaign", "audit", "generator", "search", "safety", "io_manager", "warehouse",
                                      "delivery_ledger", "unsubscribe_key", "transport"}


def test_graph_partitions_and_checks(campaign_folder):
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    graph = defs.resolve_asset_graph()
    catalog = load_catalog(campaign_folder.data / "segments.yaml")

    segment_partitions = graph.get(dg.AssetKey("message_variants")).partitions_def
    assert segment_partitions.get_partition_keys() == catalog.ids
    for key in ("retrieved_content", "message_variants", "safety_verdicts"):
        node = graph.get(dg.AssetKey(key))
        assert node.partitions_def == segment_partitions
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
    assert graph.get(dg.AssetKey("content_index")).partitions_def is None
    assert graph.get(dg.AssetKey("customers")).partitions_def is None
    wave_partitions = graph.get(dg.AssetKey("assignments")).partitions_def
    assert isinstance(wave_partitions, dg.WeeklyPartitionsDefinition)
    assert wave_partitions.get_first_partition_key() == "2026-01-05"
    for key in (WAVE_ASSETS | ROLLOUT_ASSETS | DELIVERY_ASSETS) - {"customers"}:
        assert graph.get(dg.AssetKey(key)).partitions_def == wave_partitions

    assert set(graph.get(dg.AssetKey("assignments")).parent_keys) == {
        dg.AssetKey("customer_segments"),
        dg.AssetKey("message_variants"),
        dg.AssetKey("safety_verdicts"),
        dg.AssetKey("arm_allocation"),
    }
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert checks == {
        ("safety_verdicts", "safety_pass_rate"),
        ("safety_verdicts", "reviewer_approval"),
        ("assignments", "sample_ratio_mismatch"),
        ("experiment_results", "lift_threshold"),
        ("message_variants", "content_current"),
        ("policy_values", "personalized_policy_gate"),
        ("rollout_assignments", "holdout_ratio"),
        ("rollout_results", "rollout_lift"),
    }
    safety_check = next(iter(defs.get_asset_checks_def(dg.AssetCheckKey(dg.AssetKey("safety_verdicts"), "safety_pass_rate")).check_specs))
    assert safety_check.blocking
    approval_check = next(iter(defs.get_asset_checks_def(dg.AssetCheckKey(dg.AssetKey("safety_verdicts"), "reviewer_approval")).check_specs))
    assert approval_check.blocking
    assert {job.name for job in defs.resolve_all_job_defs()} >= {CONTENT_JOB, WAVE_JOB}


def test_weekly_schedule_requests_the_current_wave(campaign_folder):
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    schedule = defs.resolve_schedule_def("weekly_campaign_wave")
    assert schedule.job_name == WAVE_JOB
    tick = dt.datetime(2026, 11, 23, 0, 0, tzinfo=dt.timezone.utc)  # a Monday
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        data = schedule.evaluate_tick(context)
    requests = data.run_requests
    assert len(requests) == 1
    assert requests[0].partition_key == "2026-11-23"
    assert schedule.cron_schedule == "0 0 * * 1"  # Mondays at midnight


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  - id: at_risk\n", "  - id: lapsed\n"),  # another partition key
        ("      last_engagement_days: {\">\": 120}\n", "      last_engagement_days: {\">\": 120}\n      location: {\"!=\": \"Nowhere\"}\n"),  # a rule column more
    ],
)
def test_a_campaign_the_loaded_definitions_cannot_run_is_a_config_error(campaign_folder, old, new):
    path = campaign_folder.data / "segments.yaml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(ConfigError, match="differ from those of the loaded code location"):
        campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)


def test_the_steps_that_call_a_rate_limited_service_are_in_its_pool():
    from personalization_assets.definitions import code_location
    from personalization_assets.defs.partitions import (
        CONTENT_SAFETY_POOL,
        GENERATION_POOL,
    )

    graph = code_location().resolve_asset_graph()
    pools = {key.to_user_string(): graph.get(key).pools for key in graph.get_all_asset_keys()}
    assert pools["message_variants"] == {GENERATION_POOL}
    assert pools["safety_verdicts"] == pools["screened_corpus"] == {CONTENT_SAFETY_POOL}
    assert all(not found for name, found in pools.items() if name not in {"message_variants", "safety_verdicts", "screened_corpus"})


@pytest.mark.parametrize(("environ", "kind"), [({}, "in_process"), ({"CPO_EXECUTOR": "multiprocess"}, "multiprocess"),
                                               ({"CPO_EXECUTOR": "celery", "CPO_CELERY_BROKER": "redis://127.0.0.1:1/0", "CPO_CELERY_BACKEND": "redis://127.0.0.1:1/0",
                                                 "CPO_WAREHOUSE_URL": "postgresql://cpo@127.0.0.1:1/warehouse"}, "celery")])
def test_the_executor_is_chosen_by_the_environment(environ, kind):
    from personalization_assets.defs.jobs import executor_def

    assert executor_def(environ).name == kind


@pytest.mark.parametrize("missing", ["CPO_CELERY_BROKER", "CPO_CELERY_BACKEND", "CPO_WAREHOUSE_URL"])
def test_celery_without_its_broker_backend_or_the_shared_warehouse_is_a_config_error(missing):
    from personalization_assets.defs.jobs import executor_def

    environ = {"CPO_EXECUTOR": "celery", "CPO_CELERY_BROKER": "redis://127.0.0.1:1/0", "CPO_CELERY_BACKEND": "redis://127.0.0.1:1/0",
               "CPO_WAREHOUSE_URL": "postgresql://cpo@127.0.0.1:1/warehouse"}
    del environ[missing]
    with pytest.raises(ConfigError, match=missing):
        executor_def(environ)


def test_with_celery_a_backfill_of_many_segments_runs_one_segment_per_run(monkeypatch):
    from personalization_assets.defs.partitions import segment_backfill_policy

    assert segment_backfill_policy().max_partitions_per_run is None  # one run for them all, in-process
    monkeypatch.setenv("CPO_EXECUTOR", "celery")  # executor_name alone: the other settings are the executor's to check
    assert segment_backfill_policy().max_partitions_per_run == 1
