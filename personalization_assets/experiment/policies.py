"""Honest policy values: what each candidate rollout policy would earn, from the randomized test.

The candidates are the policies a campaign can roll out: the control message for everyone, the
best single tone for everyone, each segment's gated winner (`experiment/gates.py`), and the
personalized policy (`experiment/uplift.py`). A policy's value is the expected primary-metric
rate if every customer of the test population were sent what the policy picks.

Estimator: doubly robust (augmented inverse-propensity weighting) with cross-fitting. The test's
customers are split into K folds by a salted hash of their id. For each fold, the outcome models
are fitted and every learned policy is chosen (best tone, segment winners, per-customer model) on
the other K - 1 folds only; on the fold itself each customer i and arm a get the score

    Γ_i(a) = μ̂_a(x_i) + 1{A_i = a} / e_a(s_i) · (Y_i − μ̂_a(x_i)),

with e_a(s) the known randomization probability of arm a in segment s. A policy's value is the
mean of Γ_i(π(x_i)), its interval the normal interval of that mean; a difference of two policies
is the mean of the paired differences of their scores, so the interval accounts for their
correlation. Because the propensities are the design's, the estimate is unbiased whatever the
outcome models' quality; good models only make it tighter. Because each fold's policy and models
never saw that fold, the value of a learned policy is not inflated by its own fitting: it is the
value of the learning procedure on (K - 1)/K of the test (a slight understatement of the policy
fitted on the whole test, which is the one rolled out).

Pure logic, no Dagster import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from personalization_assets.campaign.config import (
    CONTROL_ARM,
    METRIC_COLUMNS,
    CampaignConfig,
    SimulationSettings,
)
from personalization_assets.experiment.assignment import unit_interval
from personalization_assets.experiment.engagement import expected_outcomes
from personalization_assets.experiment.results import segment_winners
from personalization_assets.experiment.uplift import (
    TLearner,
    fit_t_learner,
    uplift_features,
)
from personalization_assets.stats._normal import two_sided_z

CONTROL_FOR_ALL = "control_for_all"
BEST_SINGLE_TONE = "best_single_tone"
WINNER_PER_SEGMENT = "winner_per_segment"
PERSONALIZED = "personalized"
POLICIES = (CONTROL_FOR_ALL, BEST_SINGLE_TONE, WINNER_PER_SEGMENT, PERSONALIZED)
POLICY_LABELS = {
    CONTROL_FOR_ALL: "control message for everyone",
    BEST_SINGLE_TONE: "best single tone for everyone",
    WINNER_PER_SEGMENT: "each segment's gated winner (else the overall winner, else control)",
    PERSONALIZED: "each customer's predicted best message",
}
POLICY_VALUE_COLUMNS = ("policy", "description", "value", "ci_low", "ci_high", "std_error", "diff_vs_baseline",
                        "diff_ci_low", "diff_ci_high", "customers", "true_value")
QINI_POINTS = 20

# A rule that picks each segment's arm from (part of) the test: the rollout's gated winner.
WinnerRule = Callable[[pd.DataFrame], Mapping[str, str]]


@dataclass(frozen=True)
class PolicyGate:
    """Whether the personalized policy may ship: the lower bound of its value minus the best
    other candidate's (paired, cross-fitted) is above zero."""

    passed: bool
    baseline: str
    difference: float
    ci_low: float
    ci_high: float
    reason: str

    def summary(self) -> str:
        head = (f"personalized vs {self.baseline}: {self.difference:+.4f} [{self.ci_low:+.4f}, {self.ci_high:+.4f}]"
                if np.isfinite(self.difference) else f"personalized vs {self.baseline}: not estimable")
        return f"{head}: {'passed' if self.passed else 'not passed'} ({self.reason})"


@dataclass
class PolicyEvaluation:
    values: pd.DataFrame  # POLICY_VALUE_COLUMNS, one row per candidate policy
    gate: PolicyGate
    qini: pd.DataFrame  # fraction targeted, incremental successes per customer, the random line
    choices: pd.DataFrame  # per test customer: customer_id, fold, and each policy's (cross-fitted) arm
    folds: int


