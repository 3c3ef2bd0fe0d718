"""Explainability: segment profiles, the response model with treatment interactions, and the
k-means exploration explained by a shallow tree."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalization_assets.explain.models import (
    EXPLORATION_COLUMNS,
    MODEL_FEATURES,
    NUMERIC_FEATURES,
    explore_clusters,
    feature_frame,
    fit_response_model,
    response_sample,
    segment_profiles,
)
from personalization_assets_tests.pure_fixtures import catalog, customer_segments


def test_segment_profiles_are_the_segment_means_against_the_population():
    customers = customer_segments(3_000)
    profiles = segment_profiles(customers, catalog()).set_index("segment")
    assert list(profiles.index) == [*catalog().ids, "population"]
    assert profiles.loc["population", "customers"] == len(customers)
    assert profiles.loc[catalog().ids, "customers"].sum() == len(customers)
    means = customers.groupby("segment")[list(NUMERIC_FEATURES)].mean()
    for segment in catalog().ids:
        for feature in NUMERIC_FEATURES:
            assert np.isclose(profiles.loc[segment, feature], means.loc[segment, feature])
        gold = (customers.loc[customers["segment"] == segment, "tier"] == "Gold").mean()
        assert np.isclose(profiles.loc[segment, "gold_share"], gold)
    # VIP champions are Gold by rule: far above the population on the Gold share.
    assert profiles.loc["vip_champions", "gold_share"] == 1.0
    assert profiles.loc["vip_champions", "gold_share_std_diff"] > 1
    sd = customers["last_engagement_days"].std(ddof=0)
    expected = (means.loc["at_risk", "last_engagement_days"] - customers["last_engagement_days"].mean()) / sd
    assert np.isclose(profiles.loc["at_risk", "last_engagement_days_std_diff"], expected)


def _synthetic_response(n: int, seed: int) -> pd.DataFrame:
    """Known truth: open rate drives response; 'friendly' helps, and helps more the higher the
    days since last engagement; 'urgent' and 'informational' do nothing."""
    rng = np.random.default_rng(seed)
    customers = customer_segments(n, seed=seed).reset_index(drop=True)
    features = feature_frame(customers)
    z = (features - features.mean()) / features.std(ddof=0)
    arms = rng.choice(["control", "urgent", "informational", "friendly"], size=n)
    friendly = (arms == "friendly").astype(float)
    logit = -1.0 + 0.8 * z["historical_open_rate"] + 0.3 * friendly + 0.5 * friendly * z["last_engagement_days"]
    outcome = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.concat([pd.DataFrame({"customer_id": customers["customer_id"], "arm": arms, "opened": outcome}), features], axis=1)


def test_response_model_recovers_known_effects_and_interactions():
    sample = _synthetic_response(40_000, seed=5)
    model = fit_response_model(sample, "opened", control="control", arms=("control", "urgent", "informational", "friendly"))
    assert model.error is None and model.converged
    assert model.arms == ("urgent", "informational", "friendly")
    assert model.features == MODEL_FEATURES
    assert len(model.coefficients) == 1 + 3 + 7 + 3 * 7

    def covers(term, truth):
        return term["ci_low"] <= truth <= term["ci_high"]

    assert covers(model.term("feature", feature="historical_open_rate"), 0.8)
    assert model.term("feature", feature="historical_open_rate")["ci_low"] > 0.6
    assert covers(model.term("arm", arm="friendly"), 0.3)
    interaction = model.term("interaction", feature="last_engagement_days", arm="friendly")
    assert covers(interaction, 0.5) and interaction["ci_low"] > 0.3
    for arm in ("urgent", "informational"):
        assert covers(model.term("arm", arm=arm), 0.0)
        assert covers(model.term("interaction", feature="last_engagement_days", arm=arm), 0.0)


def test_response_sample_is_seeded_and_joins_outcomes_and_features():
    customers = customer_segments(2_000)
    assignments = pd.DataFrame({"customer_id": customers["customer_id"], "segment": customers["segment"],
                                "arm": np.tile(["control", "urgent", "informational", "friendly"], 500),
                                "sent": np.arange(2_000) % 10 != 0})
    engagement = pd.DataFrame({"customer_id": customers["customer_id"][::2], "opened": 1})  # only half listed
    sample, available = response_sample(assignments, engagement, customers, "opened", sample_size=500, seed=3)
    again, _ = response_sample(assignments, engagement, customers, "opened", sample_size=500, seed=3)
    assert available == 1_800 and len(sample) == 500
    pd.testing.assert_frame_equal(sample, again)
    assert set(sample["customer_id"]) <= set(assignments.loc[assignments["sent"], "customer_id"])
    expected = sample["customer_id"].isin(engagement["customer_id"]).astype(int)
    assert (sample["opened"] == expected).all()
    assert list(sample.columns) == ["customer_id", "arm", "opened", *MODEL_FEATURES]


def test_response_model_says_why_it_cannot_be_fitted():
    sample = _synthetic_response(2_000, seed=2).assign(opened=0)
    model = fit_response_model(sample, "opened", control="control", arms=("control", "friendly"))
    assert model.error == "the outcome does not vary in the sample"
    tiny = _synthetic_response(60, seed=2)
    assert "too few customers" in fit_response_model(tiny, "opened", control="control", arms=("control", "friendly")).error


def _blobs(n_per: int, seed: int) -> pd.DataFrame:
    """Three well-separated kinds of customers."""
    rng = np.random.default_rng(seed)
    kinds = [
        dict(age=25, purchase_frequency=1, avg_order_value=30, last_engagement_days=200, historical_open_rate=0.05,
             historical_click_rate=0.005, tier="Bronze"),
        dict(age=45, purchase_frequency=12, avg_order_value=200, last_engagement_days=10, historical_open_rate=0.6,
             historical_click_rate=0.15, tier="Gold"),
        dict(age=65, purchase_frequency=4, avg_order_value=80, last_engagement_days=60, historical_open_rate=0.3,
             historical_click_rate=0.05, tier="Silver"),
    ]
    frames = []
    for index, kind in enumerate(kinds):
        frame = pd.DataFrame({
            "age": np.clip(rng.normal(kind["age"], 2, n_per).round(), 18, 90).astype(int),
            "purchase_frequency": np.clip(rng.normal(kind["purchase_frequency"], 0.3, n_per).round(), 0, None).astype(int),
            "avg_order_value": kind["avg_order_value"] * np.exp(rng.normal(0, 0.05, n_per)),
            "last_engagement_days": (kind["last_engagement_days"] * np.exp(rng.normal(0, 0.05, n_per))).round().astype(int),
            "historical_open_rate": np.clip(rng.normal(kind["historical_open_rate"], 0.01, n_per), 0, 1),
            "historical_click_rate": np.clip(rng.normal(kind["historical_click_rate"], 0.002, n_per), 0, 1),
            "tier": kind["tier"],
            "segment": f"kind_{index}",
        })
        frames.append(frame)
    customers = pd.concat(frames, ignore_index=True)
    return customers.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_kmeans_exploration_finds_the_clusters_and_a_tree_explains_them():
    customers = _blobs(1_500, seed=4)
    table = explore_clusters(customers, sample_size=3_000, seed=9)
    assert list(table.columns) == list(EXPLORATION_COLUMNS)
    assert len(table) == 3 and set(table["k"]) == {3}
    assert table["customers"].sum() == len(customers)  # every customer assigned, not just the sample
    assert sorted(table["customers"]) == [1_500, 1_500, 1_500]
    assert set(table["top_segment_share"]) == {1.0}
    assert set(table["top_segment"]) == {"kind_0", "kind_1", "kind_2"}
    assert table["silhouette"].iloc[0] > 0.7
    assert table["tree_accuracy"].iloc[0] > 0.99
    assert table["sample_size"].iloc[0] == 3_000 and table["population"].iloc[0] == 4_500
    for rule in table["tree_rule"]:
        assert "no leaf" not in rule and (" <= " in rule or " > " in rule or "tier is" in rule)
        for path in rule.split(" OR "):
            assert path.count("tier is") <= 1  # tier splits are narrowed along the path, not repeated
    assert "--> cluster 1" in table["tree_text"].iloc[0]
    gold = table[table["top_segment"] == "kind_1"].iloc[0]
    assert np.isclose(gold["mean_tier_rank"], 2.0) and gold["mean_avg_order_value"] > 150


def test_kmeans_exploration_is_seeded():
    customers = customer_segments(3_000)
    first = explore_clusters(customers, sample_size=1_000, k_range=range(2, 5))
    second = explore_clusters(customers.copy(), sample_size=1_000, k_range=range(2, 5))
    pd.testing.assert_frame_equal(first, second)


def test_kmeans_exploration_of_too_few_customers_is_empty():
    table = explore_clusters(customer_segments(3_000).head(10))
    assert table.empty and list(table.columns) == list(EXPLORATION_COLUMNS)
