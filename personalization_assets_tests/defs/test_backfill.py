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
