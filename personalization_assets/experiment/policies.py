"""Honest policy values: what each candidate rollout policy would earn, from the randomized test.

The candidates are the policies a campaign can roll out: the control message for everyone, the
best single tone for everyone, each segment's gated winner (`experiment/gates.py`), and the
personalized policy (`experiment/uplift.py`). A policy's value is the expected primary-metric
rate if every customer of the test population were sent what the policy picks.

Estimator: doubly robust (augmented inverse-propensity weighting), on data no policy was chosen on.

1. A salted hash of each customer id splits the test's customers into a learning part and an
   evaluation part (`personalization.evaluation_share`). Every learned policy is chosen on the
   learning part only: the best tone, each segment's winner (the campaign's lift gate on those
   customers), and the per-customer model. These are the policies the rollout ships: it sends
   exactly the policy whose value is estimated. (Choosing the segment winners on the whole test
   instead undercovers: the evaluation part then helps pick the winner it values.)
2. On the evaluation part, each customer i and arm a get the score

       Γ_i(a) = μ̂_a(x_i) + 1{A_i = a} / e_a(s_i) · (Y_i − μ̂_a(x_i)),

   with e_a(s) the known randomization probability of arm a in segment s and μ̂ an outcome model
   (the T-learner) cross-fitted: the evaluation part is cut into K folds, and a fold's μ̂ is fitted
   on the learning part and the other folds, never on the fold itself.
3. A policy's value is the mean of Γ_i(π(x_i)) over the evaluation part, with the normal interval
   of that mean; a difference of two policies is the mean of their paired score differences, so its
   interval accounts for their correlation.

Because the propensities are the design's, the estimate is unbiased whatever the outcome models'
quality (good models only make it tighter), and because the policies were fixed before the
evaluation part was looked at, its interval is that of a fixed policy's value. (Letting each fold's
policy be learned on the other folds instead, as cross-validation does, undercovers: each fold's
policy then depends on the noise of the folds that value the others.)

Pure logic, no Dagster import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from personalization_assets.campaign.config import (
    CONTINUOUS_METRICS,
    CONTROL_ARM,
    GUARDRAIL_COLUMNS,
    METRIC_COLUMNS,
    CampaignConfig,
    SimulationSettings,
)
from personalization_assets.experiment.assignment import unit_interval
from personalization_assets.experiment.engagement import expected_outcomes
from personalization_assets.experiment.gates import guardrail_verdict
from personalization_assets.experiment.results import gated_winners
from personalization_assets.experiment.uplift import (
    TLearner,
    fit_t_learner,
    uplift_features,
)
from personalization_assets.stats._normal import two_sided_z
from personalization_assets.stats.srm import SrmResult

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
POLICY_VALUE_COLUMNS = ("policy", "description", "value", "ci_low", "ci_high", "std_error", "is_baseline", "diff_vs_baseline",
                        "diff_ci_low", "diff_ci_high", "gate_passed", "guardrails", "customers", "true_value")
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
    choices: pd.DataFrame  # per evaluation-part customer: customer_id, fold, and each policy's arm
    folds: int
    winners: dict[str, str]  # each segment's winner as learned and valued (the rollout's `winner` policy)


@dataclass(frozen=True)
class RandomizedTest:
    """The randomized test as the estimator reads it."""

    frame: pd.DataFrame  # analysed customers: customer_id, segment, arm, the outcome, the model's customer columns
    outcome: str  # the primary metric's 0/1 column
    arms: tuple[str, ...]  # control first
    segments: tuple[str, ...]
    propensity: np.ndarray  # (segments, arms): probability of each arm in each segment, 0 where it cannot be sent
    blocked_arms: tuple[str, ...] = ()  # arms no policy may send (they fail a guardrail)
    guardrails: tuple[tuple[str, float], ...] = ()  # (0/1 column, margin) of each measured guardrail
    continuous: bool = False  # the outcome is an amount (revenue per recipient), modelled by regressors

    @property
    def available(self) -> np.ndarray:
        """(segments, arms): whether a policy may send each arm in each segment."""
        return (self.propensity > 0) & ~np.isin(np.array(self.arms, dtype=object), list(self.blocked_arms))[np.newaxis, :]


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


def _arm_index(arms: Sequence[str], chosen: Mapping[str, str], segment_codes: np.ndarray, segments: Sequence[str]) -> np.ndarray:
    table = np.array([list(arms).index(chosen.get(segment, CONTROL_ARM)) for segment in segments], dtype=np.intp)
    return table[segment_codes]


def _mask_unavailable(index: np.ndarray, available: np.ndarray, segment_codes: np.ndarray) -> np.ndarray:
    """A policy's pick where it cannot be sent in the customer's segment falls back to control (position 0)."""
    return np.where(available[segment_codes, index], index, 0)


def split_of(customer_ids: pd.Series, evaluation_share: float, folds: int, seed: int) -> np.ndarray:
    """Each customer's part: -1 for the learning part, else its evaluation fold (0 .. folds - 1),
    from one salted hash of the id: stable across runs."""
    draw = unit_interval(customer_ids.to_numpy(), f"policy-split:{seed}")
    learning = draw >= evaluation_share
    fold = np.minimum((draw / evaluation_share * folds).astype(np.intp), folds - 1)
    return np.where(learning, -1, fold)


def _pick_policies(train: pd.DataFrame, data: RandomizedTest, winner_rule: WinnerRule) -> tuple[str, Mapping[str, str]]:
    """The best single tone (the highest rate among the tones no guardrail blocks) and each
    segment's winner, chosen on `train`."""
    rates = train[~train["arm"].isin([CONTROL_ARM, *data.blocked_arms])].groupby("arm", observed=True)[data.outcome].mean()
    best_tone = str(rates.sort_index().idxmax()) if len(rates) else CONTROL_ARM
    return best_tone, winner_rule(train)


