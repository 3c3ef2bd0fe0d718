"""Screening through `azure-ai-contentsafety` (analyze_text + text blocklists) against the loopback double."""

import pytest

from personalization_assets.backends.azure_safety import read_severities, text_chunks
from personalization_assets.defs.resources import AzureContentSafety
from personalization_assets.safety.policy import CATEGORIES
from personalization_assets_tests.azure_double import RESPONSE_CATEGORY_ORDER
from personalization_assets_tests.backends.conftest import SAFETY_KEY

BLOCKLISTS = {"competitor_names": ("Southpaw Gear", "TrailKing"), "banned_claims": ("miracle", "risk-free")}
CLEAN = "Our Ridgeline 2 tent pitches in under five minutes."


def safety_resource(double, **options) -> AzureContentSafety:
    # No analysis cache unless a test gives one: each test asks the double afresh.
    return AzureContentSafety(endpoint=double.url, api_key=SAFETY_KEY, max_backoff_seconds=0.01,
                              **{"use_cache": "cache_dir" in options, **options})


def test_analyze_text_on_the_wire_and_categories_read_by_name(azure_double):
    assert RESPONSE_CATEGORY_ORDER != CATEGORIES  # the double answers out of order on purpose
    azure_double.inject("unsafe", match="pitches", category="Hate", severity=4)
    [analysis] = safety_resource(azure_double).analyze([CLEAN], BLOCKLISTS)
    assert analysis.error is None and analysis.blocklist_hits == ()
    assert analysis.severities == {"Hate": 4, "SelfHarm": 0, "Sexual": 0, "Violence": 0}

    [call] = azure_double.recorded("safety", "analyze")
    assert call.path == "/contentsafety/text:analyze" and call.query == {"api-version": ["2023-10-01"]}
    assert call.headers["ocp-apim-subscription-key"] == SAFETY_KEY
    body = call.json()
    assert body["text"] == CLEAN and sorted(body["categories"]) == sorted(CATEGORIES)
    assert sorted(body["blocklistNames"]) == sorted(BLOCKLISTS) and body["haltOnBlocklistHit"] is False
    assert body["outputType"] == "FourSeverityLevels"


def test_blocklists_are_created_and_synced_through_the_blocklist_api(azure_double):
    azure_double.blocklists["competitor_names"] = {
        "description": "old", "items": {"stale-1": {"blocklistItemId": "stale-1", "description": None, "text": "Fjellhaus"}},
    }
    safety = safety_resource(azure_double)
    safety.analyze([CLEAN], BLOCKLISTS)
    stored = {name: sorted(i["text"] for i in b["items"].values()) for name, b in azure_double.blocklists.items()}
    assert stored == {name: sorted(terms) for name, terms in BLOCKLISTS.items()}  # stale item removed, new ones added
    operations = [r.operation for r in azure_double.recorded("safety") if r.operation != "analyze"]
    assert operations.count("blocklist_upsert") == 2 and "blocklist_remove" in operations and "blocklist_add" in operations
    stats = safety.service_stats()
    assert stats["blocklist_items_added"] == 4 and stats["blocklist_items_removed"] == 1

    safety.analyze(["another text"], BLOCKLISTS)  # synced once per run, not per call
    assert len([r for r in azure_double.recorded("safety") if r.operation.startswith("blocklist")]) == len(operations)


def test_blocklist_matches_come_back_from_the_service(azure_double):
    [analysis] = safety_resource(azure_double).analyze(["Lighter than anything from TrailKing, and risk-free."], BLOCKLISTS)
    assert set(analysis.blocklist_hits) == {"competitor_names:TrailKing", "banned_claims:risk-free"}
    [call] = azure_double.recorded("safety", "analyze")
    assert azure_double.blocklists["competitor_names"]["items"]  # the service held the terms it matched


def test_identical_and_empty_texts_are_not_sent_twice_or_at_all(azure_double):
    analyses = safety_resource(azure_double).analyze([CLEAN, "", CLEAN, "  "], BLOCKLISTS)
    assert len(azure_double.recorded("safety", "analyze")) == 1
    assert analyses[0] == analyses[2] and analyses[1].severities == dict.fromkeys(CATEGORIES, 0)


def test_transient_failures_are_retried(azure_double):
    azure_double.inject("429", service="safety", match="analyze", times=1)  # a POST without Retry-After
    azure_double.inject("429", service="safety", match="analyze", times=1, retry_after_ms=10)
    azure_double.inject("500", service="safety", match="blocklist_upsert", times=1)
    azure_double.inject("malformed", service="safety", match="analyze", times=1)
    azure_double.inject("timeout", service="safety", match="analyze", times=1, seconds=1.0)
    safety = safety_resource(azure_double, timeout_seconds=0.3)
    [analysis] = safety.analyze([CLEAN], BLOCKLISTS)
    assert analysis.error is None and analysis.severities is not None
    stats = safety.service_stats()
    assert stats["retries"] == 5
    assert (stats["retries_429"], stats["retries_500"], stats["retries_malformed"], stats["retries_timeout"]) == (2, 1, 1, 1)
    azure_double.wait_idle()


def test_a_text_whose_analysis_fails_comes_back_as_an_error(azure_double):
    azure_double.inject("503", service="safety", match="pitches")
    safety = safety_resource(azure_double, max_attempts=2)
    bad, good = safety.analyze([CLEAN, "A friendly note about boots."], BLOCKLISTS)
    assert bad.severities is None and "gave up after 2 attempts, last failure 503" in bad.error
    assert good.error is None and good.severities is not None


def test_service_down_raises_before_anything_is_analyzed(azure_double):
    azure_double.inject("503", service="safety")
    with pytest.raises(Exception, match="Content Safety create blocklist competitor_names: gave up after 2 attempts"):
        safety_resource(azure_double, max_attempts=2).analyze([CLEAN], BLOCKLISTS)
    assert not azure_double.recorded("safety", "analyze")


def test_missing_categories_stay_missing_and_long_texts_are_split():
    class Item:
        def __init__(self, category, severity):
            self.category, self.severity = category, severity

    assert read_severities([Item("violence", 2), Item("Hate", None), Item("Unknown", 6)]) == {"Violence": 2}
    pieces = text_chunks("word " * 5000, limit=10_000)
    assert len(pieces) == 3 and all(len(p) <= 10_000 for p in pieces)


def test_a_rerun_rescreens_only_the_texts_that_failed(azure_double, tmp_path):
    """Analyses that succeeded are kept (by text, blocklists, endpoint and API version); a text
    whose analysis failed is asked again on the next run, and only it."""
    texts = [CLEAN, "Fresh boots for the spring trails.", "Our guides pick the best routes."]
    azure_double.inject("503", service="safety", match="spring trails")
    first = safety_resource(azure_double, max_attempts=2, cache_dir=str(tmp_path / "cache")).analyze(texts, BLOCKLISTS)
    assert [a.error is None for a in first] == [True, False, True]
    azure_double.clear_faults()
    azure_double.reset_records()
    again = safety_resource(azure_double, cache_dir=str(tmp_path / "cache")).analyze(texts, BLOCKLISTS)
    assert all(a.error is None for a in again)
    asked = [r.json()["text"] for r in azure_double.recorded("safety", "analyze")]
    assert asked == ["Fresh boots for the spring trails."]
    assert [a.severities for a in again][::2] == [a.severities for a in first][::2]
