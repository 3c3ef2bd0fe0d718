"""Who is in the test, what the rollout sends each other customer, and the winner policy's fallbacks."""

import numpy as np
import pandas as pd
import pytest

from personalization_assets.campaign.config import CONTROL_ARM, RolloutSettings
from personalization_assets.experiment.assignment import HOLD_VARIANT_BLOCKED
from personalization_assets.experiment.results import winner_by_segment
from personalization_assets.experiment.rollout import (
    HOLDOUT,
    ROLLED_OUT,
    ROLLOUT_COLUMNS,
    build_rollout_assignments,
    in_test,
    rollout_arms,
    rollout_choices,
)

IDS = pd.Series([f"C{i:07d}" for i in range(50_000)])


def settings(**changes) -> RolloutSettings:
    return RolloutSettings(**{"test_share": 0.2, "policy": "personalized", "holdout_share": 0.1, **changes})


def test_the_test_is_the_configured_share_and_stable_when_customers_are_added_or_reordered():
    testing = in_test(IDS, "exp", settings())
    assert abs(testing.mean() - 0.2) < 0.01
    shuffled = IDS.sample(frac=1, random_state=0)
    np.testing.assert_array_equal(in_test(shuffled, "exp", settings()), testing[shuffled.index])
    more = pd.concat([IDS, pd.Series(["N0000001", "N0000002"])], ignore_index=True)
    np.testing.assert_array_equal(in_test(more, "exp", settings())[: len(IDS)], testing)
    assert in_test(IDS, "exp", None).all()  # no rollout configured: everyone is in the test
    assert (in_test(IDS, "other", settings()) != testing).any()  # another experiment draws anew


def choices_for(ids: pd.Series) -> pd.DataFrame:
    segments = np.where(np.arange(len(ids)) % 2 == 0, "a", "b")
    personalized = np.where(np.arange(len(ids)) % 3 == 0, "friendly", "urgent")
    return rollout_choices(pd.DataFrame({"customer_id": ids, "segment": segments}), {"a": "informational", "b": CONTROL_ARM},
                           personalized, np.zeros(len(ids)), "2026-11-16")


def test_the_holdout_gets_control_and_the_rest_the_policys_pick():
    choices = choices_for(IDS)
    arm, group, policy = rollout_arms(choices, settings(), "exp", personalized_passed=True)
    holdout = group == HOLDOUT
    assert abs(holdout.mean() - 0.1) < 0.01
    assert (arm[holdout] == CONTROL_ARM).all()
    np.testing.assert_array_equal(arm[~holdout], choices["personalized_arm"].to_numpy()[~holdout])
    assert set(policy) == {"personalized"}
    # The gate did not pass: the segment winners go out instead, to the same non-holdout customers.
    arm, group_failed, policy = rollout_arms(choices, settings(), "exp", personalized_passed=False)
    np.testing.assert_array_equal(group_failed, group)
    np.testing.assert_array_equal(arm[~holdout], choices["winner_arm"].to_numpy()[~holdout])
    assert set(policy) == {"winner"}
    # A campaign that chose `winner` never sends the personalized picks, whatever the gate.
    arm, _, policy = rollout_arms(choices, settings(policy="winner"), "exp", personalized_passed=True)
    np.testing.assert_array_equal(arm[~holdout], choices["winner_arm"].to_numpy()[~holdout])


def test_rollout_assignments_hold_out_a_blocked_variant_and_a_contact_hold_like_the_test():
    ids = IDS.head(2_000)
    choices = choices_for(ids)
    customer_segments = pd.DataFrame({"customer_id": ids, "segment": choices["segment"],
                                      "contact_hold": np.where(np.arange(len(ids)) == 5, "suppressed:unsubscribed", "")})
    arms = [CONTROL_ARM, "urgent", "informational", "friendly"]
    variants = pd.DataFrame([{"segment": s, "arm": a, "variant_id": "control" if a == CONTROL_ARM else f"{s}:{a}"}
                             for s in ("a", "b") for a in arms])
    decisions = variants[["segment", "variant_id"]].assign(decision="approved")
    decisions.loc[decisions["variant_id"] == "a:friendly", "decision"] = "blocked"
    frame = build_rollout_assignments(customer_segments, choices, variants, decisions, settings=settings(), experiment_id="exp",
                                      arms=arms, wave="2026-11-16", personalized_passed=True)
    assert list(frame.columns) == list(ROLLOUT_COLUMNS)
    blocked = (frame["variant_id"] == "a:friendly").to_numpy()
    assert blocked.any() and not frame.loc[blocked, "sent"].any()
    assert set(frame.loc[blocked, "hold_reason"]) == {HOLD_VARIANT_BLOCKED}
    assert not frame.loc[5, "sent"] and frame.loc[5, "hold_reason"] == "suppressed:unsubscribed"
    assert set(frame["rollout_group"]) == {HOLDOUT, ROLLED_OUT}
    assert (frame["customer_id"].to_numpy() == ids.to_numpy()).all()


@pytest.mark.parametrize("own, overall, expected", [
    ({"a": ("friendly", True), "b": ("control", False)}, ("urgent", True), {"a": "friendly", "b": "urgent"}),
    ({"a": ("control", False), "b": ("control", False)}, ("control", False), {"a": "control", "b": "control"}),
])
def test_the_winner_policy_falls_back_to_the_overall_winner_then_control(own, overall, expected):
    rows = [{"scope": "overall", "recommended_arm": overall[0], "has_reliable_winner": overall[1]}]
    rows += [{"scope": scope, "recommended_arm": arm, "has_reliable_winner": reliable} for scope, (arm, reliable) in own.items()]
    assert winner_by_segment(pd.DataFrame(rows), ["a", "b"]) == expected
