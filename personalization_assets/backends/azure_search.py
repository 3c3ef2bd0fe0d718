"""Retrieval from Azure AI Search through `azure-search-documents`.

- `ensure_index`: create or update the index (the document id as key; title, content and
  keywords searchable, so BM25 ranks them as the embedded backend does; `audience` filterable).
- `sync_corpus`: upload every approved document (the `upload` action replaces a document
  whole, so uploading twice leaves the same index), delete documents that are no longer in the
  corpus (a withdrawn document must not be retrievable), then wait until the index reports the
  expected count: Azure indexes asynchronously, and a search right after an upload can miss
  documents for a second or so.
- `search`: full-text search with the audience as an OData filter and `top` = k.

Every call goes through `retry.call_with_retry`; the SDK's own retry policy is off
(`retry_total=0`) because azure-core does not retry a POST 429 without `Retry-After`.
Key credentials (`AzureKeyCredential`) work over plain http, so tests point the real clients at
a loopback double.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pandas as pd
from azure.core.credentials import AzureKeyCredential
from azure.search.documents import SearchClient
from azure.search.documents.indexes import SearchIndexClient
from azure.search.documents.indexes.models import (
    SearchableField,
    SearchFieldDataType,
    SearchIndex,
    SimpleField,
)

from personalization_assets.backends.azure_errors import classify_azure_error
from personalization_assets.backends.retry import (
    Failure,
    RetryPolicy,
    ServiceStats,
    call_with_retry,
)
from personalization_assets.content.retrieval import SearchHit

T = TypeVar("T")
AZURE_SEARCH_BACKEND = "azure-search"
KEY_FIELD = "document_id"
# Per-document indexing statuses worth sending again (as the SDK's buffered sender does).
RETRYABLE_INDEXING_STATUS = frozenset({409, 422, 429, 503})
BATCH_SIZE = 500  # documents per indexing request (Azure allows 1,000 or 16 MB)
_QUERY_SYNTAX = re.compile(r"[^\w\s]+")


class IndexingIncomplete(RuntimeError):
    """Some documents of an upload batch failed with a status worth retrying."""


def classify_search_error(exc: BaseException) -> Failure | None:
    if isinstance(exc, IndexingIncomplete):
        return Failure(True, "indexing")
    return classify_azure_error(exc)


def index_definition(name: str) -> SearchIndex:
    return SearchIndex(
        name=name,
        fields=[
            SimpleField(name=KEY_FIELD, type=SearchFieldDataType.String, key=True, filterable=True),
            SearchableField(name="title"),
            SearchableField(name="content"),
            SearchableField(name="keywords", collection=True),
            SimpleField(name="audience", type=SearchFieldDataType.String, filterable=True, facetable=True),
            SimpleField(name="category", type=SearchFieldDataType.String, filterable=True, facetable=True),
            SimpleField(name="source_url", type=SearchFieldDataType.String),
            SimpleField(name="approval_date", type=SearchFieldDataType.String, filterable=True, sortable=True),
        ],
    )


def corpus_documents(corpus: pd.DataFrame) -> list[dict[str, Any]]:
    """The corpus as index documents (keywords as a collection, as the index defines them)."""
    return [
        {
            KEY_FIELD: str(row.document_id),
            "title": str(row.title),
            "content": str(row.content),
            "keywords": [k for k in str(row.keywords).split(",") if k],
            "audience": str(row.audience),
            "category": str(row.category),
            "source_url": str(row.source_url),
            "approval_date": str(row.approval_date),
        }
        for row in corpus.itertuples(index=False)
    ]


def audience_filter(audiences: Sequence[str]) -> str:
    """An OData filter allowing these audiences; `|` delimits, since audiences contain spaces."""
    values = [a for a in dict.fromkeys(str(a) for a in audiences)]
    if any("|" in value for value in values):
        return " or ".join(f"audience eq '{value.replace(chr(39), chr(39) * 2)}'" for value in values)
    joined = "|".join(value.replace("'", "''") for value in values)
    return f"search.in(audience, '{joined}', '|')"


def query_text(query: str) -> str:
    """Plain words: punctuation is query syntax in Azure's simple parser (`-` negates, `"` quotes)."""
    return " ".join(_QUERY_SYNTAX.sub(" ", query).split())


