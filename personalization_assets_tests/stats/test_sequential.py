"""Always-valid inference: peeking every look keeps the false-positive rate at alpha (simulated)."""

import numpy as np

from personalization_assets.stats.proportions import compare_proportions
from personalization_assets.stats.sequential import (
    always_valid_p_value,
    confidence_sequence,
    relative_confidence_sequence,
)

SIMULATIONS, LOOKS, PER_LOOK, RATE, ALPHA = 2000, 20, 250, 0.2, 0.05


def cumulative_counts(rng, effect: float, per_look: int = PER_LOOK):
    """Successes and sizes per arm after each of LOOKS daily batches, for SIMULATIONS experiments."""
    control = rng.binomial(per_look, RATE, size=(SIMULATIONS, LOOKS)).cumsum(axis=1)
    treatment = rng.binomial(per_look, RATE * (1 + effect), size=(SIMULATIONS, LOOKS)).cumsum(axis=1)
    n = per_look * np.arange(1, LOOKS + 1)
    return treatment / n, control / n, np.broadcast_to(n, (SIMULATIONS, LOOKS))


def test_peeking_at_every_look_keeps_the_false_positive_rate_at_alpha():
    rng = np.random.default_rng(2026)
    rate_t, rate_c, n = cumulative_counts(rng, effect=0.0)
    tau = 0.1 * RATE
    # After several looks the always-valid p-value is the running minimum: it never goes back up.
    always_valid = np.fmin.accumulate(always_valid_p_value(rate_t, n, rate_c, n, tau), axis=1)
    false_positive_always_valid = float((always_valid[:, -1] < ALPHA).mean())
    naive = compare_proportions(
        (rate_c * n).ravel(), n.ravel(), (rate_t * n).ravel(), n.ravel()
    ).p_value.reshape(SIMULATIONS, LOOKS)
    false_positive_naive_peeking = float((naive < ALPHA).any(axis=1).mean())
    print(f"A/A, {LOOKS} looks: naive peeking FPR {false_positive_naive_peeking:.3f}, always-valid {false_positive_always_valid:.3f}")
    assert false_positive_always_valid <= ALPHA
    assert false_positive_naive_peeking > 2 * ALPHA  # what the always-valid p-value protects against


def test_the_confidence_sequence_covers_the_truth_at_every_look():
    rng = np.random.default_rng(7)
    effect = 0.1
    rate_t, rate_c, n = cumulative_counts(rng, effect)
    low, high = confidence_sequence(rate_t, n, rate_c, n, tau=0.1 * RATE, alpha=ALPHA)
    true_difference = RATE * effect
    covered_throughout = ((low <= true_difference) & (true_difference <= high)).all(axis=1).mean()
    assert covered_throughout >= 1 - ALPHA


def test_a_real_effect_is_found_and_the_sequence_is_wider_than_the_fixed_interval():
    rate_t, rate_c, n = np.array([0.26]), np.array([0.20]), np.array([5000.0])
    p = always_valid_p_value(rate_t, n, rate_c, n, tau=0.02)
    assert p[0] < 0.001
    low, high = relative_confidence_sequence(rate_t, n, rate_c, n, tau=0.02)
    fixed = compare_proportions(rate_c * n, n, rate_t * n, n)
    assert low[0] < fixed.rel_lift_ci_low[0] and high[0] > fixed.rel_lift_ci_high[0]
    assert low[0] < 0.3 < high[0]


def test_known_value_of_the_mixture_ratio():
    # V = 2 * 0.25 / 100 = 0.005, tau^2 = 0.005 -> Lambda = sqrt(1/2) * exp(0.005 * 0.01 / (2 * 0.005 * 0.01))
    p = always_valid_p_value(0.55, 100, 0.45, 100, tau=np.sqrt(0.005))
    variance = 0.55 * 0.45 / 100 * 2
    expected = 1 / (np.sqrt(variance / (variance + 0.005)) * np.exp(0.005 * 0.01 / (2 * variance * (variance + 0.005))))
    assert np.isclose(p, min(1.0, expected))
    assert np.isnan(always_valid_p_value(0.0, 100, 0.0, 100, tau=0.01))


def test_peeking_at_small_n_keeps_the_false_positive_rate_at_alpha():
    # 20 customers per arm per look (400 per arm at the end), 2,000 simulated A/A experiments.
    rate_t, rate_c, n = cumulative_counts(np.random.default_rng(2027), effect=0.0, per_look=20)
    always_valid = np.fmin.accumulate(always_valid_p_value(rate_t, n, rate_c, n, 0.1 * RATE), axis=1)
    assert float((always_valid[:, -1] < ALPHA).mean()) <= ALPHA