@dataclass(frozen=True)
class TestData:
    """The randomized test as the estimator reads it."""

    frame: pd.DataFrame  # analysed customers: customer_id, segment, arm, the outcome, the model's customer columns
    outcome: str  # the primary metric's 0/1 column
    arms: tuple[str, ...]  # control first
    segments: tuple[str, ...]
    propensity: np.ndarray  # (segments, arms): probability of each arm in each segment, 0 where it cannot be sent


def design_propensities(frame: pd.DataFrame, segments: Sequence[str], weights: Mapping[str, float]) -> np.ndarray:
    """Each arm's randomization probability per segment: the configured weights over the arms
    that were sent in that segment (a blocked variant's customers are held out, not analysed)."""
    arms = list(weights)
    seg_codes = pd.Categorical(frame["segment"], categories=list(segments)).codes
    arm_codes = pd.Categorical(frame["arm"], categories=arms).codes
    valid = (seg_codes >= 0) & (arm_codes >= 0)
    sent = np.zeros((len(segments), len(arms)), dtype=bool)
    sent[seg_codes[valid], arm_codes[valid]] = True
    raw = np.where(sent, np.array([weights[a] for a in arms], dtype=float), 0.0)
    totals = raw.sum(axis=1, keepdims=True)
    return np.divide(raw, totals, out=np.zeros_like(raw), where=totals > 0)


def fold_of(customer_ids: pd.Series, folds: int, seed: int) -> np.ndarray:
    """Each customer's cross-fitting fold, from a salted hash of the id: stable across runs."""
    return np.minimum((unit_interval(customer_ids.to_numpy(), f"policy-folds:{seed}") * folds).astype(np.intp), folds - 1)


def _arm_index(arms: Sequence[str], chosen: Mapping[str, str], segment_codes: np.ndarray, segments: Sequence[str]) -> np.ndarray:
    table = np.array([list(arms).index(chosen.get(segment, CONTROL_ARM)) for segment in segments], dtype=np.intp)
    return table[segment_codes]


def _mask_unavailable(index: np.ndarray, available: np.ndarray, segment_codes: np.ndarray) -> np.ndarray:
    """A policy's pick where it cannot be sent in the customer's segment falls back to control (position 0)."""
    return np.where(available[segment_codes, index], index, 0)


