"""The sample campaign's real variant requests (retrieved with the embedded BM25), for backend tests
and the benchmark."""

from __future__ import annotations

from pathlib import Path

from personalization_assets.audience.segmentation import load_catalog
from personalization_assets.backends.local_search import BM25Index
from personalization_assets.campaign.config import load_campaign
from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.content.corpus import load_corpus
from personalization_assets.content.retrieval import (
    retrieve_for_segments,
    segment_query,
)
from personalization_assets.messages.generation import VariantRequest
from personalization_assets.messages.prompts import load_prompts
from personalization_assets.messages.variants import plan_requests

SAMPLE_CAMPAIGN = PROJECT_ROOT / "data" / "campaign.yaml"


def campaign_requests(campaign_path: Path | str = SAMPLE_CAMPAIGN, segments: list[str] | None = None) -> list[VariantRequest]:
    """Control + one request per tone for each segment, exactly as `message_variants` plans them."""
    config = load_campaign(campaign_path)
    catalog = load_catalog(config.paths.segments)
    prompts = load_prompts(config.paths.prompts, config.tones)
    corpus = load_corpus(config.paths.content)
    index = BM25Index(corpus)
    chosen = segments or catalog.ids
    retrieved = retrieve_for_segments(
        lambda query, audiences: index.search(query, audiences, config.retrieval.top_k),
        corpus,
        [(s.segment_id, segment_query(s.name, s.description, config.goal), s.audiences) for s in map(catalog.get, chosen)],
        control_query=config.goal,
    )
    return plan_requests(config, catalog, prompts, chosen, retrieved, corpus)
