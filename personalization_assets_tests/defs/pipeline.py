"""Materialize a campaign the way `cpo run` does, with `dagster.materialize`, in a given instance."""

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from personalization_assets.campaign.paths import WAREHOUSE_SCHEMA as SCHEMA
from personalization_assets.defs.partitions import CONTENT_GROUP, WAVE_GROUP
from personalization_assets.warehouse import DuckDBWarehouse, as_warehouse


def materialize_segments(defs: dg.Definitions, instance: dg.DagsterInstance, segments: Sequence[str]) -> dg.ExecuteInProcessResult:
    """One run over a contiguous range of segment partitions (single-run backfill policy)."""
    return dg.materialize(
        [*defs.assets, *(defs.asset_checks or [])],
        selection=dg.AssetSelection.groups(CONTENT_GROUP),
        instance=instance,
        resources=defs.resources,
        tags={"dagster/asset_partition_range_start": segments[0], "dagster/asset_partition_range_end": segments[-1]},
        raise_on_error=False,
    )


def materialize_wave(defs: dg.Definitions, instance: dg.DagsterInstance, wave: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*defs.assets, *(defs.asset_checks or [])],
        selection=dg.AssetSelection.groups(WAVE_GROUP),
        instance=instance,
        resources=defs.resources,
        partition_key=wave,
        raise_on_error=False,
    )


def read_table(warehouse, table: str, where: str = "TRUE") -> pd.DataFrame:
    """A stored table's rows (those of `where`), through the warehouse interface every reader uses:
    `warehouse` is the embedded DuckDB file's path or a `Warehouse` (the shared PostgreSQL one)."""
    with as_warehouse(warehouse).reader([table]) as connection:
        return connection.execute(f"SELECT * FROM {SCHEMA}.{table} WHERE {where}").df()


def read_export(home, wave: str) -> pd.DataFrame:
    """The wave's rendered emails, as `personalized_messages` exports them (one row per sent customer)."""
    from personalization_assets.messages.rendering import EXPORT_FILE

    with duckdb.connect() as connection:
        return connection.execute("SELECT * FROM read_parquet(?)", [str(home / "exports" / wave / EXPORT_FILE)]).df()


def table_exists(warehouse, table: str) -> bool:
    if not Path(warehouse).exists():
        return False  # nothing was ever stored
    with DuckDBWarehouse(warehouse).reader() as connection:
        found = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [SCHEMA, table]
        ).fetchone()
    return bool(found and found[0])


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


# --- single-segment backfill, shared by the Dagster test and the browser test -------------------

BACKFILLED_SEGMENT = "loyal_frequent"
NEW_OPENER = "Fresh news from the trail team, picked for you."


def variants_by_key(warehouse) -> pd.DataFrame:
    return read_table(warehouse, "message_variants").set_index(["segment", "variant_id"]).sort_index()


def edit_friendly_openers(prompts_dir) -> None:
    """Change the friendly tone's openers: only a re-materialized segment can pick this up."""
    tone_file = prompts_dir / "tones" / "friendly.md"
    text = tone_file.read_text()
    start, end = text.index("openers:"), text.index("cta:")
    tone_file.write_text(text[:start] + f'openers:\n  - "{NEW_OPENER}"\n' + text[end:])


def assert_only_backfilled_segment_changed(before: pd.DataFrame, warehouse, segments: Sequence[str]) -> None:
    after = variants_by_key(warehouse)
    assert list(after.index) == list(before.index)  # same rows: replaced, not appended
    changed = sorted(after.index[(after["body"] != before["body"]).to_numpy()])
    assert changed == [(BACKFILLED_SEGMENT, f"{BACKFILLED_SEGMENT}:friendly")]
    assert NEW_OPENER in after.loc[(BACKFILLED_SEGMENT, f"{BACKFILLED_SEGMENT}:friendly"), "body"]
    untouched = [key for key in before.index if key[0] != BACKFILLED_SEGMENT]
    pd.testing.assert_frame_equal(after.loc[untouched], before.loc[untouched])
    verdicts = read_table(warehouse, "safety_verdicts")
    assert verdicts.groupby("segment").size().to_dict() == {s: 4 for s in segments}