def evaluate_policies(data: RandomizedTest, *, winner_rule: WinnerRule, estimator: str, folds: int, seed: int, alpha: float,
                      evaluation_share: float = 0.5) -> tuple[PolicyEvaluation, TLearner]:
    """Doubly robust values of the candidate policies on the evaluation part, the gate on the
    personalized one, its Qini curve; and the personalized model (learned on the learning part:
    the one rolled out). `winner_rule` picks each segment's arm from the learning part; the
    evaluation's `winners` are those picks where they can be sent (`sendable_winners`), as shipped."""
    arms, segments = list(data.arms), list(data.segments)
    if arms[0] != CONTROL_ARM:
        raise ValueError(f"arms must start with '{CONTROL_ARM}', got {arms}")
    # Only the message arms' customers: a no-email holdout's were sent none of the candidates.
    frame = data.frame.loc[data.frame["arm"].isin(arms).to_numpy()].reset_index(drop=True)
    features = uplift_features(frame, segments)
    seg_codes = pd.Categorical(frame["segment"], categories=segments).codes.astype(np.intp)
    arm_codes = pd.Categorical(frame["arm"], categories=arms).codes.astype(np.intp)
    y = frame[data.outcome].to_numpy(dtype=float)
    available = data.available
    k = len(arms)
    part = split_of(frame["customer_id"], evaluation_share, folds, seed)
    learning, evaluation = np.flatnonzero(part < 0), np.flatnonzero(part >= 0)

    def fit(rows: np.ndarray) -> TLearner:
        return fit_t_learner(features.iloc[rows], arm_codes[rows], y[rows], arms, available, estimator=estimator, seed=seed,
                             continuous=data.continuous)

    model = fit(learning)
    best_tone, winners = _pick_policies(frame.iloc[learning], data, winner_rule)
    eval_features, eval_segments = features.iloc[evaluation], seg_codes[evaluation]
    picks = {
        CONTROL_FOR_ALL: np.zeros(len(evaluation), dtype=np.intp),
        BEST_SINGLE_TONE: _mask_unavailable(np.full(len(evaluation), arms.index(best_tone)), available, eval_segments),
        WINNER_PER_SEGMENT: _mask_unavailable(_arm_index(arms, winners, eval_segments, segments), available, eval_segments),
        PERSONALIZED: model.best_arms(model.predict(eval_features)),
    }

    n = len(evaluation)
    scores = np.zeros((n, k))  # Γ_i(a) on the evaluation part
    predicted = np.zeros((n, k))  # the shipped model's predictions there (it never saw these customers)
    predicted[:] = np.nan_to_num(model.predict(eval_features), nan=0.0)
    eval_fold = part[evaluation]
    for f in range(folds):
        rows = np.flatnonzero(eval_fold == f)
        if not len(rows):
            continue
        nuisance_rows = np.concatenate([learning, evaluation[eval_fold != f]])
        mu = fit(nuisance_rows).predict(features.iloc[evaluation[rows]])
        # An arm that cannot be sent in a segment is never picked there; its prediction is unused.
        mu = np.nan_to_num(mu, nan=float(y[nuisance_rows].mean()) if len(nuisance_rows) else 0.0)
        scores[rows] = dr_scores(mu, data.propensity[seg_codes[evaluation[rows]]], arm_codes[evaluation[rows]], y[evaluation[rows]])

    z = two_sided_z(alpha)
    policy_scores = {policy: scores[np.arange(n), picks[policy]] for policy in POLICIES}

    def interval(values: np.ndarray) -> tuple[float, float, float, float]:
        if len(values) < 2:
            return (float(values.mean()) if len(values) else np.nan), np.nan, np.nan, np.nan
        mean, se = float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))
        return mean, mean - z * se, mean + z * se, se

    rows_out = []
    for policy in POLICIES:
        value, low, high, se = interval(policy_scores[policy])
        rows_out.append({"policy": policy, "description": POLICY_LABELS[policy], "value": value, "ci_low": low, "ci_high": high,
                         "std_error": se, "customers": n})
    values = pd.DataFrame(rows_out)
    others = values[values["policy"] != PERSONALIZED]
    baseline = str(others.sort_values(["value", "policy"], ascending=[False, True]).iloc[0]["policy"]) if n else CONTROL_FOR_ALL
    differences = [interval(policy_scores[policy] - policy_scores[baseline]) for policy in POLICIES]
    values["is_baseline"] = values["policy"] == baseline
    values["diff_vs_baseline"] = [d[0] for d in differences]
    values["diff_ci_low"] = [d[1] for d in differences]
    values["diff_ci_high"] = [d[2] for d in differences]
    values["true_value"] = np.nan
    personalized = values.set_index("policy").loc[PERSONALIZED]
    low = float(personalized["diff_ci_low"])
    guardrails = policy_guardrails(frame, data, learning, evaluation, seg_codes, arm_codes, picks[PERSONALIZED], picks[baseline], alpha)
    values["guardrails"] = np.where(values["policy"] == PERSONALIZED, "; ".join(text for text, _ in guardrails), "")
    failed = [text for text, verdict in guardrails if verdict == "fails"]
    passed = bool(np.isfinite(low) and low > 0) and not failed
    reason = (f"its value's lower bound beats {baseline} by {low:+.4f}" if passed else
              f"guardrail: {'; '.join(failed)}" if failed else
              f"the interval of its gain over {baseline} reaches {low:+.4f} (must be above 0)" if np.isfinite(low)
              else "too few test customers to estimate it")
    gate = PolicyGate(passed, baseline, float(personalized["diff_vs_baseline"]), low, float(personalized["diff_ci_high"]), reason)
    values["gate_passed"] = (values["policy"] == PERSONALIZED) & passed

    choices = pd.DataFrame({"customer_id": frame["customer_id"].to_numpy()[evaluation], "fold": eval_fold,
                            **{policy: np.array(arms, dtype=object)[picks[policy]] for policy in POLICIES}})
    qini = qini_curve(predicted, picks[PERSONALIZED], arm_codes[evaluation], y[evaluation])
    return PolicyEvaluation(values[list(POLICY_VALUE_COLUMNS)], gate, qini, choices, folds, sendable_winners(winners, data)), model


