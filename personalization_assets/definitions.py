"""The Dagster code location: `Definitions` built from a campaign file.

`workspace.yaml` and `[tool.dagster]` load `defs` from here, built from the default campaign
(`CPO_CAMPAIGN`, else `data/campaign.yaml`). Partitions come from the campaign: one `segment`
partition per catalog entry, one weekly `wave` partition per week from `first_wave`.

Executor: in-process by default, for every job (CLI, UI, schedule); `CPO_EXECUTOR=multiprocess`
runs each step in its own process (`CPO_MAX_CONCURRENT` at a time, default one per CPU). See
docs/performance.md for when that helps.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from personalization_assets.audience.segmentation import load_catalog
from personalization_assets.campaign.config import load_campaign
from personalization_assets.campaign.errors import ConfigError
from personalization_assets.campaign.paths import (
    audit_dir,
    default_campaign_path,
    warehouse_path,
)
from personalization_assets.defs.content_assets import (
    CONTENT_GROUP,
    SCHEMA,
    build_content_assets,
)
from personalization_assets.defs.io_managers import WarehouseIOManager
from personalization_assets.defs.resources import (
    AuditResource,
    CampaignResource,
    select_backends,
)
from personalization_assets.defs.sensors import build_engagement_sensor
from personalization_assets.defs.wave_assets import WAVE_GROUP, build_wave_assets

CONTENT_JOB = "campaign_content"
WAVE_JOB = "campaign_wave"
EXECUTOR_ENV = "CPO_EXECUTOR"
MAX_CONCURRENT_ENV = "CPO_MAX_CONCURRENT"
EXECUTORS = ("in_process", "multiprocess")


def executor_name(environ: os._Environ | dict[str, str] = os.environ) -> str:
    name = environ.get(EXECUTOR_ENV, "").strip() or "in_process"
    if name not in EXECUTORS:
        raise ConfigError(EXECUTOR_ENV, f"must be one of {list(EXECUTORS)}, got {name!r}")
    return name


def executor_def(environ: os._Environ | dict[str, str] = os.environ) -> dg.ExecutorDefinition:
    """The jobs' executor: in-process (the default), or multiprocess with `CPO_EXECUTOR=multiprocess`."""
    if executor_name(environ) == "in_process":
        return dg.in_process_executor
    raw = environ.get(MAX_CONCURRENT_ENV, "").strip() or "0"
    if not raw.isdigit():
        raise ConfigError(MAX_CONCURRENT_ENV, f"must be a whole number (0: one step per CPU), got {raw!r}")
    return dg.multiprocess_executor.configured({"max_concurrent": int(raw)})


def wave_partitions_def(first_wave: dt.date) -> dg.WeeklyPartitionsDefinition:
    # Weeks start on Monday; end_offset=1 makes the current week a partition, so a wave can be
    # sent at the start of its week rather than after it ends.
    return dg.WeeklyPartitionsDefinition(start_date=first_wave.isoformat(), day_offset=1, end_offset=1)


def build_definitions(campaign_path: Path | str, *, warehouse: Path | None = None) -> dg.Definitions:
    campaign_path = Path(campaign_path).resolve()
    config = load_campaign(campaign_path)
    catalog = load_catalog(config.paths.segments)
    segment_partitions = dg.StaticPartitionsDefinition(catalog.ids)
    wave_partitions = wave_partitions_def(config.first_wave)
    database = str(warehouse or warehouse_path())

    content_job = dg.define_asset_job(
        CONTENT_JOB,
        selection=dg.AssetSelection.groups(CONTENT_GROUP),
        description="Retrieve, generate and screen the variants of every (or the selected) segment.",
    )
    wave_job = dg.define_asset_job(
        WAVE_JOB,
        selection=dg.AssetSelection.groups(WAVE_GROUP),
        description="Segment, assign, render, take engagement, analyse and report one campaign wave.",
    )
    return dg.Definitions(
        assets=[
            *build_content_assets(segment_partitions),
            *build_wave_assets(wave_partitions, rule_columns=[c.column for s in catalog.segments for c in s.conditions]),
        ],
        jobs=[content_job, wave_job],
        executor=executor_def(),
        schedules=[dg.build_schedule_from_partitioned_job(wave_job, name="weekly_campaign_wave")],
        sensors=[build_engagement_sensor(WAVE_JOB, wave_partitions)],
        resources={
            "campaign": CampaignResource(campaign_path=str(campaign_path)),
            "audit": AuditResource(directory=str(audit_dir())),
            # Each service role from the environment (Azure, an OpenAI-compatible server), else embedded.
            **select_backends(os.environ, max_concurrency=config.generation.max_concurrency),
            # DuckDB tables, one per asset; within a run, frames just stored are not re-read.
            "io_manager": WarehouseIOManager(database=database, schema=SCHEMA),
            "warehouse": DuckDBResource(database=database),
        },
    )


def campaign_job(job_name: str, campaign_path: str) -> dg.JobDefinition:
    """A job of the campaign at `campaign_path`: how a step process of the multiprocess executor
    rebuilds the job the CLI launched (see `cli.Session`)."""
    return build_definitions(campaign_path).resolve_job_def(job_name)


defs = build_definitions(default_campaign_path())
