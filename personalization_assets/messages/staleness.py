"""Which segments' messages were written from prompts or documents that have changed since.

Every variant stores `prompt_sha256`, the hash of the exact messages its backend was sent: the
prompt files, the company and goal, the segment's description and the text of every document
it was given. Planning the same requests again from the prompt files and content documents as
they are now (`variants.plan_requests`, on the documents each segment retrieved) gives the hash
each variant would have today; a segment whose stored hash differs is stale: its emails still
say what the old prompt or document said. After a one-segment backfill, the others are listed,
so a user knows which to backfill. A document newly added to the corpus, which retrieval might
now pick, is not seen here: only edits to what each segment was given.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from personalization_assets.audience.segmentation import SegmentCatalog
from personalization_assets.campaign.config import CampaignConfig
from personalization_assets.messages.prompts import PromptLibrary
from personalization_assets.messages.variants import plan_requests


def stale_variants(
    config: CampaignConfig,
    catalog: SegmentCatalog,
    prompts: PromptLibrary,
    variants: pd.DataFrame,
    retrieved: pd.DataFrame,
    corpus: pd.DataFrame,
) -> dict[str, list[str]]:
    """Segment -> its variant ids written from older prompts or documents (segments in catalog order)."""
    built = set(variants["segment"])
    segments: Sequence[str] = [s for s in catalog.ids if s in built and s in set(retrieved["segment"])]
    stored = dict(zip(zip(variants["segment"], variants["variant_id"]), variants["prompt_sha256"]))
    stale: dict[str, list[str]] = {}
    for request in plan_requests(config, catalog, prompts, segments, retrieved, corpus):
        if stored.get((request.segment_id, request.variant_id)) != request.prompt_sha256:
            stale.setdefault(request.segment_id, []).append(request.variant_id)
    return stale


def staleness_summary(stale: dict[str, list[str]]) -> str:
    if not stale:
        return "every segment's messages were written from the current prompts and documents"
    commands = "; ".join(f"cpo backfill --segment {segment}" for segment in stale)
    return (f"{len(stale)} segment(s) were written from older prompts or documents: {', '.join(stale)}. "
            f"Rebuild them with: {commands} (or `cpo run`, which rebuilds every segment)")