def dr_scores(mu: np.ndarray, propensity: np.ndarray, arm_codes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The doubly robust score of every (customer, arm): ``μ̂ + 1{A = a} / e · (Y − μ̂)``, from the
    outcome model's (customers, arms) predictions, each customer's (customers, arms) propensities,
    the arm they were sent and their outcome."""
    sent = np.zeros_like(mu)
    sent[np.arange(len(mu)), arm_codes] = 1.0
    return mu + np.divide(sent, propensity, out=np.zeros_like(propensity), where=propensity > 0) * (y[:, np.newaxis] - mu)


def policy_guardrails(frame: pd.DataFrame, data: RandomizedTest, learning: np.ndarray, evaluation: np.ndarray, seg_codes: np.ndarray,
                      arm_codes: np.ndarray, personalized: np.ndarray, baseline: np.ndarray, alpha: float) -> list[tuple[str, str]]:
    """The personalized policy's guardrails against the baseline policy's, on the evaluation part:
    per measured guardrail, doubly robust scores of the guardrail's 0/1 outcome (the nuisance is
    the learning part's rate per segment and arm, the propensities the design's), the paired
    difference's one-sided (1 - alpha) bounds, and `gates.guardrail_verdict` on them: a policy
    that significantly raises unsubscribes beyond its margin does not ship, even when every tone
    it sends holds its guardrail on its own (it could send a tone to exactly the customers it
    drives away). Returns (text, verdict) per guardrail."""
    out = []
    n_segments, k = data.propensity.shape
    e = data.propensity[seg_codes[evaluation]]
    z = two_sided_z(2 * alpha)
    for column, margin in data.guardrails:
        y = frame[column].to_numpy(dtype=float)
        if np.isnan(y[evaluation]).any() or not len(evaluation):
            continue
        # Nuisance: the learning part's rate per (segment, arm), its overall rate where a cell is empty.
        cell = seg_codes[learning] * k + arm_codes[learning]
        counts = np.bincount(cell, minlength=n_segments * k)
        sums = np.bincount(cell, weights=np.nan_to_num(y[learning]), minlength=n_segments * k)
        fallback = float(np.nanmean(y[learning])) if len(learning) else 0.0
        mu = np.where(counts > 0, sums / np.maximum(counts, 1), fallback).reshape(n_segments, k)[seg_codes[evaluation]]
        scores = dr_scores(mu, e, arm_codes[evaluation], y[evaluation])
        rows = np.arange(len(evaluation))
        difference = scores[rows, personalized] - scores[rows, baseline]
        mean, se = float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else np.nan
        lower, upper = mean - z * se, mean + z * se
        verdict = guardrail_verdict(lower, upper, margin)
        out.append((f"{column} vs the baseline {mean * 100:+.2f} pts [{lower * 100:+.2f}, {upper * 100:+.2f}], margin "
                    f"+{margin * 100:.2f}: {verdict}", verdict))
    return out


def qini_curve(predicted: np.ndarray, chosen: np.ndarray, arm_codes: np.ndarray, y: np.ndarray, points: int = QINI_POINTS) -> pd.DataFrame:
    """The Qini curve of the personalized policy, on customers its model never saw.

    Customers are ranked by predicted gain of their chosen arm over control (0 when control is
    chosen). For the top share φ, the incremental successes per test customer are those of the
    customers who were randomized to their recommended tone, minus control's, scaled to the
    same count: (Y_t − Y_c · N_t / N_c) / n. The random line joins 0 to the curve's end.
    """
    n = len(y)
    fractions = np.linspace(0, 1, points + 1)
    if n == 0:
        return pd.DataFrame({"fraction": fractions, "qini": 0.0, "random": 0.0})
    gain = predicted[np.arange(n), chosen] - predicted[:, 0]
    order = np.argsort(-gain, kind="stable")
    treated = ((arm_codes == chosen) & (chosen != 0))[order]
    control = (arm_codes == 0)[order]
    y_sorted = y[order]
    cum_t, cum_c = np.cumsum(treated), np.cumsum(control)
    cum_yt, cum_yc = np.cumsum(y_sorted * treated), np.cumsum(y_sorted * control)
    qini = [0.0]
    for fraction in fractions[1:]:
        i = max(int(round(fraction * n)) - 1, 0)
        scale = cum_t[i] / cum_c[i] if cum_c[i] else 0.0
        qini.append(float(cum_yt[i] - cum_yc[i] * scale) / n)
    qini = np.array(qini)
    return pd.DataFrame({"fraction": fractions, "qini": qini, "random": fractions * qini[-1]})


def qini_coefficient(qini: pd.DataFrame) -> float:
    """The area between the Qini curve and the random line (trapezoids over the fractions)."""
    gap = (qini["qini"] - qini["random"]).to_numpy()
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(qini["fraction"].to_numpy())))


def campaign_test_data(frame: pd.DataFrame, config: CampaignConfig, segment_ids: Sequence[str],
                       blocked_arms: Sequence[str] = ()) -> RandomizedTest:
    """The campaign's randomized test as the estimator reads it: the message arms' customers, the
    primary metric's column (and whether it is an amount), the campaign's arms (control first), its design propensities per
    segment, and the arms that fail a guardrail (`experiment/gates.guardrail_blocked_arms`), which
    no policy may send."""
    segments = tuple(segment_ids)
    frame = frame.loc[frame["arm"].isin(config.arm_names).to_numpy()]
    guardrails = tuple((GUARDRAIL_COLUMNS[metric], margin) for metric, margin in config.guardrails.margins.items()
                       if GUARDRAIL_COLUMNS[metric] in frame and frame[GUARDRAIL_COLUMNS[metric]].notna().all() and len(frame))
    return RandomizedTest(frame, METRIC_COLUMNS[config.metrics.primary], tuple(config.arm_names), segments,
                          design_propensities(frame, segments, config.arm_weights), tuple(blocked_arms), guardrails,
                          continuous=config.metrics.primary in CONTINUOUS_METRICS)


def sendable_winners(winners: Mapping[str, str], data: RandomizedTest) -> dict[str, str]:
    """Each segment's winner where its variant can be sent there (approved, no guardrail failed),
    else control: the winner policy as it is valued and as it ships."""
    available = data.available
    return {segment: (arm if arm in data.arms and available[position, data.arms.index(arm)] else CONTROL_ARM)
            for position, segment in enumerate(data.segments) for arm in [winners.get(segment, CONTROL_ARM)]}


def evaluate_campaign_policies(data: RandomizedTest, config: CampaignConfig, segment_ids: Sequence[str], srm: SrmResult, *,
                               simulation: SimulationSettings | None = None) -> tuple[PolicyEvaluation, TLearner]:
    """`evaluate_policies` on a campaign's test, the segment winners chosen by the campaign's own
    lift gate on the learning part (`results.gated_winners`); `srm` is the wave's sample-ratio
    test: flagged, the design's propensities are in doubt, so nothing wins and the personalized
    policy does not ship. With `simulation` (engagement was simulated) each policy's true value is
    filled in from the simulator's ground truth for the same customers and the same picks."""
    settings = config.personalization
    evaluation, model = evaluate_policies(
        data, winner_rule=lambda learning: gated_winners(learning, config, segment_ids, srm), estimator=settings.estimator,
        folds=settings.folds, seed=settings.seed, alpha=config.alpha, evaluation_share=settings.evaluation_share,
    )
    if srm.flagged:
        gate = evaluation.gate
        evaluation.gate = PolicyGate(False, gate.baseline, gate.difference, gate.ci_low, gate.ci_high,
                                     f"the test's sample-ratio test flagged (p = {srm.p_value:.2g}): its assignment is not the design's")
        evaluation.values["gate_passed"] = False
    if simulation is not None:
        ordered = data.frame.set_index("customer_id").loc[evaluation.choices["customer_id"]].reset_index()
        evaluation.values["true_value"] = [
            float(expected_outcomes(ordered, simulation, evaluation.choices[policy].to_numpy())[data.outcome].mean())
            for policy in evaluation.values["policy"]
        ]
    return evaluation, model


def personalized_gate_passes(values: pd.DataFrame) -> bool:
    """The personalized policy's gate read back from a stored `policy_values` table (so the
    rollout applies it even when the check ran in another run): passed, and its gain's lower
    bound above 0."""
    row = values.loc[values["policy"] == PERSONALIZED]
    return bool(len(row) == 1 and bool(row["gate_passed"].iloc[0]) and np.isfinite(row["diff_ci_low"].iloc[0])
                and row["diff_ci_low"].iloc[0] > 0)
