"""Retrieval per segment: each segment's query within its allowed audiences, and the control's.

The search itself is the search resource's (embedded BM25 in `backends/local_search.py`, or
Azure AI Search); this module decides what is asked and shapes what comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from personalization_assets.campaign.config import CONTROL_ARM

# Retrieved rows serve either a segment's toned variants or the one generic control message.
PURPOSE_SEGMENT = "segment"
PURPOSE_CONTROL = "control"


@dataclass(frozen=True)
class SearchHit:
    document_id: str
    score: float
    rank: int


def segment_query(segment_name: str, segment_description: str, goal: str) -> str:
    """What a segment's retrieval asks for: who they are and what the campaign wants from them."""
    return f"{segment_name}. {segment_description} {goal}"


def retrieval_purpose(arm: str) -> str:
    """Which retrieval a variant of `arm` draws on: the control message uses the generic one."""
    return PURPOSE_CONTROL if arm == CONTROL_ARM else PURPOSE_SEGMENT


RETRIEVED_COLUMNS = ("segment", "purpose", "rank", "document_id", "title", "audience", "source_url", "score", "query")


def retrieve_for_segments(
    search: Callable[[str, Sequence[str]], list[SearchHit]],
    corpus: pd.DataFrame,
    segments: Sequence[tuple[str, str, Sequence[str]]],
    *,
    control_query: str,
    control_audiences: Sequence[str] = ("All",),
) -> pd.DataFrame:
    """Rows of retrieved documents per segment: its own query, and the generic control query.

    `segments` holds (segment id, query, allowed audiences); `search(query, audiences)` is the
    backend's search with top_k already bound.
    """
    details = corpus.set_index("document_id")[["title", "audience", "source_url"]]
    rows = []
    for segment_id, query, audiences in segments:
        for purpose, text, allowed in ((PURPOSE_SEGMENT, query, audiences), (PURPOSE_CONTROL, control_query, control_audiences)):
            for hit in search(text, allowed):
                rows.append({"segment": segment_id, "purpose": purpose, "rank": hit.rank, "document_id": hit.document_id,
                             **details.loc[hit.document_id].to_dict(), "score": hit.score, "query": text})
    return pd.DataFrame(rows, columns=list(RETRIEVED_COLUMNS))
