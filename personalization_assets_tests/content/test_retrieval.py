"""The approved content corpus contract and BM25 retrieval with the audience filter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from personalization_assets.backends.local_search import BM25Index, tokenize
from personalization_assets.campaign.errors import DataContractError
from personalization_assets.content.corpus import CORPUS_COLUMNS, load_corpus
from personalization_assets.content.retrieval import (
    PURPOSE_CONTROL,
    PURPOSE_SEGMENT,
    RETRIEVED_COLUMNS,
    retrieval_purpose,
    retrieve_for_segments,
    segment_query,
)
from personalization_assets_tests.pure_fixtures import (
    CONTENT_DIR,
    campaign,
    catalog,
    corpus,
    retrieved,
)


def document(document_id: str = "DOC-900", **changes) -> dict:
    doc = {
        "document_id": document_id,
        "title": "Trail shoes",
        "category": "product",
        "content": "Light trail shoes with a grippy sole.",
        "audience": "All",
        "keywords": ["shoes", "trail"],
        "approval_date": "2026-01-12",
        "source_url": f"https://example.com/{document_id.lower()}",
        "metadata": {"owner": "Product Marketing"},
    }
    doc.update(changes)
    return doc


def write_docs(folder: Path, docs: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, doc in docs.items():
        (folder / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return folder


def corpus_error(folder: Path) -> DataContractError:
    with pytest.raises(DataContractError) as info:
        load_corpus(folder)
    return info.value


# --- corpus contract ---------------------------------------------------------------------------------


def test_committed_corpus_loads():
    frame = load_corpus(CONTENT_DIR)
    assert len(frame) >= 30
    assert frame["document_id"].is_unique
    assert list(frame.columns) == list(CORPUS_COLUMNS)
    assert list(frame["document_id"]) == sorted(frame["document_id"])
    assert frame["source_url"].str.startswith("https://").all()
    assert (frame["content"].str.len() > 0).all()
    assert {"All", "Standard"} <= set(frame["audience"])
    # Keywords are stored flat, lowercased; metadata as JSON text.
    assert frame["keywords"].map(lambda k: k == k.lower()).all()
    assert all(isinstance(json.loads(m), dict) for m in frame["metadata_json"])


def test_small_valid_corpus(tmp_path):
    folder = write_docs(tmp_path / "content", {"b.json": document("DOC-2", keywords=[" Tent ", "CAMP"]),
                                               "a.json": document("DOC-1", title="  Padded  ")})
    frame = load_corpus(folder)
    assert list(frame["document_id"]) == ["DOC-1", "DOC-2"]
    assert frame.loc[0, "title"] == "Padded"
    assert frame.loc[1, "keywords"] == "tent,camp"
    assert list(frame["source_file"]) == ["a.json", "b.json"]


@pytest.mark.parametrize("missing", ["document_id", "content", "audience", "source_url", "metadata", "keywords"])
def test_document_missing_a_field(tmp_path, missing):
    doc = document()
    del doc[missing]
    folder = write_docs(tmp_path / "content", {"ok.json": document("DOC-1"), "broken.json": doc})
    error = corpus_error(folder)
    assert str(folder / "broken.json") in str(error)
    assert error.column == missing
    assert "required field missing" in str(error)


def test_document_with_bad_json(tmp_path):
    folder = write_docs(tmp_path / "content", {"bad.json": '{"document_id": "DOC-1", '})
    error = corpus_error(folder)
    assert str(folder / "bad.json") in str(error)
    assert "valid JSON" in str(error)


def test_document_that_is_not_an_object(tmp_path):
    folder = write_docs(tmp_path / "content", {"list.json": "[1, 2]"})
    error = corpus_error(folder)
    assert str(folder / "list.json") in str(error) and "one JSON object" in str(error)


@pytest.mark.parametrize("url", ["http://example.com/x", "ftp://example.com/x", "example.com/x", "javascript:alert(1)"])
def test_document_with_a_non_https_url(tmp_path, url):
    folder = write_docs(tmp_path / "content", {"insecure.json": document(source_url=url)})
    error = corpus_error(folder)
    assert str(folder / "insecure.json") in str(error)
    assert error.column == "source_url"
    assert "https://" in error.rule
    assert url in str(error)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("content", "   ", "non-empty string"),
        ("title", 42, "non-empty string"),
        ("keywords", "tent, camp", "list of strings"),
        ("approval_date", "12/01/2026", "ISO 8601 date"),
    ],
)
def test_document_with_bad_field_values(tmp_path, field, value, rule):
    folder = write_docs(tmp_path / "content", {"bad.json": document(**{field: value})})
    error = corpus_error(folder)
    assert str(folder / "bad.json") in str(error)
    assert error.column == field and rule in error.rule


@pytest.mark.parametrize("value", ["2025-11-01T00:00:00Z", "2025-11-01T09:30:00+01:00", "2025-11-01T00:00:00", "2025-11-01"])
def test_iso_8601_dates_and_timestamps_are_accepted_and_stored_as_the_date(tmp_path, value):
    folder = write_docs(tmp_path / "content", {"ok.json": document(approval_date=value)})
    assert load_corpus(folder)["approval_date"].tolist() == ["2025-11-01"]


def test_every_failing_document_is_listed(tmp_path):
    folder = write_docs(tmp_path / "content", {"a.json": document("DOC-1", title=""), "b.json": "[1]",
                                               "c.json": document("DOC-3")})
    message = str(corpus_error(folder))
    assert "2 of 3 documents break their contract (a.json, b.json)" in message
    assert "title" in message and "one JSON object" in message and "c.json" not in message


def test_a_document_that_is_not_utf8_names_the_line(tmp_path):
    folder = tmp_path / "content"
    folder.mkdir()
    (folder / "latin.json").write_bytes(json.dumps(document(title="Jos\u00e9"), ensure_ascii=False).encode("latin-1"))
    message = str(corpus_error(folder))
    assert "latin.json" in message and "is not UTF-8" in message and "line 1" in message


def test_duplicate_document_ids(tmp_path):
    folder = write_docs(tmp_path / "content", {"first.json": document("DOC-7"), "second.json": document("DOC-7"),
                                               "other.json": document("DOC-8")})
    error = corpus_error(folder)
    message = str(error)
    assert str(folder) in message
    assert error.column == "document_id" and "unique" in error.rule
    assert "first.json" in message and "second.json" in message and "DOC-7" in message
    assert "other.json" not in message


def test_empty_content_folder(tmp_path):
    folder = tmp_path / "content"
    folder.mkdir()
    error = corpus_error(folder)
    assert str(folder) in str(error) and "*.json" in str(error)


# --- BM25 --------------------------------------------------------------------------------------------


def frame_of(docs: list[tuple[str, str, str]]) -> pd.DataFrame:
    """(document_id, audience, content) rows with empty title and keywords, so content is the only text."""
    return pd.DataFrame(
        [{"document_id": d, "title": "", "keywords": "", "content": c, "audience": a, "source_url": f"https://x/{d}"}
         for d, a, c in docs]
    )


def test_tokenize_drops_stopwords_and_single_characters():
    assert tokenize("The Tent, a STOVE & our 2 x-ray boots!") == ["tent", "stove", "ray", "boots"]


def test_bm25_scores_match_a_hand_computation():
    index = BM25Index(frame_of([
        ("D1", "All", "tent tent stove"),
        ("D2", "All", "tent boots"),
        ("D3", "All", "boots jacket jacket rain"),
    ]))
    # N = 3, average length 3; k1 = 1.2, b = 0.75; idf = ln(1 + (N - df + 0.5) / (df + 0.5)).
    idf_tent = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    idf_jacket = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))

    def term(tf, length, idf):
        return idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * length / 3))

    expected = [term(2, 3, idf_tent), term(1, 2, idf_tent), term(2, 4, idf_jacket)]
    assert list(index.scores("tent jacket")) == pytest.approx(expected, rel=1e-12)
    # Repeating a query term does not count it twice; unknown and stop words add nothing.
    assert list(index.scores("tent TENT jacket the kayak")) == pytest.approx(expected, rel=1e-12)
    hits = index.search("tent jacket", ["All"], top_k=3)
    assert [h.document_id for h in hits] == ["D3", "D1", "D2"]  # 1.233 > 0.646 > 0.544
    assert [h.rank for h in hits] == [1, 2, 3]
    by_id = dict(zip(["D1", "D2", "D3"], expected))
    assert [h.score for h in hits] == pytest.approx([by_id[h.document_id] for h in hits], abs=1e-6)
    assert [h.document_id for h in hits] == sorted(by_id, key=lambda d: -by_id[d])


def test_ranking_prefers_documents_with_the_query_terms():
    index = BM25Index(frame_of([
        ("A", "All", "sleeping bag for cold nights"),
        ("B", "All", "rain jacket for wet spring hikes"),
        ("C", "All", "kayak paddles and kayak spray skirts for the river"),
        ("D", "All", "camp stove and kayak fuel"),
    ]))
    hits = index.search("kayak", ["All"], top_k=4)
    assert [h.document_id for h in hits[:2]] == ["C", "D"]  # two mentions beat one
    assert all(h.score > 0 for h in hits[:2]) and all(h.score == 0 for h in hits[2:])
    assert index.search("rain jacket", ["All"], top_k=1)[0].document_id == "B"


def test_audience_filter_is_honoured_even_against_the_best_match():
    index = BM25Index(frame_of([
        ("A", "High-Value", "kayak kayak kayak"),
        ("B", "All", "kayak"),
        ("C", "Standard", "tent"),
        ("D", "At-Risk", "kayak tent"),
    ]))
    hits = index.search("kayak", ["All", "Standard"], top_k=10)
    assert [h.document_id for h in hits] == ["B", "C"]
    assert index.search("kayak", ["Nobody"], top_k=10) == []
    assert [h.document_id for h in index.search("kayak", ["High-Value"], top_k=10)] == ["A"]


def test_audience_filter_on_the_committed_corpus():
    documents = corpus()
    audience_of = dict(zip(documents["document_id"], documents["audience"]))
    index = BM25Index(documents)
    for s in catalog().segments:
        hits = index.search(segment_query(s.name, s.description, campaign().goal), s.audiences, top_k=50)
        assert hits, s.segment_id
        assert {audience_of[h.document_id] for h in hits} <= set(s.audiences), s.segment_id
        assert len(hits) == sum(a in s.audiences for a in documents["audience"])


def test_ties_are_broken_by_document_id():
    index = BM25Index(frame_of([
        ("DOC-3", "All", "tent stove"),
        ("DOC-1", "All", "tent stove"),
        ("DOC-2", "All", "tent stove"),
        ("DOC-0", "All", "boots jacket"),
    ]))
    assert [h.document_id for h in index.search("tent", ["All"], top_k=4)] == ["DOC-1", "DOC-2", "DOC-3", "DOC-0"]
    # Zero scores tie too: the order is still by id, and it is the same on every call.
    assert [h.document_id for h in index.search("kayak", ["All"], top_k=4)] == ["DOC-0", "DOC-1", "DOC-2", "DOC-3"]
    shuffled = BM25Index(frame_of([
        ("DOC-2", "All", "tent stove"), ("DOC-0", "All", "boots jacket"),
        ("DOC-3", "All", "tent stove"), ("DOC-1", "All", "tent stove"),
    ]))
    assert shuffled.search("tent", ["All"], top_k=4) == index.search("tent", ["All"], top_k=4)


@pytest.mark.parametrize("top_k", [0, 1, 3, 7, 100])
def test_top_k_is_respected(top_k):
    documents = corpus()
    index = BM25Index(documents)
    hits = index.search("tent camping gear", ["All", "Standard"], top_k=top_k)
    allowed = int(documents["audience"].isin(["All", "Standard"]).sum())
    assert len(hits) == min(top_k, allowed)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_retrieval_is_deterministic():
    documents = corpus()
    first = BM25Index(documents).search(campaign().goal, ["All"], top_k=5)
    again = BM25Index(documents.sample(frac=1.0, random_state=1)).search(campaign().goal, ["All"], top_k=5)
    assert first == again


# --- retrieve_for_segments ---------------------------------------------------------------------------


def test_retrieve_for_segments_returns_segment_and_control_rows():
    frame = retrieved()
    config, segment_catalog, documents = campaign(), catalog(), corpus()
    assert list(frame.columns) == list(RETRIEVED_COLUMNS)
    assert set(frame["segment"]) == set(segment_catalog.ids)
    audience_of = dict(zip(documents["document_id"], documents["audience"]))
    for s in segment_catalog.segments:
        rows = frame[frame["segment"] == s.segment_id]
        assert set(rows["purpose"]) == {PURPOSE_SEGMENT, PURPOSE_CONTROL}
        for purpose, allowed in ((PURPOSE_SEGMENT, set(s.audiences)), (PURPOSE_CONTROL, {"All"})):
            part = rows[rows["purpose"] == purpose]
            assert list(part["rank"]) == list(range(1, config.retrieval.top_k + 1))
            assert set(part["audience"]) <= allowed
            assert part["audience"].tolist() == [audience_of[d] for d in part["document_id"]]
    # The control retrieval is the same generic query everywhere.
    control = frame[frame["purpose"] == PURPOSE_CONTROL]
    assert control.groupby("segment")["document_id"].apply(tuple).nunique() == 1
    assert set(control["query"]) == {config.goal}


def test_retrieve_for_segments_copies_document_details():
    documents = frame_of([("A", "All", "kayak"), ("B", "Standard", "kayak kayak")])
    documents["title"] = ["Kayak A", "Kayak B"]
    index = BM25Index(documents)
    frame = retrieve_for_segments(
        lambda q, a: index.search(q, a, 5), documents, [("paddlers", "kayak", ["Standard"])], control_query="kayak"
    )
    assert frame[["purpose", "document_id", "title", "audience", "source_url"]].values.tolist() == [
        ["segment", "B", "Kayak B", "Standard", "https://x/B"],
        ["control", "A", "Kayak A", "All", "https://x/A"],
    ]
    assert set(frame["segment"]) == {"paddlers"}


def test_retrieval_purpose():
    assert retrieval_purpose("control") == PURPOSE_CONTROL
    assert retrieval_purpose("friendly") == PURPOSE_SEGMENT
