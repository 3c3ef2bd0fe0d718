"""Adaptive allocation across waves (Thompson sampling), and the estimate that stays unbiased under it.

Each wave's arm weights per segment come from the posterior of the primary metric given every
earlier wave of that segment:

- a 0/1 metric's rate per arm has the Beta(1 + successes, 1 + failures) posterior; an amount
  (revenue per recipient) the normal approximation of its mean, N(mean, sd² / n);
- the control keeps its configured share (the comparison every lift is measured against is never
  starved), and the tones share the rest: each a `floor`, and the remainder in proportion to the
  posterior probability that the tone is the best tone (Monte Carlo, seeded per experiment and wave);
- until every tone of a segment has `min_exposures` customers in earlier waves, the segment keeps
  the configured weights (as Amplitude's and GrowthBook's bandits wait for 100 exposures).

Weights that change from wave to wave make a pooled comparison biased: a tone sent mostly in the
waves or segments where every arm does well looks better than it is (Simpson's paradox). The
estimate is therefore stratified: within one (wave, segment) stratum the weights are fixed and the
arms are randomized, so each stratum's arm means are unbiased; the overall mean of an arm is the
strata's means weighted by each stratum's share of the customers, with variance
Σ π_s² sd_{s,a}² / n_{s,a}; the relative lift and its interval follow by the delta method on the
log scale. The tests simulate many campaigns to show the regret saved and the interval's coverage.

A customer's arm is drawn afresh each wave under adaptive weights (`wave_draws`): a hash salted by
the wave, not only by the experiment. With one draw for every wave, the customers who drifted into
a tone's grown share would be the ones whose earlier outcomes made it grow, and a customer's own
persistent taste would then bias the next wave's comparison.

Pure logic, no Dagster import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr

from personalization_assets.campaign.config import (
    CONTINUOUS_METRICS,
    CONTROL_ARM,
    NO_EMAIL_ARM,
    CampaignConfig,
)
from personalization_assets.experiment.assignment import stable_hash64, unit_interval
from personalization_assets.stats._normal import two_sided_z

POSTERIOR_DRAWS = 4000


@dataclass(frozen=True)
class ArmHistory:
    """What earlier waves measured per (segment, arm): customers, and the outcome's mean and
    standard deviation (arrays of shape (segments, arms))."""

    n: np.ndarray
    mean: np.ndarray
    sd: np.ndarray

    @classmethod
    def from_results(cls, results: pd.DataFrame, segments: Sequence[str], arms: Sequence[str], metric: str) -> ArmHistory:
        """Pool the segment-scope rows of earlier waves' `experiment_results` (one row per wave,
        scope, metric and arm) into each (segment, arm)'s customers, mean and spread."""
        rows = results[(results["metric"] == metric) & results["scope"].isin(list(segments)) & results["arm"].isin(list(arms))]
        shape = (len(segments), len(arms))
        seg = pd.Categorical(rows["scope"], categories=list(segments)).codes
        arm = pd.Categorical(rows["arm"], categories=list(arms)).codes
        n = rows["n"].to_numpy(dtype=float)
        mean = np.nan_to_num(rows["rate"].to_numpy(dtype=float))
        # A wave stored before outcome_sd was a 0/1 metric's: its spread is sqrt(p (1 - p)).
        stored_sd = rows["outcome_sd"].to_numpy(dtype=float) if "outcome_sd" in rows else np.full(len(rows), np.nan)
        sd = np.where(np.isnan(stored_sd), np.sqrt(np.clip(mean * (1 - mean), 0, None)), stored_sd)
        cell = seg * len(arms) + arm
        size = shape[0] * shape[1]
        total_n = np.bincount(cell, weights=n, minlength=size)
        total = np.bincount(cell, weights=n * mean, minlength=size)
        squares = np.bincount(cell, weights=n * (sd**2 + mean**2), minlength=size)
        with np.errstate(divide="ignore", invalid="ignore"):
            pooled_mean = np.where(total_n > 0, total / total_n, 0.0)
            pooled_sd = np.sqrt(np.maximum(np.where(total_n > 0, squares / total_n, 0.0) - pooled_mean**2, 0.0))
        return cls(total_n.reshape(shape), pooled_mean.reshape(shape), pooled_sd.reshape(shape))


