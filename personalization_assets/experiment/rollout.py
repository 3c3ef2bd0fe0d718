"""Test on a share, then roll out: who is in the randomized test, and what the rest is sent.

With `rollout.test_share` set, a salted hash of each customer id puts each customer in the test
with that probability, so about that share of every segment (today's randomized wave,
`experiment/assignment.py`); everyone else waits for the rollout. The hash is of the experiment id
and the customer id: the same customers are in the test every wave (change `experiment_id` to draw
anew). Once the test's engagement is in, the rollout sends each waiting customer:

- `winner`: their segment's winning tone where the lift gate passed (`experiment/results.winner_by_segment`:
  the segment's own reliable winner, else the campaign's overall winner), else the control message;
- `personalized`: their own predicted best message (`experiment/uplift.py`) when the gate on the
  personalized policy passed (`experiment/policies.PolicyGate`), else `winner`.

A randomized `holdout_share` of the rollout, again by a salted hash, gets the control message
instead, so the rollout's realized lift is measured against customers it did not treat. Every
draw is a hash of (experiment id, customer id) and the model is seeded, so re-running the rollout
assigns the same customers the same messages.

Pure logic, no Dagster import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from personalization_assets.campaign.config import CONTROL_ARM, RolloutSettings
from personalization_assets.experiment.assignment import (
    ASSIGNMENT_COLUMNS,
    build_assignments,
    unit_interval,
)
from personalization_assets.experiment.policies import PERSONALIZED

HOLDOUT = "holdout"
ROLLED_OUT = "rollout"
ROLLOUT_COLUMNS = (*ASSIGNMENT_COLUMNS, "rollout_group", "policy")
CHOICE_COLUMNS = ("wave", "customer_id", "segment", "winner_arm", "personalized_arm", "personalized_gain")


def in_test(customer_ids: pd.Series | np.ndarray, experiment_id: str, settings: RolloutSettings | None) -> np.ndarray:
    """Whether each customer is in the randomized test (everyone, when no rollout is configured)."""
    if settings is None:
        return np.ones(len(customer_ids), dtype=bool)
    return unit_interval(np.asarray(customer_ids), f"{experiment_id}:test-share") < settings.test_share


def rollout_arms(
    choices: pd.DataFrame, settings: RolloutSettings, experiment_id: str, *, personalized_passed: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each waiting customer's arm, rollout group (holdout or rollout) and the policy that chose it.

    `choices`: one row per waiting customer with its segment winner (`winner_arm`) and its
    predicted best arm (`personalized_arm`).
    """
    holdout = unit_interval(choices["customer_id"].to_numpy(), f"{experiment_id}:rollout-holdout") < settings.holdout_share
    personalized = settings.policy == PERSONALIZED and personalized_passed
    policy = PERSONALIZED if personalized else "winner"
    chosen = choices["personalized_arm" if personalized else "winner_arm"].to_numpy(dtype=object)
    arm = np.where(holdout, CONTROL_ARM, chosen)
    group = np.where(holdout, HOLDOUT, ROLLED_OUT).astype(object)
    return arm, group, np.full(len(choices), policy, dtype=object)


def build_rollout_assignments(
    customer_segments: pd.DataFrame, choices: pd.DataFrame, variants: pd.DataFrame, decisions: pd.DataFrame, *,
    settings: RolloutSettings, experiment_id: str, arms: Sequence[str], wave: str, personalized_passed: bool,
) -> pd.DataFrame:
    """The rollout's send decisions: each waiting customer's arm and variant, held out exactly as
    in the test (a blocked or unapproved variant, a contact hold), with its rollout group."""
    indexed = customer_segments.set_index("customer_id")
    unknown = ~choices["customer_id"].isin(indexed.index).to_numpy()
    if unknown.any():
        raise ValueError(f"{int(unknown.sum())} customers of rollout_choices are not in this wave's customer_segments (e.g. "
                         f"{choices.loc[unknown, 'customer_id'].head(3).tolist()}): customer_segments changed after the policies were "
                         "valued; materialize the rollout group again")
    waiting = indexed.loc[choices["customer_id"].to_numpy()].reset_index()
    arm, group, policy = rollout_arms(choices, settings, experiment_id, personalized_passed=personalized_passed)
    frame = build_assignments(waiting, variants, decisions, experiment_id=experiment_id, weights=dict.fromkeys(arms, 1.0),
                              wave=wave, arms=pd.Categorical(arm, categories=list(arms)))
    return frame.assign(rollout_group=group, policy=policy)[list(ROLLOUT_COLUMNS)]


def rollout_choices(waiting: pd.DataFrame, winners: Mapping[str, str], personalized_arm: np.ndarray, gain: np.ndarray,
                    wave: str) -> pd.DataFrame:
    """The two candidate arms of each waiting customer: the segment's gated winner and the model's pick."""
    segments = waiting["segment"].astype(str).to_numpy()
    winner = pd.Series(segments).map(dict(winners)).fillna(CONTROL_ARM).to_numpy(dtype=object)
    return pd.DataFrame({"wave": wave, "customer_id": waiting["customer_id"].to_numpy(), "segment": segments,
                         "winner_arm": winner, "personalized_arm": np.asarray(personalized_arm, dtype=object),
                         "personalized_gain": np.asarray(gain, dtype=float)})[list(CHOICE_COLUMNS)]
