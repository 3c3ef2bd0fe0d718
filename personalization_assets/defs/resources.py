"""Service roles as Dagster resources: one abstract class per role, swappable implementations.

Assets depend on the abstract role (`generator`, `search`, `safety`), never on a backend, so the
embedded defaults and the Azure backends are interchangeable by configuration alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property

import dagster as dg
import pandas as pd

from personalization_assets.audit import AuditLog
from personalization_assets.config import CampaignConfig, load_campaign
from personalization_assets.generation import GeneratedVariant, VariantRequest, compose_local
from personalization_assets.prompts import PromptLibrary, load_prompts
from personalization_assets.retrieval import BM25Index, SearchHit
from personalization_assets.safety import classify_text, find_blocklist_hits
from personalization_assets.screening import TextAnalysis
from personalization_assets.segmentation import SegmentCatalog, load_catalog


class CampaignResource(dg.ConfigurableResource):
    """The campaign being run: its config file, segment catalog and prompt library."""

    campaign_path: str

    @cached_property
    def config(self) -> CampaignConfig:
        return load_campaign(self.campaign_path)

    @cached_property
    def catalog(self) -> SegmentCatalog:
        return load_catalog(self.config.segments_path)

    @cached_property
    def prompts(self) -> PromptLibrary:
        return load_prompts(self.config.prompts_dir, self.config.tones)


class AuditResource(dg.ConfigurableResource):
    """Where the append-only audit trail lives (default `$CPO_HOME/audit`)."""

    directory: str

    def log(self) -> AuditLog:
        return AuditLog(self.directory)


class GeneratorResource(dg.ConfigurableResource, ABC):
    """Writes message variants. Implementations must label output with backend and model."""

    @property
    def repairable(self) -> bool:
        """Whether asking again with the validation failures can give a different answer."""
        return True

    @abstractmethod
    def generate(self, requests: Sequence[VariantRequest]) -> list[GeneratedVariant]:
        """One result per request, in order; failures come back as refusals, not exceptions."""


class LocalTemplateGenerator(GeneratorResource):
    """The embedded, offline, deterministic template composer."""

    @property
    def repairable(self) -> bool:
        return False  # deterministic: the same request always composes the same email

    def generate(self, requests: Sequence[VariantRequest]) -> list[GeneratedVariant]:
        return [compose_local(request) for request in requests]


class SearchResource(dg.ConfigurableResource, ABC):
    """Indexes the approved corpus and retrieves documents for a query within allowed audiences."""

    @property
    @abstractmethod
    def backend(self) -> str: ...

    @abstractmethod
    def index_corpus(self, corpus: pd.DataFrame) -> dict[str, object]:
        """Make the corpus searchable; returns metadata about the index."""

    @abstractmethod
    def search(self, corpus: pd.DataFrame, query: str, audiences: Sequence[str], top_k: int) -> list[SearchHit]: ...


class LocalBM25Search(SearchResource):
    """Embedded BM25 over the corpus table, with the audience as a filter (as an OData filter would)."""

    @property
    def backend(self) -> str:
        return "local-bm25"

    def index_corpus(self, corpus: pd.DataFrame) -> dict[str, object]:
        index = BM25Index(corpus)
        return {"documents": len(corpus), "vocabulary": len(index.idf)}

    def search(self, corpus: pd.DataFrame, query: str, audiences: Sequence[str], top_k: int) -> list[SearchHit]:
        return BM25Index(corpus).search(query, audiences, top_k)


class SafetyResource(dg.ConfigurableResource, ABC):
    """Category severities and blocklist matches for texts, in Azure AI Content Safety's shape."""

    @property
    @abstractmethod
    def backend(self) -> str: ...

    @abstractmethod
    def analyze(self, texts: list[str], blocklists: dict[str, tuple[str, ...]]) -> list[TextAnalysis]: ...


class LocalSafety(SafetyResource):
    """The embedded category classifier and blocklist matcher."""

    @property
    def backend(self) -> str:
        return "local-safety"

    def analyze(self, texts: list[str], blocklists: dict[str, tuple[str, ...]]) -> list[TextAnalysis]:
        return [TextAnalysis(classify_text(text), tuple(find_blocklist_hits(text, blocklists))) for text in texts]
