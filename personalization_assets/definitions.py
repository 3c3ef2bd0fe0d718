"""The Dagster code location: `Definitions` built from a campaign file.

`workspace.yaml` and `[tool.dagster]` load `defs` from here, built from the default campaign
(`CPO_CAMPAIGN`, else `data/campaign.yaml`). Partitions come from the campaign: one `segment`
partition per catalog entry, one weekly `wave` partition per week from `first_wave`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource
from dagster_duckdb_pandas import DuckDBPandasIOManager

from personalization_assets.config import audit_dir, default_campaign_path, load_campaign, warehouse_path
from personalization_assets.defs.content_assets import CONTENT_GROUP, SCHEMA, build_content_assets
from personalization_assets.defs.resources import AuditResource, CampaignResource, LocalBM25Search, LocalSafety, LocalTemplateGenerator
from personalization_assets.defs.wave_assets import WAVE_GROUP, build_wave_assets
from personalization_assets.segmentation import load_catalog

CONTENT_JOB = "campaign_content"
WAVE_JOB = "campaign_wave"


def wave_partitions_def(first_wave: dt.date) -> dg.WeeklyPartitionsDefinition:
    # Weeks start on Monday; end_offset=1 makes the current week a partition, so a wave can be
    # sent at the start of its week rather than after it ends.
    return dg.WeeklyPartitionsDefinition(start_date=first_wave.isoformat(), day_offset=1, end_offset=1)


def build_definitions(campaign_path: Path | str, *, warehouse: Path | None = None) -> dg.Definitions:
    campaign_path = Path(campaign_path).resolve()
    config = load_campaign(campaign_path)
    catalog = load_catalog(config.segments_path)
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
        assets=[*build_content_assets(segment_partitions), *build_wave_assets(wave_partitions)],
        jobs=[content_job, wave_job],
        schedules=[dg.build_schedule_from_partitioned_job(wave_job, name="weekly_campaign_wave")],
        resources={
            "campaign": CampaignResource(campaign_path=str(campaign_path)),
            "audit": AuditResource(directory=str(audit_dir())),
            "generator": LocalTemplateGenerator(),
            "search": LocalBM25Search(),
            "safety": LocalSafety(),
            "io_manager": DuckDBPandasIOManager(database=database, schema=SCHEMA),
            "warehouse": DuckDBResource(database=database),
        },
    )


defs = build_definitions(default_campaign_path())
