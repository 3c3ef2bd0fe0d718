"""Deterministic experiment assignment: the hash, the weighted arms, and who is held out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization_assets.experiment.assignment import (
    ASSIGNMENT_COLUMNS,
    HOLD_VARIANT_BLOCKED,
    assign_arms,
    build_assignments,
    stable_hash64,
    unit_interval,
)
from personalization_assets_tests.pure_fixtures import (
    campaign,
    catalog,
    customer_segments,
    variants_frame,
    verdicts_frame,
)

# Pinned once from the implementation (FNV-1a 64 over salt + NUL + id, then splitmix64's finalizer):
# if this changes, every running experiment silently re-randomizes.
GOLDEN_C0000001_EXP = 14013044567967994290
EQUAL = {"control": 0.25, "urgent": 0.25, "informational": 0.25, "friendly": 0.25}
UNEQUAL = {"control": 0.5, "urgent": 0.3, "friendly": 0.2}
MASK64 = (1 << 64) - 1


def reference_hash(value: str, salt: str) -> int:
    """The documented algorithm in plain Python integers, one string at a time."""
    state = 0xCBF29CE484222325
    for byte in salt.encode() + b"\x00" + value.encode():
        state = ((state ^ byte) * 0x100000001B3) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def ids(n: int, start: int = 1, prefix: str = "C") -> pd.Series:
    return pd.Series([f"{prefix}{i:07d}" for i in range(start, start + n)], dtype=object)


# --- stable_hash64 -----------------------------------------------------------------------------------


def test_golden_value():
    assert int(stable_hash64(np.array(["C0000001"]), "exp")[0]) == GOLDEN_C0000001_EXP
    assert reference_hash("C0000001", "exp") == GOLDEN_C0000001_EXP


def test_hash_matches_the_documented_algorithm():
    values = ["C0000001", "", "x", "Ünïcødé-客户", "a much longer customer identifier 123456789", "C0000001 "]
    hashed = stable_hash64(pd.Series(values), "spring-2026")
    assert [int(h) for h in hashed] == [reference_hash(v, "spring-2026") for v in values]
    assert hashed.dtype == np.uint64


def test_hash_is_deterministic_and_salted():
    values = ids(1000)
    first = stable_hash64(values, "exp")
    assert np.array_equal(first, stable_hash64(values.copy(), "exp"))
    assert np.array_equal(first, stable_hash64(values.to_numpy(), "exp"))
    other_salt = stable_hash64(values, "exp2")
    assert (first != other_salt).all()
    assert len(np.unique(first)) == len(values)


def test_hash_does_not_depend_on_batch_composition():
    alone = stable_hash64(pd.Series(["C0000001"]), "exp")[0]
    batch = pd.Series(["a-much-longer-customer-id-000000000001", "C0000001", "é" * 30, "C1"])
    assert stable_hash64(batch, "exp")[1] == alone
    assert stable_hash64(batch[::-1].reset_index(drop=True), "exp")[2] == alone


def test_empty_batch():
    assert len(stable_hash64(pd.Series([], dtype=object), "exp")) == 0


def test_unit_interval_is_uniform_in_zero_one():
    u = unit_interval(ids(100_000), "exp")
    assert u.min() >= 0.0 and u.max() < 1.0
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    assert np.all(np.abs(counts / len(u) - 0.1) < 0.005)


# --- assign_arms -------------------------------------------------------------------------------------


def test_assignment_is_stable_under_reordering_and_new_customers():
    existing = ids(20_000)
    arms = pd.Series(np.asarray(assign_arms(existing, "exp", EQUAL)), index=existing)
    newcomers = pd.concat([ids(1000, start=20_001), ids(1000, start=1, prefix="NEW-LONGER-ID-")])
    grown = pd.concat([existing, newcomers]).sample(frac=1.0, random_state=5).reset_index(drop=True)
    regrown = pd.Series(np.asarray(assign_arms(grown, "exp", EQUAL)), index=grown)
    assert regrown.loc[existing].tolist() == arms.tolist()


def test_different_experiment_ids_re_randomize():
    customers = ids(20_000)
    first = np.asarray(assign_arms(customers, "exp-a", EQUAL))
    second = np.asarray(assign_arms(customers, "exp-b", EQUAL))
    same = (first == second).mean()
    assert 0.22 < same < 0.28  # independent draws agree with probability sum(w^2) = 0.25


@pytest.mark.parametrize("weights", [EQUAL, UNEQUAL], ids=["25-25-25-25", "50-30-20"])
def test_proportions_follow_the_weights(weights):
    customers = ids(200_000)
    arms = assign_arms(customers, "spring-outdoors-2026", weights)
    assert len(arms) == len(customers)  # nobody dropped
    assert not pd.isna(arms).any()
    assert list(arms.categories) == list(weights)
    shares = pd.Series(np.asarray(arms)).value_counts(normalize=True)
    for arm, weight in weights.items():
        assert abs(shares[arm] - weight) < 0.01, (arm, shares[arm])


def test_unnormalised_weights_are_normalised():
    customers = ids(50_000)
    assert np.array_equal(
        np.asarray(assign_arms(customers, "exp", {"control": 2, "a": 1, "b": 1})),
        np.asarray(assign_arms(customers, "exp", {"control": 0.5, "a": 0.25, "b": 0.25})),
    )


def test_per_segment_proportions_follow_the_weights():
    frame = customer_segments(200_000)
    arms = pd.Series(np.asarray(assign_arms(frame["customer_id"], "spring-outdoors-2026", UNEQUAL)))
    shares = pd.crosstab(frame["segment"].to_numpy(), arms, normalize="index")
    assert set(shares.index) == set(catalog().ids)
    for arm, weight in UNEQUAL.items():
        worst = (shares[arm] - weight).abs().max()
        assert worst < 0.02, (arm, shares[arm].to_dict())


# --- build_assignments -------------------------------------------------------------------------------


def assignments_for(frame, variants, verdicts, weights=None):
    config = campaign()
    return build_assignments(frame.assign(contact_hold=""), variants, verdicts, experiment_id=config.experiment_id,
                             weights=weights or config.arm_weights, wave="2026-01-05")


def test_all_approved_everyone_is_sent_their_arm_variant():
    frame = customer_segments(5000)
    variants = variants_frame(catalog().ids)
    result = assignments_for(frame, variants, verdicts_frame(variants))
    assert list(result.columns) == list(ASSIGNMENT_COLUMNS)
    assert len(result) == len(frame) and list(result["customer_id"]) == list(frame["customer_id"])
    assert result["sent"].all() and result["hold_reason"].isna().all()
    assert (result["wave"] == "2026-01-05").all()
    assert list(result["segment"]) == list(frame["segment"])
    expected_variant = np.where(result["arm"] == "control", "control", result["segment"] + ":" + result["arm"])
    assert (result["variant_id"] == expected_variant).all()
    expected_arms = np.asarray(assign_arms(frame["customer_id"], campaign().experiment_id, campaign().arm_weights))
    assert (result["arm"].to_numpy() == expected_arms).all()


def test_blocked_variant_holds_its_customers_out():
    frame = customer_segments(5000)
    variants = variants_frame(catalog().ids)
    result = assignments_for(frame, variants, verdicts_frame(variants, blocked={"at_risk:urgent"}))
    hit = (result["segment"] == "at_risk") & (result["arm"] == "urgent")
    assert hit.sum() > 0
    held = result[hit]
    assert (~held["sent"]).all()
    assert (held["hold_reason"] == HOLD_VARIANT_BLOCKED).all()
    assert (held["variant_id"] == "at_risk:urgent").all()  # not given another variant
    assert (held["arm"] == "urgent").all()
    rest = result[~hit]
    assert rest["sent"].all() and rest["hold_reason"].isna().all()
    assert len(result) == len(frame)


def test_blocked_control_in_one_segment_holds_only_that_segments_control():
    frame = customer_segments(5000)
    variants = variants_frame(catalog().ids)
    result = assignments_for(frame, variants, verdicts_frame(variants, blocked={"new_customers|control"}))
    held = result[~result["sent"]]
    assert set(zip(held["segment"], held["arm"])) == {("new_customers", "control")}
    assert (held["variant_id"] == "control").all()


def test_variant_without_a_verdict_counts_as_blocked():
    frame = customer_segments(5000)
    variants = variants_frame(catalog().ids)
    verdicts = verdicts_frame(variants)
    verdicts = verdicts[~((verdicts["segment"] == "vip_champions") & (verdicts["variant_id"] == "vip_champions:friendly"))]
    result = assignments_for(frame, variants, verdicts)
    held = result[~result["sent"]]
    assert set(zip(held["segment"], held["arm"])) == {("vip_champions", "friendly")}
    assert (held["hold_reason"] == HOLD_VARIANT_BLOCKED).all()
    # Any decision other than 'approved' holds too.
    odd = verdicts_frame(variants).assign(decision=lambda f: np.where(f["variant_id"] == "at_risk:friendly", "error", "approved"))
    result = assignments_for(frame, variants, odd)
    assert set(zip(result.loc[~result["sent"], "segment"], result.loc[~result["sent"], "arm"])) == {("at_risk", "friendly")}


def test_segment_without_variants_is_an_error_naming_it():
    frame = customer_segments(5000)
    variants = variants_frame([s for s in catalog().ids if s != "value_seekers"])
    with pytest.raises(ValueError, match="value_seekers"):
        assignments_for(frame, variants, verdicts_frame(variants))


def test_arm_without_a_variant_is_an_error():
    frame = customer_segments(2000)
    variants = variants_frame(catalog().ids, arms=("control", "urgent", "informational"))
    with pytest.raises(ValueError, match="friendly"):
        assignments_for(frame, variants, verdicts_frame(variants))


def test_assignments_are_stable_across_waves_and_row_order():
    frame = customer_segments(5000)
    variants = variants_frame(catalog().ids)
    verdicts = verdicts_frame(variants)
    first = assignments_for(frame, variants, verdicts).set_index("customer_id")["arm"]
    shuffled = frame.sample(frac=1.0, random_state=9).reset_index(drop=True)
    second = assignments_for(shuffled, variants, verdicts).set_index("customer_id")["arm"]
    assert second.loc[first.index].tolist() == first.tolist()