class AzureSearchBackend:
    """An index on one Azure AI Search service, kept equal to the approved corpus."""

    def __init__(
        self,
        *,
        endpoint: str,
        api_key: str,
        index_name: str,
        policy: RetryPolicy,
        stats: ServiceStats,
        timeout: float = 60.0,
        index_wait_seconds: float = 30.0,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        credential = AzureKeyCredential(api_key)
        options = {"retry_total": 0, "connection_timeout": min(timeout, 10.0), "read_timeout": timeout}
        self.index_name = index_name
        self.index_client = SearchIndexClient(endpoint, credential, **options)
        self.client = SearchClient(endpoint, index_name, credential, **options)
        self.policy = policy
        self.stats = stats
        self.index_wait_seconds = index_wait_seconds
        self.sleep = sleep

    def _retry(self, operation: Callable[[], T], what: str) -> T:
        return call_with_retry(operation, policy=self.policy, classify=classify_search_error, stats=self.stats,
                               what=f"Azure AI Search {what}", sleep=self.sleep)

    def ensure_index(self) -> None:
        self._retry(lambda: self.index_client.create_or_update_index(index_definition(self.index_name)), "create/update index")

    def _index_batch(self, actions: list[dict[str, Any]], upload: bool) -> int:
        """Upload or delete documents; documents that failed retryably are sent again."""
        pending: list[dict[str, Any]] = []
        key_of = {a[KEY_FIELD]: a for a in actions}

        def send() -> None:
            nonlocal pending
            results = (self.client.upload_documents if upload else self.client.delete_documents)(pending)
            retry, failed = [], []
            for result in results:
                if result.succeeded or (not upload and result.status_code == 404):
                    continue
                (retry if result.status_code in RETRYABLE_INDEXING_STATUS else failed).append(result)
            if failed:
                details = ", ".join(f"{r.key} ({r.status_code}: {r.error_message})" for r in failed)
                raise RuntimeError(f"Azure AI Search rejected documents: {details}")
            if retry:
                pending = [key_of[r.key] for r in retry]
                raise IndexingIncomplete(f"{len(retry)} documents to send again")

        for start in range(0, len(actions), BATCH_SIZE):
            pending = actions[start : start + BATCH_SIZE]
            self._retry(send, "upload" if upload else "delete")
        return len(actions)

    def _indexed_keys(self) -> set[str]:
        return self._retry(lambda: {str(d[KEY_FIELD]) for d in self.client.search(search_text="*", select=[KEY_FIELD])},
                           "list documents")

    def _count(self) -> int:
        return int(self._retry(self.client.get_document_count, "count documents"))

    def sync_corpus(self, corpus: pd.DataFrame) -> dict[str, object]:
        """Make the index hold exactly the corpus; returns what was done."""
        self.ensure_index()
        documents = corpus_documents(corpus)
        wanted = {d[KEY_FIELD] for d in documents}
        uploaded = self._index_batch(documents, upload=True)
        stale = sorted(self._indexed_keys() - wanted)
        deleted = self._index_batch([{KEY_FIELD: key} for key in stale], upload=False)
        deadline = time.monotonic() + self.index_wait_seconds
        count = self._count()
        while count != len(wanted) and time.monotonic() < deadline:
            self.sleep(0.5)
            count = self._count()
        if count != len(wanted):
            raise RuntimeError(
                f"Azure AI Search index '{self.index_name}' reports {count} documents after {self.index_wait_seconds:g} s, "
                f"expected {len(wanted)}"
            )
        return {"index": self.index_name, "documents": count, "uploaded": uploaded, "deleted_stale": deleted}

    def search(self, query: str, audiences: Sequence[str], top_k: int) -> list[SearchHit]:
        text = query_text(query) or "*"
        results = self._retry(
            lambda: list(self.client.search(search_text=text, filter=audience_filter(audiences), top=top_k,
                                            select=[KEY_FIELD])),
            "search",
        )
        return [
            SearchHit(str(document[KEY_FIELD]), round(float(document.get("@search.score") or 0.0), 6), rank)
            for rank, document in enumerate(results[:top_k], 1)
        ]
