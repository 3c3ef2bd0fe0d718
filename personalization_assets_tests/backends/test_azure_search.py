"""Retrieval through `azure-search-documents` against the loopback double."""

import pytest

from personalization_assets.backends.azure_search import audience_filter, query_text
from personalization_assets.backends.local_search import BM25Index
from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.content.corpus import load_corpus
from personalization_assets.defs.resources import AzureAISearch
from personalization_assets_tests.backends.conftest import SEARCH_INDEX, SEARCH_KEY

CORPUS = load_corpus(PROJECT_ROOT / "data" / "content")
QUERY = "Loyal frequent buyers. Customers who buy often and open most emails. Bring customers back for the spring season."


def search_resource(double, **options) -> AzureAISearch:
    return AzureAISearch(endpoint=double.url, api_key=SEARCH_KEY, index_name=SEARCH_INDEX, max_backoff_seconds=0.01, **options)


def test_index_created_with_a_filterable_audience_and_the_corpus_uploaded(azure_double):
    search = search_resource(azure_double)
    info = search.index_corpus(CORPUS)
    assert info == {"index": SEARCH_INDEX, "documents": len(CORPUS), "uploaded": len(CORPUS), "deleted_stale": 0}

    [put] = azure_double.recorded("search", "index_put")
    assert put.method == "PUT" and put.path == f"/indexes('{SEARCH_INDEX}')"
    assert put.query["api-version"] == ["2026-04-01"] and put.headers["api-key"] == SEARCH_KEY
    fields = {f["name"]: f for f in put.json()["fields"]}
    assert fields["document_id"]["key"] and fields["audience"]["filterable"]
    assert all(fields[name]["searchable"] for name in ("title", "content", "keywords"))
    [upload] = azure_double.recorded("search", "index_documents")
    assert upload.path == f"/indexes('{SEARCH_INDEX}')/docs/search.index"
    assert {a["@search.action"] for a in upload.json()["value"]} == {"upload"}
    stored = azure_double.indexes[SEARCH_INDEX].documents
    assert set(stored) == set(CORPUS["document_id"])
    assert stored["DOC-001"]["keywords"] == CORPUS.set_index("document_id").loc["DOC-001", "keywords"].split(",")


def test_upload_is_idempotent_and_withdrawn_documents_are_removed(azure_double):
    search_resource(azure_double).index_corpus(CORPUS)
    before = {k: dict(v) for k, v in azure_double.indexes[SEARCH_INDEX].documents.items()}
    search_resource(azure_double).index_corpus(CORPUS)  # a second run: same index, nothing duplicated
    assert azure_double.indexes[SEARCH_INDEX].documents == before

    withdrawn = CORPUS[CORPUS["document_id"] != "DOC-002"]
    info = search_resource(azure_double).index_corpus(withdrawn)
    assert info["deleted_stale"] == 1 and info["documents"] == len(CORPUS) - 1
    assert "DOC-002" not in azure_double.indexes[SEARCH_INDEX].documents


def test_search_sends_the_audience_filter_and_top_k_and_ranks_like_bm25(azure_double):
    search = search_resource(azure_double)
    search.index_corpus(CORPUS)
    audiences = ["All", "High-Value", "New Customer"]
    hits = search.search(CORPUS, QUERY, audiences, 3)

    query = azure_double.recorded("search", "search")[-1]
    assert query.path == f"/indexes('{SEARCH_INDEX}')/docs/search.post.search"  # the POST search path
    body = query.json()
    assert body["filter"] == "search.in(audience, 'All|High-Value|New Customer', '|')"
    assert body["top"] == 3 and body["search"] == query_text(QUERY) and "." not in body["search"]
    assert [h.rank for h in hits] == [1, 2, 3]
    allowed = set(CORPUS.loc[CORPUS["audience"].isin(audiences), "document_id"])
    assert {h.document_id for h in hits} <= allowed
    local = BM25Index(CORPUS).search(query_text(QUERY), audiences, 3)
    assert [h.document_id for h in hits] == [h.document_id for h in local]  # Azure ranks with BM25 too


def test_hits_outside_this_runs_corpus_are_dropped(azure_double):
    search = search_resource(azure_double)
    search.index_corpus(CORPUS)
    smaller = CORPUS[CORPUS["document_id"] != "DOC-001"]
    azure_double.indexes[SEARCH_INDEX].documents["DOC-001"]["audience"] = "All"  # still in the index
    hits = search.search(smaller, "Ridgeline tent backpacking", ["All"], 3)
    assert "DOC-001" not in [h.document_id for h in hits] and [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_a_post_429_without_retry_after_is_retried_by_the_project(azure_double):
    """azure-core does not retry a 429 on a POST without Retry-After; the project must."""
    search = search_resource(azure_double)
    search.index_corpus(CORPUS)
    azure_double.inject("429", service="search", match="search.post.search", times=2)
    azure_double.inject("503", service="search", match="search.post.search", times=1, retry_after=0)
    before = search.service_stats()
    hits = search.search(CORPUS, QUERY, ["All"], 3)
    assert len(hits) == 3
    searches = [r for r in azure_double.recorded("search", "search") if r.json()["search"] != "*"]  # not the sync's listing
    assert [r.status for r in searches] == [429, 429, 503, 200]
    after = search.service_stats()
    assert after["retries"] - before.get("retries", 0) == 3 and after["retries_429"] == 2 and after["retries_503"] == 1
    assert after["requests"] - before["requests"] == 4  # the SDK retried nothing on its own


def test_uploads_retry_malformed_answers_and_dropped_connections(azure_double):
    azure_double.inject("malformed", service="search", match="search.index", times=1)
    azure_double.inject("drop", service="search", match="index_put", times=1)
    info = search_resource(azure_double).index_corpus(CORPUS)
    assert info["documents"] == len(CORPUS)
    assert [r.fault for r in azure_double.recorded("search", "index_put")] == ["drop", None]


def test_a_search_service_that_stays_down_fails_the_step_clearly(azure_double):
    azure_double.inject("503", service="search")
    with pytest.raises(Exception, match="Azure AI Search create/update index: gave up after 2 attempts, last failure 503"):
        search_resource(azure_double, max_attempts=2).index_corpus(CORPUS)


def test_audience_filter_escapes_quotes():
    assert audience_filter(["All", "Kids' Club"]) == "search.in(audience, 'All|Kids'' Club', '|')"
    assert audience_filter(["A|B", "C"]) == "audience eq 'A|B' or audience eq 'C'"