def chance_best(history: ArmHistory, tone_columns: Sequence[int], *, continuous: bool, seed: int,
                draws: int = POSTERIOR_DRAWS) -> np.ndarray:
    """(segments, tones): the posterior probability that each tone has the highest mean of the
    tones in its segment, from `draws` seeded posterior draws."""
    rng = np.random.default_rng(seed)
    columns = list(tone_columns)
    n, mean, sd = (a[:, columns] for a in (history.n, history.mean, history.sd))
    if continuous:
        # A segment with an empty arm is not adapted (`thompson_weights`): its draws are unused.
        samples = mean + sd / np.sqrt(np.maximum(n, 1.0)) * rng.standard_normal((draws, *n.shape))
    else:
        successes = np.round(mean * n)
        samples = rng.beta(1.0 + successes, 1.0 + np.maximum(n - successes, 0.0), size=(draws, *n.shape))
    # Equal draws (tones with no spread yet, e.g. no purchase at all) tie: broken at random, not
    # always towards the first tone.
    best = np.lexsort((rng.random(samples.shape), samples), axis=2)[..., -1]
    return np.stack([(best == position).mean(axis=0) for position in range(len(columns))], axis=1)


def thompson_weights(history: ArmHistory, base_weights: Sequence[float], tone_columns: Sequence[int], *, floor: float,
                     min_exposures: int, continuous: bool, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(segments, arms) weights of a wave, per segment whether they were adapted, and the
    (segments, tones) chance of each tone being the best (`chance_best`) they were set from.

    `base_weights` are the configured shares of every arm (control, tones, a no-email holdout),
    summing to 1; the arms not in `tone_columns` keep them. The tones share what is left: each at
    least `floor` of the whole audience, the rest by their chance of being the best tone. A
    segment where a tone has fewer than `min_exposures` earlier customers keeps `base_weights`."""
    base = np.asarray(base_weights, dtype=float)
    columns = list(tone_columns)
    tone_share = float(base[columns].sum())
    if floor * len(columns) > tone_share + 1e-12:
        raise ValueError(f"a floor of {floor:.0%} for each of {len(columns)} tones exceeds their {tone_share:.0%} share")
    weights = np.tile(base, (history.n.shape[0], 1))
    ready = (history.n[:, columns] >= min_exposures).all(axis=1)
    chance = chance_best(history, columns, continuous=continuous, seed=seed)
    adapted = floor + (tone_share - floor * len(columns)) * chance
    weights[np.ix_(ready, columns)] = adapted[ready]
    return weights, ready, chance


def wave_draws(customer_ids: pd.Series, experiment_id: str, wave: str) -> np.ndarray:
    """Each customer's uniform draw for one wave's adaptive assignment (salted by the wave)."""
    return unit_interval(customer_ids.to_numpy(), f"{experiment_id}:allocation:{wave}")


def weighted_arms(draws: np.ndarray, segment_codes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each customer's arm position: their draw's place among their segment's cumulative weights."""
    edges = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)[np.asarray(segment_codes, dtype=np.intp)]
    return np.minimum((np.asarray(draws)[:, np.newaxis] >= edges).sum(axis=1), weights.shape[1] - 1)


@dataclass(frozen=True)
class StratifiedLift:
    """A treatment's stratified mean against control's, the difference and its standard error, and
    the relative lift with its interval (arrays over the comparisons, numbers for one)."""

    control_mean: np.ndarray
    treatment_mean: np.ndarray
    difference: np.ndarray
    difference_se: np.ndarray
    rel_lift: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    left_out_share: np.ndarray  # customers' share of the strata left out (an arm with no customer there)


def stratified_lift(n_c, mean_c, sd_c, n_t, mean_t, sd_t, stratum_sizes, alpha: float = 0.05) -> StratifiedLift:
    """Post-stratified comparison over strata (the last axis: one entry per (wave, segment)) in
    which each arm's share was fixed: each arm's mean is Σ π_s mean_s with π_s the stratum's share
    of the customers, its variance Σ π_s² sd_s² / n_s; the relative lift's interval is the delta
    method's on the log scale and the p-value the z-test of the difference. Strata where an arm has
    no customer are left out of both arms (their share renormalized over the rest) and
    `left_out_share` says how much: with a floor per arm that happens only in strata of a handful
    of customers, and a comparison that left out much is not of the whole audience. Leading axes
    are separate comparisons."""
    n_c, mean_c, sd_c, n_t, mean_t, sd_t = (np.asarray(a, dtype=float) for a in (n_c, mean_c, sd_c, n_t, mean_t, sd_t))
    sizes = np.broadcast_to(np.asarray(stratum_sizes, dtype=float), n_c.shape)
    usable = (n_c > 0) & (n_t > 0)
    kept, total = np.where(usable, sizes, 0.0).sum(axis=-1), sizes.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        left_out = np.where(total > 0, 1 - kept / total, 1.0)
        share = np.where(usable, sizes, 0.0) / kept[..., np.newaxis]
        m_c = np.sum(np.where(usable, share * mean_c, 0.0), axis=-1)
        m_t = np.sum(np.where(usable, share * mean_t, 0.0), axis=-1)
        v_c = np.sum(np.where(usable, share**2 * np.nan_to_num(sd_c) ** 2 / n_c, 0.0), axis=-1)
        v_t = np.sum(np.where(usable, share**2 * np.nan_to_num(sd_t) ** 2 / n_t, 0.0), axis=-1)
        nothing = kept <= 0
        m_c, m_t = np.where(nothing, np.nan, m_c), np.where(nothing, np.nan, m_t)
        difference, difference_se = m_t - m_c, np.where(nothing, np.nan, np.sqrt(v_c + v_t))
        p_value = np.where(difference_se > 0, 2 * ndtr(-np.abs(difference) / difference_se), np.nan)
        ratio = m_t / m_c
        log_ratio, log_se = np.log(ratio), np.sqrt(v_t / m_t**2 + v_c / m_c**2)
        positive = (m_c > 0) & (m_t > 0)
        z = two_sided_z(alpha)
        rel_lift = np.where(m_c > 0, ratio - 1, np.nan)
        ci_low = np.where(positive, np.expm1(log_ratio - z * log_se), np.nan)
        ci_high = np.where(positive, np.expm1(log_ratio + z * log_se), np.nan)
    return StratifiedLift(*(np.asarray(a)[()] for a in (m_c, m_t, difference, difference_se, rel_lift, ci_low, ci_high, p_value,
                                                        left_out)))


