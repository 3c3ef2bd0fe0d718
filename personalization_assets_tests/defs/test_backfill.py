"""Single-segment backfill: re-materializing one segment replaces only that segment's rows."""

import dagster as dg
import pandas as pd

from personalization_assets.definitions import build_definitions
from personalization_assets_tests.conftest import TEST_WAVE
from personalization_assets_tests.defs.pipeline import materialize_segments, materialize_wave, read_export, read_table

EDITED = "loyal_frequent"
NEW_OPENER = "Fresh news from the trail team, picked for you."


def variants_by_key(warehouse) -> pd.DataFrame:
    return read_table(warehouse, "message_variants").set_index(["segment", "variant_id"]).sort_index()


def test_one_segment_backfill_replaces_only_that_segment(campaign_folder):
    defs = build_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    instance = dg.DagsterInstance.ephemeral()
    segments = defs.resolve_job_def("campaign_content").partitions_def.get_partition_keys()
    assert materialize_segments(defs, instance, segments).success
    assert materialize_wave(defs, instance, TEST_WAVE).success
    before = variants_by_key(campaign_folder.warehouse)

    # Edit the friendly tone's openers; only the backfilled segment may pick the change up.
    tone_file = campaign_folder.root / "prompts" / "tones" / "friendly.md"
    text = tone_file.read_text()
    start = text.index("openers:")
    end = text.index("cta:")
    tone_file.write_text(text[:start] + f'openers:\n  - "{NEW_OPENER}"\n' + text[end:])
    defs = build_definitions(campaign_folder.campaign, warehouse=campaign_folder.warehouse)
    assert materialize_segments(defs, instance, [EDITED]).success

    after = variants_by_key(campaign_folder.warehouse)
    assert list(after.index) == list(before.index)  # same rows: replaced, not appended
    changed = sorted(after.index[(after["body"] != before["body"]).to_numpy()])
    assert changed == [(EDITED, f"{EDITED}:friendly")]
    assert NEW_OPENER in after.loc[(EDITED, f"{EDITED}:friendly"), "body"]
    untouched = [key for key in before.index if key[0] != EDITED]
    pd.testing.assert_frame_equal(after.loc[untouched], before.loc[untouched])
    verdicts = read_table(campaign_folder.warehouse, "safety_verdicts")
    assert verdicts.groupby("segment").size().to_dict() == {s: 4 for s in segments}

    # The wave can then be re-run; its customers in that arm get the new message.
    assert materialize_wave(defs, instance, TEST_WAVE).success
    emails = read_export(campaign_folder.root / "home", TEST_WAVE)  # the rendered emails of the send list
    messages = emails[emails["variant_id"] == f"{EDITED}:friendly"]
    assert len(messages) > 0
    assert messages["body"].str.contains(NEW_OPENER, regex=False).all()
    assignments = read_table(campaign_folder.warehouse, "assignments")
    assert assignments["wave"].eq(TEST_WAVE).all() and assignments["customer_id"].is_unique
