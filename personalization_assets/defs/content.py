"""Content stage: the approved corpus indexed for search, and each segment's retrieved documents."""

import dagster as dg
import pandas as pd

from personalization_assets.content.corpus import load_corpus
from personalization_assets.content.retrieval import (
    retrieve_for_segments,
    segment_query,
)
from personalization_assets.defs.metadata import segment_metadata, service_metadata
from personalization_assets.defs.partitions import CONTENT_GROUP, per_segment
from personalization_assets.defs.resources import CampaignResource, SearchResource


@dg.asset(group_name=CONTENT_GROUP)
def content_index(context: dg.AssetExecutionContext, campaign: CampaignResource, search: SearchResource) -> pd.DataFrame:
    """The approved content corpus (data/content/*.json), validated and indexed for search."""
    corpus = load_corpus(campaign.config.paths.content)
    service_before = dict(search.service_stats())
    index_info = search.index_corpus(corpus)
    context.add_output_metadata(
        {"dagster/row_count": len(corpus), "backend": search.backend, "audiences": ", ".join(sorted(corpus["audience"].unique())),
         **{f"index_{k}": v for k, v in index_info.items()}, **service_metadata(service_before, search.service_stats())}
    )
    return corpus


@dg.asset(**per_segment())
def retrieved_content(
    context: dg.AssetExecutionContext, campaign: CampaignResource, search: SearchResource, content_index: pd.DataFrame
) -> pd.DataFrame:
    """Approved documents per segment (BM25 with the segment's audience filter) and for the control."""
    config, catalog = campaign.config, campaign.catalog
    segments = [
        (s.segment_id, segment_query(s.name, s.description, config.goal), s.audiences)
        for s in map(catalog.get, context.partition_keys)
    ]
    service_before = dict(search.service_stats())
    frame = retrieve_for_segments(
        lambda query, audiences: search.search(content_index, query, audiences, config.retrieval.top_k),
        content_index,
        segments,
        control_query=config.goal,
    ).assign(backend=search.backend)
    empty = sorted(set(context.partition_keys) - set(frame.loc[frame["purpose"] == "segment", "segment"]))
    if empty:
        raise dg.Failure(f"no approved documents match the audiences of segments {empty}: add content or widen 'audiences'")
    context.add_output_metadata(
        segment_metadata(frame, backend=search.backend, **service_metadata(service_before, search.service_stats()))
    )
    return frame