def evaluate_policies(data: TestData, *, winner_rule: WinnerRule, estimator: str, folds: int, seed: int,
                      alpha: float) -> tuple[PolicyEvaluation, TLearner]:
    """Cross-fitted doubly robust values of the candidate policies, the gate on the personalized
    one, its Qini curve; and the personalized model refitted on the whole test (the one rolled out)."""
    frame = data.frame.reset_index(drop=True)
    arms, segments = list(data.arms), list(data.segments)
    if arms[0] != CONTROL_ARM:
        raise ValueError(f"arms must start with '{CONTROL_ARM}', got {arms}")
    features = uplift_features(frame, segments)
    seg_codes = pd.Categorical(frame["segment"], categories=segments).codes.astype(np.intp)
    arm_codes = pd.Categorical(frame["arm"], categories=arms).codes.astype(np.intp)
    y = frame[data.outcome].to_numpy(dtype=float)
    available = data.propensity > 0
    n, k = len(frame), len(arms)
    fold = fold_of(frame["customer_id"], folds, seed)

    scores = np.zeros((n, k))  # Γ_i(a)
    predicted = np.zeros((n, k))  # μ̂_a(x_i), out of fold
    picks = {policy: np.zeros(n, dtype=np.intp) for policy in POLICIES}
    for f in range(folds):
        test_rows, train_rows = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if not len(test_rows):
            continue
        model = fit_t_learner(features.iloc[train_rows], arm_codes[train_rows], y[train_rows], arms, available,
                              estimator=estimator, seed=seed)
        mu = model.predict(features.iloc[test_rows])
        # An arm the training folds never saw (tiny tests): its cell mean stands in as the prediction.
        mu = np.where(np.isnan(mu), np.nanmean(np.where(np.isnan(mu), np.nan, mu), axis=0, keepdims=True), mu)
        mu = np.nan_to_num(mu, nan=float(y[train_rows].mean()) if len(train_rows) else 0.0)
        e = data.propensity[seg_codes[test_rows]]
        sent_arm = np.zeros((len(test_rows), k))
        sent_arm[np.arange(len(test_rows)), arm_codes[test_rows]] = 1.0
        residual_weight = np.divide(sent_arm, e, out=np.zeros_like(e), where=e > 0)
        scores[test_rows] = mu + residual_weight * (y[test_rows, np.newaxis] - mu)
        predicted[test_rows] = mu

        train = frame.iloc[train_rows]
        tone_rates = [(train.loc[train["arm"] == arm, data.outcome].mean(), arm) for arm in arms[1:]]
        best_tone = max(((rate, arm) for rate, arm in tone_rates if rate == rate), default=(0.0, CONTROL_ARM))[1]
        segs = seg_codes[test_rows]
        picks[CONTROL_FOR_ALL][test_rows] = 0
        picks[BEST_SINGLE_TONE][test_rows] = _mask_unavailable(np.full(len(test_rows), arms.index(best_tone)), available, segs)
        picks[WINNER_PER_SEGMENT][test_rows] = _mask_unavailable(_arm_index(arms, winner_rule(train), segs, segments), available, segs)
        picks[PERSONALIZED][test_rows] = model.best_arms(model.predict(features.iloc[test_rows]))

    z = two_sided_z(alpha)
    policy_scores = {policy: scores[np.arange(n), picks[policy]] for policy in POLICIES}
    rows = []
    for policy in POLICIES:
        s = policy_scores[policy]
        se = float(s.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
        rows.append({"policy": policy, "description": POLICY_LABELS[policy], "value": float(s.mean()) if n else np.nan,
                     "ci_low": float(s.mean() - z * se) if n else np.nan, "ci_high": float(s.mean() + z * se) if n else np.nan,
                     "std_error": se, "customers": n})
    values = pd.DataFrame(rows)
    others = values[values["policy"] != PERSONALIZED]
    baseline = str(others.sort_values(["value", "policy"], ascending=[False, True]).iloc[0]["policy"]) if n else CONTROL_FOR_ALL
    diffs = {policy: policy_scores[policy] - policy_scores[baseline] for policy in POLICIES}
    values["diff_vs_baseline"] = [float(diffs[p].mean()) if n else np.nan for p in POLICIES]
    diff_se = {p: float(diffs[p].std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan for p in POLICIES}
    values["diff_ci_low"] = [values.loc[i, "diff_vs_baseline"] - z * diff_se[p] for i, p in enumerate(POLICIES)]
    values["diff_ci_high"] = [values.loc[i, "diff_vs_baseline"] + z * diff_se[p] for i, p in enumerate(POLICIES)]
    values["true_value"] = np.nan
    personalized = values.set_index("policy").loc[PERSONALIZED]
    low = float(personalized["diff_ci_low"])
    passed = bool(np.isfinite(low) and low > 0)
    reason = (f"its value's lower bound beats {baseline} by {low:+.4f}" if passed else
              f"the interval of its gain over {baseline} reaches {low:+.4f} (must be above 0)" if np.isfinite(low)
              else "too few test customers to estimate it")
    gate = PolicyGate(passed, baseline, float(personalized["diff_vs_baseline"]), low, float(personalized["diff_ci_high"]), reason)

    choices = pd.DataFrame({"customer_id": frame["customer_id"].to_numpy(), "fold": fold,
                            **{policy: np.array(arms, dtype=object)[picks[policy]] for policy in POLICIES}})
    qini = qini_curve(predicted, picks[PERSONALIZED], arm_codes, y)
    final = fit_t_learner(features, arm_codes, y, arms, available, estimator=estimator, seed=seed)
    return PolicyEvaluation(values[list(POLICY_VALUE_COLUMNS)], gate, qini, choices, folds), final


def qini_curve(predicted: np.ndarray, chosen: np.ndarray, arm_codes: np.ndarray, y: np.ndarray, points: int = QINI_POINTS) -> pd.DataFrame:
    """The Qini curve of the personalized policy, from out-of-fold predictions.

    Customers are ranked by predicted gain of their chosen arm over control (0 when control is
    chosen). For the top share φ, the incremental successes per test customer are those of the
    customers who were randomized to their recommended tone, minus control's, scaled to the
    same count: (Y_t − Y_c · N_t / N_c) / n. The random line joins 0 to the curve's end.
    """
    n = len(y)
    gain = predicted[np.arange(n), chosen] - predicted[:, 0]
    order = np.argsort(-gain, kind="stable")
    treated = ((arm_codes == chosen) & (chosen != 0))[order]
    control = (arm_codes == 0)[order]
    y_sorted = y[order]
    cum_t, cum_c = np.cumsum(treated), np.cumsum(control)
    cum_yt, cum_yc = np.cumsum(y_sorted * treated), np.cumsum(y_sorted * control)
    fractions = np.linspace(0, 1, points + 1)
    qini = [0.0]
    for fraction in fractions[1:]:
        i = max(int(round(fraction * n)) - 1, 0)
        scale = cum_t[i] / cum_c[i] if cum_c[i] else 0.0
        qini.append(float(cum_yt[i] - cum_yc[i] * scale) / n if n else 0.0)
    qini = np.array(qini)
    return pd.DataFrame({"fraction": fractions, "qini": qini, "random": fractions * qini[-1]})


def qini_coefficient(qini: pd.DataFrame) -> float:
    """The area between the Qini curve and the random line (trapezoids over the fractions)."""
    gap = (qini["qini"] - qini["random"]).to_numpy()
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(qini["fraction"].to_numpy())))


