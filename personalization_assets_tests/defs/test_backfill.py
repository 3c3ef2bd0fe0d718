"""Single-segment backfill: re-materializing one segment replaces only that segment's rows."""

import dagster as dg
import pytest

from personalization_assets.definitions import campaign_definitions
from personalization_assets_tests.conftest import TEST_WAVE
from personalization_assets_tests.defs.pipeline import (
    BACKFILLED_SEGMENT,
    NEW_OPENER,
    assert_only_backfilled_segment_changed,
    edit_friendly_openers,
    materialize_segments,
    materialize_wave,
    read_export,
    read_table,
    variants_by_key,
)

# Whole campaign runs through Dagster on an ephemeral instance: `pytest -m "not e2e"` skips them.
pytestmark = pytest.mark.e2e

EDITED = BACKFILLED_SEGMENT


def test_one_segment_backfill_replaces_only_that_segment(materialized_copy):
    # The copy has every segment's content and the wave TEST_WAVE materialized.
    campaign_folder = materialized_copy
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    instance = dg.DagsterInstance.ephemeral()
    segments = defs.resolve_job_def("campaign_content").partitions_def.get_partition_keys()
    before = variants_by_key(campaign_folder.warehouse)

    # Edit the friendly tone's openers; only the backfilled segment may pick the change up.
    edit_friendly_openers(campaign_folder.root / "prompts")
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    backfill = materialize_segments(defs, instance, [EDITED])
    assert backfill.success
    assert_only_backfilled_segment_changed(before, campaign_folder.warehouse, segments)
    # The other segments still carry the old friendly tone, and the content check says which and how to rebuild them.
    (current,) = [e for e in backfill.get_asset_check_evaluations() if e.check_name == "content_current"]
    others = [s for s in segments if s != EDITED]
    assert not current.passed and current.metadata["stale_segments"].value == ", ".join(others)
    assert f"cpo backfill --segment {others[0]}" in current.description

    # The wave can then be re-run; its customers in that arm get the new message.
    assert materialize_wave(defs, instance, TEST_WAVE).success
    emails = read_export(campaign_folder.root / "home", TEST_WAVE)  # the rendered emails of the send list
    messages = emails[emails["variant_id"] == f"{EDITED}:friendly"]
    assert len(messages) > 0
    assert messages["body"].str.contains(NEW_OPENER, regex=False).all()
    assignments = read_table(campaign_folder.warehouse, "assignments")
    assert assignments["wave"].eq(TEST_WAVE).all() and assignments["customer_id"].is_unique


def test_after_a_prompt_edit_the_ui_sees_the_segments_not_yet_rebuilt_as_stale(campaign_folder):
    """The message assets' code version is the prompt files' hash: a partition built before an edit
    keeps the old version, which Dagster shows as stale (code version changed) until it is rebuilt."""
    defs = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    instance = dg.DagsterInstance.ephemeral()
    segments = defs.resolve_job_def("campaign_content").partitions_def.get_partition_keys()
    assert materialize_segments(defs, instance, segments).success
    edit_friendly_openers(campaign_folder.root / "prompts")
    edited = campaign_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    assert materialize_segments(edited, instance, [EDITED]).success
    key = dg.AssetKey("message_variants")
    current = edited.resolve_assets_def(key).code_versions_by_key[key]
    assert current != defs.resolve_assets_def(key).code_versions_by_key[key]

    def built_with(segment: str) -> str:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[segment]), limit=1).records
        return records[0].asset_materialization.tags["dagster/code_version"]

    assert built_with(EDITED) == current
    assert all(built_with(segment) != current for segment in segments if segment != EDITED)
