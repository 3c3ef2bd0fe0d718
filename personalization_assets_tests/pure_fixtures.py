"""Shared inputs for the unit tests of the pure modules (no Dagster).

Imported explicitly by the test modules (this is not a conftest). Everything here is built the way
the pipeline builds it (see the asset modules in personalization_assets/defs/), from
the committed `data/` and `prompts/` folders. Expensive inputs are cached per test session; the
cached frames are returned as copies so a test cannot leak changes into another.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

from personalization_assets.audience.customers import past_spend
from personalization_assets.audience.segmentation import (
    SegmentCatalog,
    assign_segments,
    load_catalog,
)
from personalization_assets.backends.local_search import BM25Index
from personalization_assets.campaign.config import (
    CONTROL_ARM,
    CampaignConfig,
    load_campaign,
)
from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.campaign.sample_data import generate_customers
from personalization_assets.content.corpus import load_corpus
from personalization_assets.content.retrieval import (
    retrieve_for_segments,
    segment_query,
)
from personalization_assets.experiment.joins import measured_customers
from personalization_assets.messages.prompts import PromptLibrary, load_prompts
from personalization_assets.messages.variants import plan_requests, variant_id

DATA_DIR = PROJECT_ROOT / "data"
CAMPAIGN_PATH = DATA_DIR / "campaign.yaml"
CUSTOMERS_CSV = DATA_DIR / "customers.csv"
SEGMENTS_PATH = DATA_DIR / "segments.yaml"
CONTENT_DIR = DATA_DIR / "content"
PROMPTS_DIR = PROJECT_ROOT / "prompts"


@lru_cache(maxsize=1)
def campaign() -> CampaignConfig:
    return load_campaign(CAMPAIGN_PATH)


@lru_cache(maxsize=1)
def catalog() -> SegmentCatalog:
    return load_catalog(campaign().paths.segments)


@lru_cache(maxsize=1)
def _corpus() -> pd.DataFrame:
    return load_corpus(campaign().paths.content)


def corpus() -> pd.DataFrame:
    return _corpus().copy()


@lru_cache(maxsize=1)
def prompt_library() -> PromptLibrary:
    config = campaign()
    return load_prompts(config.paths.prompts, config.tones)


@lru_cache(maxsize=1)
def _retrieved() -> pd.DataFrame:
    """retrieved_content for every segment, as the asset computes it with the local BM25 search."""
    config, segment_catalog, documents = campaign(), catalog(), _corpus()
    index = BM25Index(documents)
    segments = [
        (s.segment_id, segment_query(s.name, s.description, config.goal), s.audiences) for s in segment_catalog.segments
    ]
    return retrieve_for_segments(
        lambda query, audiences: index.search(query, audiences, config.retrieval.top_k),
        documents,
        segments,
        control_query=config.goal,
    )


def retrieved() -> pd.DataFrame:
    return _retrieved().copy()


@lru_cache(maxsize=1)
def _requests() -> tuple:
    return tuple(plan_requests(campaign(), catalog(), prompt_library(), catalog().ids, _retrieved(), _corpus()))


def requests() -> list:
    """The VariantRequests of every segment (frozen dataclasses: safe to share)."""
    return list(_requests())


@lru_cache(maxsize=4)
def _customer_segments(n: int, seed: int) -> pd.DataFrame:
    customers = generate_customers(n, seed=seed)
    return customers.assign(segment=assign_segments(customers, catalog()).astype(str), past_spend=past_spend(customers))


def customer_segments(n: int, seed: int = 7) -> pd.DataFrame:
    """Generated customers with their segment column, as the customer_segments asset holds them."""
    return _customer_segments(n, seed).copy()


def variants_frame(segments: list[str], arms: tuple[str, ...] | None = None) -> pd.DataFrame:
    """A minimal message_variants table: one row per (segment, arm), the control shared by id."""
    arms = arms or campaign().arm_names
    rows = [
        {"segment": s, "arm": arm, "variant_id": variant_id(s, arm), "subject": f"Subject {variant_id(s, arm)}",
         "body": f"Hi {{{{first_name}}}}, this is {variant_id(s, arm)}."}
        for s in segments
        for arm in arms
    ]
    return pd.DataFrame(rows)


def verdicts_frame(variants: pd.DataFrame, blocked: set[str] | frozenset[str] = frozenset()) -> pd.DataFrame:
    """safety_verdicts for `variants`: approved, except the (segment:arm or 'segment|control') ids in `blocked`."""
    decisions = [
        "blocked" if (row.variant_id in blocked or f"{row.segment}|{row.variant_id}" in blocked) else "approved"
        for row in variants.itertuples(index=False)
    ]
    return variants[["segment", "variant_id"]].assign(decision=decisions)


__all__ = [
    "CAMPAIGN_PATH",
    "CONTENT_DIR",
    "CONTROL_ARM",
    "CUSTOMERS_CSV",
    "DATA_DIR",
    "PROMPTS_DIR",
    "SEGMENTS_PATH",
    "campaign",
    "catalog",
    "corpus",
    "customer_segments",
    "prompt_library",
    "requests",
    "retrieved",
    "measured_customers",
    "variants_frame",
    "verdicts_frame",
]