ALLOCATION_COLUMNS = ("wave", "segment", "arm", "allocation", "weight", "exposures", "earlier_mean", "chance_best", "adapted")


def allocation_seed(experiment_id: str, wave: str) -> int:
    """The posterior draws' seed of one wave: the same weights whenever the wave is recomputed."""
    return int(stable_hash64(pd.Series([f"{experiment_id}:{wave}"]), "thompson")[0] >> np.uint64(1))


def allocation_table(config: CampaignConfig, segments: Sequence[str], earlier: pd.DataFrame, wave: str) -> pd.DataFrame:
    """One row per (segment, arm) of a wave: the arm's weight in the segment and, with
    `allocation: thompson`, the earlier waves' customers and mean of the primary metric in it
    (`earlier`: their `experiment_results` rows, RESULT_COLUMNS with `scope`), the posterior
    chance that the tone is the best, and whether the segment's weights adapted. With
    `allocation: fixed` every segment has the configured weights and no history."""
    weights = config.assignment_weights
    arms = list(weights)
    base = np.array([weights[arm] for arm in arms])
    nan = np.full((len(segments), len(arms)), np.nan)
    table, ready, exposures, earlier_mean, chance = np.tile(base, (len(segments), 1)), np.zeros(len(segments), dtype=bool), nan, nan, nan
    if config.allocation == "thompson":
        metric = config.metrics.primary
        history = ArmHistory.from_results(earlier, segments, arms, metric)
        tones = [position for position, arm in enumerate(arms) if arm not in (CONTROL_ARM, NO_EMAIL_ARM)]
        settings, continuous, seed = config.thompson, metric in CONTINUOUS_METRICS, allocation_seed(config.experiment_id, wave)
        table, ready, tone_chance = thompson_weights(history, base, tones, floor=settings.floor,
                                                     min_exposures=settings.min_exposures, continuous=continuous, seed=seed)
        exposures, earlier_mean, chance = history.n, np.where(history.n > 0, history.mean, np.nan), nan.copy()
        chance[:, tones] = tone_chance
    return pd.DataFrame({
        "wave": wave,
        "segment": np.repeat(np.array(list(segments), dtype=object), len(arms)),
        "arm": np.tile(np.array(arms, dtype=object), len(segments)),
        "allocation": config.allocation,
        "weight": table.ravel(),
        "exposures": exposures.ravel(),
        "earlier_mean": earlier_mean.ravel(),
        "chance_best": chance.ravel(),
        "adapted": np.repeat(ready, len(arms)),
    })[list(ALLOCATION_COLUMNS)]


def allocation_weights(allocation: pd.DataFrame, segments: Sequence[str], arms: Sequence[str]) -> np.ndarray:
    """(segments, arms) weights from an `allocation_table`; a missing (segment, arm) is an error."""
    grid = allocation.pivot(index="segment", columns="arm", values="weight").reindex(index=list(segments), columns=list(arms))
    if grid.isna().to_numpy().any():
        missing = [segment for segment in segments if grid.loc[segment].isna().any()]
        raise ValueError(f"the wave's arm_allocation has no weights for segments {missing} and arms {list(arms)}: "
                         "materialize arm_allocation for this wave first")
    return grid.to_numpy(dtype=float)
