"""Content stage: the approved corpus screened and indexed for search, and each segment's retrieved documents."""

import dagster as dg
import pandas as pd

from personalization_assets.campaign.errors import DataContractError
from personalization_assets.content.corpus import CORPUS_COLUMNS, load_corpus
from personalization_assets.content.retrieval import (
    retrieve_for_segments,
    segment_query,
)
from personalization_assets.defs.metadata import add_segment_metadata, service_metadata
from personalization_assets.defs.partitions import (
    CONTENT_GROUP,
    CONTENT_SAFETY_POOL,
    per_segment,
)
from personalization_assets.defs.resources import (
    CampaignResource,
    SafetyResource,
    SearchResource,
)
from personalization_assets.defs.types import SCHEMAS
from personalization_assets.safety.documents import (
    APPROVED,
    screen_documents,
)
from personalization_assets.safety.policy import SafetyPolicy


@dg.asset(group_name=CONTENT_GROUP, metadata={"dagster/column_schema": SCHEMAS["screened_corpus"]}, pool=CONTENT_SAFETY_POOL)
def screened_corpus(context: dg.AssetExecutionContext, campaign: CampaignResource, safety: SafetyResource) -> pd.DataFrame:
    """Every document of the content folder (data/content/*.json), validated and screened: approved,
    or quarantined with its reasons (harm, blocklists, source rules, markup and template syntax)."""
    corpus = load_corpus(campaign.config.paths.content)
    settings = campaign.config.safety
    service_before = dict(safety.service_stats())
    verdicts = screen_documents(corpus, analyze=lambda texts: safety.analyze(texts, dict(settings.blocklists)),
                                policy=SafetyPolicy.from_settings(settings), backend=safety.backend)
    # Fail closed: a document the service could not judge is quarantined like a harmful one (a
    # re-run re-screens only those); a service that judged none stops here, saying why.
    failed = verdicts[verdicts["reasons"].str.contains("safety service failed", regex=False)]
    if len(failed) == len(corpus):
        raise dg.Failure(f"content not indexed: the safety service failed on all {len(corpus)} documents "
                         f"({failed['reasons'].iloc[0]})")
    frame = corpus.merge(verdicts, on="document_id", how="left", validate="one_to_one")
    quarantined = frame[frame["decision"] != APPROVED]
    context.add_output_metadata({
        "dagster/row_count": len(frame), "approved": len(frame) - len(quarantined), "quarantined": len(quarantined),
        "quarantined_documents": dg.MetadataValue.md(
            "\n".join(f"- `{r.document_id}` ({r.source_file}): {r.reasons}" for r in quarantined.itertuples()) or "none"),
        **service_metadata(service_before, safety.service_stats()),
    })
    return frame


@dg.asset(group_name=CONTENT_GROUP)
def content_index(context: dg.AssetExecutionContext, search: SearchResource, screened_corpus: pd.DataFrame) -> pd.DataFrame:
    """The approved documents that passed screening, indexed for search: a quarantined document is
    never retrieved, cited or quoted."""
    corpus = screened_corpus.loc[screened_corpus["decision"] == APPROVED, list(CORPUS_COLUMNS)].reset_index(drop=True)
    if corpus.empty:
        raise dg.Failure("content not indexed: every document was quarantined by screening (see screened_corpus)")
    service_before = dict(search.service_stats())
    index_info = search.index_corpus(corpus)
    context.add_output_metadata(
        {"dagster/row_count": len(corpus), "quarantined": len(screened_corpus) - len(corpus), "backend": search.backend,
         "audiences": ", ".join(sorted(corpus["audience"].unique())),
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
        raise DataContractError(campaign.config.paths.segments, "audiences", f"no approved document matches the audiences of "
                                f"segments {empty}: add content for them or widen their 'audiences'")
    add_segment_metadata(context, frame, backend=search.backend, **service_metadata(service_before, search.service_stats()))
    return frame