def campaign_test_data(frame: pd.DataFrame, config: CampaignConfig, segment_ids: Sequence[str]) -> TestData:
    """The campaign's randomized test as the estimator reads it: the primary metric's column, the
    campaign's arms (control first) and its design propensities per segment."""
    segments = tuple(segment_ids)
    return TestData(frame, METRIC_COLUMNS[config.metrics.primary], tuple(config.arm_names), segments,
                    design_propensities(frame, segments, config.arm_weights))


def evaluate_campaign_policies(frame: pd.DataFrame, config: CampaignConfig, segment_ids: Sequence[str], *,
                               simulation: SimulationSettings | None = None) -> tuple[PolicyEvaluation, TLearner]:
    """`evaluate_policies` on a campaign's test, segment winners chosen by the campaign's own lift
    gate; with `simulation` (engagement was simulated) each policy's true value is filled in
    from the simulator's ground truth for the same customers and the same (cross-fitted) picks."""
    data = campaign_test_data(frame, config, segment_ids)
    settings = config.personalization
    evaluation, model = evaluate_policies(
        data, winner_rule=lambda train: segment_winners(train, config, segment_ids), estimator=settings.estimator,
        folds=settings.folds, seed=settings.seed, alpha=config.alpha,
    )
    if simulation is not None:
        ordered = data.frame.reset_index(drop=True)
        evaluation.values["true_value"] = [
            float(expected_outcomes(ordered, simulation, evaluation.choices[policy].to_numpy())[data.outcome].mean())
            for policy in evaluation.values["policy"]
        ]
    return evaluation, model


def personalized_gate_passes(values: pd.DataFrame) -> bool:
    """The personalized policy's gate read back from a stored `policy_values` table (so the
    rollout applies it even when the check ran in another run): its gain's lower bound above 0."""
    row = values.loc[values["policy"] == PERSONALIZED, "diff_ci_low"]
    return bool(len(row) == 1 and np.isfinite(row.iloc[0]) and row.iloc[0] > 0)
