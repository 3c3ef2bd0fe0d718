"""Tests of the synthetic customers and the packaged content corpus.

The sample data feeds every offline run, so these tests pin what the rest of the pipeline relies
on: the customer contract of DESIGN section 5, the correlations the segments and the experiment
need, and a corpus that passes the compliance screen it will be quoted under.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from personalization_assets.campaign.paths import PROJECT_ROOT
from personalization_assets.campaign.sample_data import (
    CUSTOMER_COLUMNS,
    SAMPLE_DIR,
    generate_customers,
    write_sample_data,
)

N = 20000
CONTENT_DIR = SAMPLE_DIR / "content"

DOCUMENT_KEYS = {
    "document_id", "title", "category", "content", "audience", "keywords", "approval_date",
    "source_url", "metadata",
}
CATEGORIES = {"product", "promotion", "support", "onboarding", "win-back", "loyalty"}
AUDIENCES = {"All", "High-Value", "Standard", "New Customer", "At-Risk", "Loyalty"}

# Matched anywhere in the text, case-insensitively (stricter than a word match).
BANNED_PHRASES = [
    "miracle", "cure", "risk-free", "no risk", "guaranteed results", "lifetime guarantee",
    "southpaw gear", "fjellhaus", "trailking",
]
# Violent words as whole words or word stems ("die" must not match "audience").
BANNED_WORDS = re.compile(r"\b(kill\w*|shoot\w*|attack\w*|die|dies|died|dying)\b", re.IGNORECASE)
FALSE_URGENCY = re.compile(r"only \d+ left|expires in \d+|last chance|act now|hurry", re.IGNORECASE)
PLACEHOLDER = re.compile(r"[\[\]{}<>]|lorem ipsum|\bTBD\b|\bXX+\b")


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    return generate_customers(N)


@pytest.fixture(scope="module")
def documents() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(CONTENT_DIR.glob("*.json"))}


def _text(document: dict) -> str:
    return " ".join([document["title"], document["content"], *document["keywords"]])


# --- customers ---------------------------------------------------------------------------------

def test_same_seed_gives_identical_frames():
    pd.testing.assert_frame_equal(generate_customers(500, seed=7), generate_customers(500, seed=7))


def test_different_seeds_differ():
    first, second = generate_customers(500, seed=7), generate_customers(500, seed=8)
    assert not first.equals(second)
    assert (first["avg_order_value"] != second["avg_order_value"]).mean() > 0.9


def test_schema_and_dtypes(customers):
    assert list(customers.columns) == CUSTOMER_COLUMNS
    assert len(customers) == N
    for column in ["customer_id", "first_name", "email", "location", "tier"]:
        assert pd.api.types.is_object_dtype(customers[column]), column
    for column in ["age", "purchase_frequency", "last_engagement_days"]:
        assert customers[column].dtype == np.int64, column
    for column in ["avg_order_value", "historical_open_rate", "historical_click_rate"]:
        assert customers[column].dtype == np.float64, column
    assert not customers.isna().any().any()


def test_identifiers_are_unique_and_well_formed(customers):
    assert customers["customer_id"].is_unique
    assert customers["email"].is_unique
    assert customers["customer_id"].str.fullmatch(r"C\d{7,}").all()
    assert customers["email"].str.fullmatch(r"[a-z]+\.c\d{7,}@example\.com").all()
    assert customers.loc[0, "customer_id"] == "C0000001"
    local_part = customers["email"].str.removesuffix("@example.com").str.split(".", expand=True)
    assert (local_part[0] == customers["first_name"].str.lower().str.replace("-", "")).all()
    assert (local_part[1] == customers["customer_id"].str.lower()).all()


def test_value_ranges(customers):
    assert customers["age"].between(18, 85).all()
    assert customers["tier"].isin(["Gold", "Silver", "Bronze"]).all()
    assert (customers["purchase_frequency"] >= 0).all()
    assert (customers["avg_order_value"] >= 0).all()
    assert customers["avg_order_value"].between(10, 500).all()
    assert (customers["avg_order_value"].round(2) == customers["avg_order_value"]).all()
    assert (customers["last_engagement_days"] >= 0).all()
    for column in ["historical_open_rate", "historical_click_rate"]:
        assert customers[column].between(0, 1).all(), column
        assert (customers[column].round(4) == customers[column]).all(), column
    assert (customers["historical_click_rate"] <= customers["historical_open_rate"]).all()
    assert customers["location"].nunique() >= 15


def test_distributions_are_realistic(customers):
    tier_share = customers["tier"].value_counts(normalize=True)
    assert tier_share["Gold"] == pytest.approx(0.15, abs=0.03)
    assert tier_share["Silver"] == pytest.approx(0.35, abs=0.05)
    assert tier_share["Bronze"] == pytest.approx(0.50, abs=0.05)
    frequency = customers["purchase_frequency"]
    assert frequency.between(0, 3).mean() > 0.4  # many occasional buyers
    assert frequency.between(10, 30).mean() > 0.05  # and a tail of regulars
    assert (customers["last_engagement_days"] > 120).mean() > 0.06  # a real at-risk tail
    assert customers["avg_order_value"].median() == pytest.approx(65, abs=20)
    assert customers["historical_open_rate"].median() == pytest.approx(0.25, abs=0.1)
    assert customers["historical_click_rate"].median() == pytest.approx(0.04, abs=0.03)


def test_engagement_correlates_with_value_and_recency(customers):
    spend_vs_open = spearmanr(customers["avg_order_value"], customers["historical_open_rate"])[0]
    recency_vs_open = spearmanr(
        customers["last_engagement_days"], customers["historical_open_rate"]
    )[0]
    frequency_vs_open = spearmanr(
        customers["purchase_frequency"], customers["historical_open_rate"]
    )[0]
    assert spend_vs_open > 0.15
    assert recency_vs_open < -0.1
    assert frequency_vs_open > 0.15
    assert spearmanr(customers["age"], customers["avg_order_value"])[0] > 0.02


def test_tiers_overlap_but_follow_value(customers):
    spend = customers.groupby("tier")["avg_order_value"]
    assert spend.max()["Bronze"] > spend.median()["Gold"]
    assert spend.median()["Gold"] > spend.median()["Silver"] > spend.median()["Bronze"]


# --- content corpus ----------------------------------------------------------------------------

def test_corpus_size_and_keys(documents):
    assert len(documents) >= 32
    for stem, document in documents.items():
        assert set(document) == DOCUMENT_KEYS, stem
        assert document["document_id"] == stem
        assert re.fullmatch(r"DOC-\d{3}", stem)


def test_documents_are_well_formed(documents):
    for stem, document in documents.items():
        assert document["category"] in CATEGORIES, stem
        assert document["audience"] in AUDIENCES, stem
        assert 60 <= len(document["content"].split()) <= 160, stem
        assert 3 <= len(document["keywords"]) <= 8, stem
        assert all(keyword == keyword.lower() for keyword in document["keywords"]), stem
        approval = pd.Timestamp(document["approval_date"])
        assert pd.Timestamp("2026-01-01") <= approval < pd.Timestamp("2026-11-01"), stem
        assert document["source_url"].startswith("https://northwind-outfitters.example/"), stem
        assert isinstance(document["metadata"], dict) and document["metadata"], stem


def test_source_urls_and_contents_are_unique(documents):
    urls = [document["source_url"] for document in documents.values()]
    contents = [document["content"] for document in documents.values()]
    assert len(set(urls)) == len(urls)
    assert len(set(contents)) == len(contents)


def test_every_category_and_audience_is_covered(documents):
    categories = pd.Series([document["category"] for document in documents.values()])
    audiences = pd.Series([document["audience"] for document in documents.values()])
    assert set(categories) == CATEGORIES
    assert set(audiences) == AUDIENCES
    assert categories.value_counts().min() >= 4
    assert audiences.value_counts().min() >= 4
    assert audiences.value_counts()["All"] >= 6


def test_no_banned_or_noncompliant_language(documents):
    for stem, document in documents.items():
        text = _text(document)
        lowered = text.lower()
        assert not [phrase for phrase in BANNED_PHRASES if phrase in lowered], stem
        assert not BANNED_WORDS.search(text), stem
        assert not FALSE_URGENCY.search(text), stem
        assert not PLACEHOLDER.search(text), stem
        assert "http" not in document["content"], stem  # only source_url may carry a link


# --- write_sample_data -------------------------------------------------------------------------

def test_write_sample_data_writes_a_complete_folder(tmp_path):
    out_dir = tmp_path / "data"
    written = write_sample_data(out_dir, n_customers=300, seed=11, copy_prompts=False)

    assert written["customers"] == out_dir / "customers.csv"
    loaded = pd.read_csv(written["customers"], dtype={"customer_id": str})
    pd.testing.assert_frame_equal(loaded, generate_customers(300, seed=11))

    for name in ("segments", "campaign"):
        assert written[name].read_bytes() == (SAMPLE_DIR / f"{name}.yaml").read_bytes()

    packaged = sorted(path.name for path in CONTENT_DIR.glob("*.json"))
    copied = sorted(path.name for path in (out_dir / "content").glob("*.json"))
    assert copied == packaged
    assert all(path.exists() for path in written.values())
    assert len(written) == len(packaged) + 4
    suppression = pd.read_csv(written["suppression"], dtype=str, keep_default_na=False)
    assert len(suppression) == round(300 * 0.015) and set(suppression["reason"]) <= {"unsubscribed", "bounced", "complained"}
    listed = (suppression["customer_id"] != "") ^ (suppression["email"] != "")  # each entry by id or by address
    assert listed.all() and set(suppression["customer_id"]) - {""} <= set(loaded["customer_id"])


def test_the_committed_data_folder_is_the_packaged_sample_generated(tmp_path):
    """One source: `personalization_assets/campaign/sample/` (shipped in the wheel). `data/` is what
    `cpo generate-data --out data` writes from it; any edit of one without the other fails here."""
    written = write_sample_data(tmp_path / "data", copy_prompts=False)  # as inside the project
    committed = PROJECT_ROOT / "data"
    generated_names = sorted(p.relative_to(tmp_path / "data").as_posix() for p in written.values())
    committed_names = sorted(p.relative_to(committed).as_posix() for p in committed.rglob("*") if p.is_file())
    assert committed_names == generated_names
    for name in generated_names:
        assert (committed / name).read_bytes() == (tmp_path / "data" / name).read_bytes(), name


def test_a_folder_written_anywhere_is_self_contained_with_its_company_and_goal(tmp_path, monkeypatch):
    from personalization_assets.campaign.config import load_campaign
    from personalization_assets.campaign.sample_data import PROMPTS_DIR

    out = tmp_path / "deep" / "inside" / "campaign"
    write_sample_data(out, n_customers=50, company="Acme Bikes", goal="Sell more bikes in autumn.")
    monkeypatch.chdir(tmp_path)  # any working directory
    config = load_campaign(out / "campaign.yaml")
    assert config.paths.prompts == (out / "prompts").resolve()
    assert sorted(p.relative_to(out / "prompts") for p in (out / "prompts").rglob("*.md")) == \
        sorted(p.relative_to(PROMPTS_DIR) for p in PROMPTS_DIR.rglob("*.md"))
    assert config.company.name == "Acme Bikes" and config.goal == "Sell more bikes in autumn."
    text = (out / "campaign.yaml").read_text()
    assert "# Campaign configuration" in text and "Northwind" not in text  # comments kept, the sample's name gone
