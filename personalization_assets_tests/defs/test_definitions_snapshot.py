"""The shape of the code location, as a committed snapshot: any change to the graph shows in review.

The snapshot (`definitions_snapshot.json`, next to this file) holds every asset with its group,
partitions, dependencies and backfill policy; every asset check with its blocking flag; the jobs,
schedules and sensors. It is built from the committed sample campaign (`data/campaign.yaml`) and
depends on neither the clock nor the environment (the executor is built with its defaults;
resources, which the environment chooses, are left out). After an intended change, regenerate it and commit the diff with the change:

    UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest personalization_assets_tests/defs/test_definitions_snapshot.py
"""

import json
import os
from pathlib import Path

import dagster as dg

from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.definitions import campaign_definitions

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")
REGENERATE = f"UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest {Path(__file__).relative_to(PROJECT_ROOT)}"


def partitions_summary(partitions_def: dg.PartitionsDefinition | None) -> dict | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.StaticPartitionsDefinition):
        return {"kind": "static", "keys": partitions_def.get_partition_keys()}
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        # The number of keys grows with the clock; the definition itself does not.
        return {
            "kind": "time_window",
            "cron_schedule": partitions_def.cron_schedule,
            "timezone": partitions_def.timezone,
            "fmt": partitions_def.fmt,
            "start": partitions_def.start.isoformat(),
            "end": partitions_def.end.isoformat() if partitions_def.end else None,
            "end_offset": partitions_def.end_offset,
            "first_key": partitions_def.get_first_partition_key(),
        }
    return {"kind": type(partitions_def).__name__}


def backfill_summary(policy: dg.BackfillPolicy | None) -> str | None:
    if policy is None:
        return None
    return policy.policy_type.value + (f"(max {policy.max_partitions_per_run})" if policy.max_partitions_per_run else "")


def definitions_snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    repository = defs.get_repository_def()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": partitions_summary(node.partitions_def),
            "backfill_policy": backfill_summary(node.backfill_policy),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "partition_mappings": {
                parent.to_user_string(): type(mapping).__name__
                for parent, mapping in sorted(node.partition_mappings.items(), key=lambda item: item[0].to_user_string())
            },
            "checks": sorted(check.name for check in node.check_keys),
        }
    checks = [
        {"asset": check.asset_key.to_user_string(), "name": check.name, "blocking": bool(graph.get(check).blocking)}
        for check in sorted(graph.asset_check_keys, key=lambda c: (c.asset_key.to_user_string(), c.name))
    ]
    jobs = {
        job.name: {
            "assets": sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys),
            "partitions": partitions_summary(job.partitions_def),
            "executor": job.executor_def.name,
        }
        for job in sorted(repository.get_all_jobs(), key=lambda j: j.name)
        if not job.name.startswith("__")  # Dagster's implicit asset job
    }
    schedules = {
        schedule.name: {
            "job": schedule.job_name,
            "cron_schedule": schedule.cron_schedule,
            "timezone": schedule.execution_timezone,
            "default_status": schedule.default_status.value,
        }
        for schedule in sorted(repository.schedule_defs, key=lambda s: s.name)
    }
    sensors = {
        sensor.name: {
            "job": sensor.job_name,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "default_status": sensor.default_status.value,
            "required_resources": sorted(sensor.required_resource_keys),
        }
        for sensor in sorted(repository.sensor_defs, key=lambda s: s.name)
    }
    return {"assets": assets, "asset_checks": checks, "jobs": jobs, "schedules": schedules, "sensors": sensors}


def render(snapshot: dict) -> str:
    return json.dumps(snapshot, indent=2, sort_keys=True) + "\n"


def test_definitions_match_the_committed_snapshot(tmp_path, monkeypatch):
    # The defaults, whatever this shell chose (the executor comes from the environment).
    for variable in ("CPO_EXECUTOR", "CPO_MAX_CONCURRENT"):
        monkeypatch.delenv(variable, raising=False)
    defs = campaign_definitions(PROJECT_ROOT / "data" / "campaign.yaml", warehouse=tmp_path / "warehouse.duckdb")
    current = render(definitions_snapshot(defs))
    if os.environ.get("UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.is_file(), f"{SNAPSHOT.name} is missing; create it with: {REGENERATE}"
    committed = SNAPSHOT.read_text()
    if current != committed:
        import difflib

        diff = "".join(difflib.unified_diff(committed.splitlines(True), current.splitlines(True), "committed", "current"))
        raise AssertionError(
            f"The Dagster definitions changed (assets, partitions, deps, checks, jobs, schedules or sensors).\n"
            f"If the change is intended, regenerate {SNAPSHOT.name} and commit it with the change:\n  {REGENERATE}\n\n{diff}"
        )
