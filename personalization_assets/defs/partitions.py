"""The code location's campaign and the partitions built from it when the definitions load.

The campaign is `CPO_CAMPAIGN`, else `data/campaign.yaml` (see `campaign/paths.py`): one `segment`
partition per catalog entry, one weekly `wave` partition per week from its `first_wave`. The
customer-level assets load only the customer columns the catalog's rules read.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from personalization_assets.audience.customers import NUMERIC_RULES
from personalization_assets.audience.segmentation import SegmentCatalog, load_catalog
from personalization_assets.campaign.config import load_campaign
from personalization_assets.campaign.paths import default_campaign_path

CONTENT_GROUP = "content"
WAVE_GROUP = "wave"
ROLLOUT_GROUP = "rollout"  # after a test on a share: the policies' values and the send to everyone else
DELIVERY_GROUP = "delivery"  # the wave's MIME messages and their delivery: run by `cpo send`, not by the wave job
# Waves are stored as 'YYYY-MM-DD' text; the cast lets the IO manager select a week's rows.
WAVE_PARTITION_EXPR = "CAST(wave AS TIMESTAMP)"

# Dagster pools of the steps that call a rate-limited service: with a limit set on the instance
# (`concurrency: pools:` in dagster.yaml, or `dagster instance concurrency set POOL N`), no more
# steps of a pool run at once across every run and worker than the service allows; without one, no limit.
GENERATION_POOL = "cpo_generation"
CONTENT_SAFETY_POOL = "cpo_content_safety"

CAMPAIGN_PATH = default_campaign_path()
CAMPAIGN = load_campaign(CAMPAIGN_PATH)
CATALOG = load_catalog(CAMPAIGN.paths.segments)


def wave_partitions_def(first_wave: dt.date) -> dg.WeeklyPartitionsDefinition:
    # Weeks start on Monday; end_offset=1 makes the current week a partition, so a wave can be
    # sent at the start of its week rather than after it ends.
    return dg.WeeklyPartitionsDefinition(start_date=first_wave.isoformat(), day_offset=1, end_offset=1)


segment_partitions = dg.StaticPartitionsDefinition(CATALOG.ids)
wave_partitions = wave_partitions_def(CAMPAIGN.first_wave)


def segmentation_columns(catalog: SegmentCatalog) -> tuple[str, ...]:
    """The customer columns segmentation reads: the contract's numbers and tier, and every rule column."""
    return tuple(dict.fromkeys(
        ["customer_id", "tier", *(rule.column for rule in NUMERIC_RULES),
         *(condition.column for segment in catalog.segments for condition in segment.conditions)]
    ))


SEGMENTATION_COLUMNS = segmentation_columns(CATALOG)

def _metadata(partition_expr: str, schema: dg.TableSchema | None) -> dict[str, object]:
    return {"partition_expr": partition_expr, **({"dagster/column_schema": schema} if schema is not None else {})}


def segment_backfill_policy() -> dg.BackfillPolicy:
    """How a backfill of many segments runs: as one run, one step per asset for all of them (the
    cheapest on one machine), or, with the Celery executor, one run per segment, so the segments'
    steps spread over the workers (and the generation pool limits them across runs)."""
    from personalization_assets.defs.jobs import (
        executor_name,  # jobs imports this module
    )

    return dg.BackfillPolicy.multi_run(1) if executor_name() == "celery" else dg.BackfillPolicy.single_run()


def per_segment(schema: dg.TableSchema | None = None) -> dict[str, object]:
    """The `@asset` arguments of a per-segment asset: a backfill of one segment replaces only that
    segment's rows; a backfill of many runs as `segment_backfill_policy` says."""
    return dict(partitions_def=segment_partitions, backfill_policy=segment_backfill_policy(),
                metadata=_metadata("segment", schema), group_name=CONTENT_GROUP)


def per_wave(schema: dg.TableSchema | None = None, group: str = WAVE_GROUP) -> dict[str, object]:
    """The `@asset` arguments of a per-wave asset: each wave is its own partition, so next week
    never overwrites this week."""
    return dict(partitions_def=wave_partitions, metadata=_metadata(WAVE_PARTITION_EXPR, schema), group_name=group)


def wave_out(schema: dg.TableSchema | None = None, group: str = ROLLOUT_GROUP) -> dg.AssetOut:
    """One per-wave output of a multi-asset, stored like a `per_wave` asset's."""
    return dg.AssetOut(metadata=_metadata(WAVE_PARTITION_EXPR, schema), group_name=group)


# Wave assets read every segment's content rows.
ALL_SEGMENTS = dg.AssetIn(partition_mapping=dg.AllPartitionMapping())


def columns(*names: str) -> dg.AssetIn:
    """Load only these columns of an upstream table (the DuckDB IO manager selects them in SQL)."""
    return dg.AssetIn(metadata={"columns": list(names)})


def matches_code_location(catalog: SegmentCatalog, first_wave: dt.date) -> bool:
    """Whether another campaign file can run on these definitions: the same segments (the
    partitions), the same first wave, and rules over the same customer columns (what
    `customer_segments` loads)."""
    return (catalog.ids == CATALOG.ids and first_wave == CAMPAIGN.first_wave
            and set(segmentation_columns(catalog)) == set(SEGMENTATION_COLUMNS))
