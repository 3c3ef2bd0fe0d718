"""Print the statistics engine's simulated calibration numbers quoted in docs/statistics.md.

    .venv/bin/python benchmarks/stats_validation.py            # ~15 s on 2 cores
    .venv/bin/python benchmarks/stats_validation.py --experiments 4000   # quicker, noisier

Every number is from simulated data (seeded), analysed with the same functions the pipeline
uses. The last line times analyze_experiment on a simulated 1,000,000-customer table (a
measurement, not a target asserted anywhere).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from personalization_assets.stats import analyze_experiment, sample_size_per_arm
from personalization_assets.stats.validation import (
    cuped_ci_validation,
    engagement_mismatch_flag_rate,
    holm_familywise_error_rate,
    rejection_rate,
    relative_lift_ci_coverage,
    relative_lift_interval_disagreements,
    srm_false_flag_rate,
)

ALPHA = 0.05


def _binomial_interval(share: float, n: int) -> str:
    """± 1.96 Monte Carlo standard errors, so a reader can tell noise from bias."""
    return f"± {1.96 * np.sqrt(share * (1 - share) / n):.4f}"


def _report(label: str, share: float, n: int) -> None:
    print(f"{label:<72} {share:.4f} {_binomial_interval(share, n)}  ({n:,} simulated)")


def _time_million_row_analysis(seed: int) -> float:
    rng = np.random.default_rng(seed)
    n = 1_000_000
    arms = np.array(["control", "urgent", "informational", "friendly"])
    arm = arms[rng.integers(0, arms.size, n)]
    historical_open_rate = rng.beta(2, 8, n)
    historical_click_rate = historical_open_rate * rng.beta(2, 5, n)
    clicked = rng.random(n) < historical_click_rate
    outcomes = pd.DataFrame(
        {
            "arm": arm,
            "opened": (rng.random(n) < historical_open_rate).astype("int8"),
            "clicked": clicked.astype("int8"),
            "converted": (clicked & (rng.random(n) < 0.2)).astype("int8"),
            "historical_open_rate": historical_open_rate,
            "historical_click_rate": historical_click_rate,
        }
    )
    started = time.perf_counter()
    analyze_experiment(
        outcomes,
        control="control",
        arms=list(arms),
        metrics={"open_rate": "opened", "click_rate": "clicked", "conversion_rate": "converted"},
        covariates={
            "open_rate": ["historical_open_rate", "historical_click_rate"],
            "click_rate": ["historical_click_rate", "historical_open_rate"],
            "conversion_rate": ["historical_click_rate"],
        },
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=20_000, help="simulated experiments")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    n_sims, seed = args.experiments, args.seed
    cuped_sims = max(1, n_sims // 5)  # per-customer simulation: 5x fewer keeps it quick

    print(f"All results SIMULATED, seed {seed}, alpha {ALPHA}.\n")
    _report(
        "A/A false-positive rate, z-test (n=2000/arm, p=0.20)",
        rejection_rate(n_sims, 2000, 0.20, 0.0, ALPHA, seed),
        n_sims,
    )
    _report(
        "A/A false-positive rate, mostly Fisher exact (n=100/arm, p=0.03)",
        rejection_rate(n_sims, 100, 0.03, 0.0, ALPHA, seed + 1),
        n_sims,
    )
    _report(
        "Family-wise error rate, Holm, 3 treatments vs shared control (A/A/A/A)",
        holm_familywise_error_rate(n_sims, 2000, 0.20, 3, ALPHA, seed + 2),
        n_sims,
    )
    _report(
        "95% CI coverage of relative lift (n=2000/arm, p=0.20, lift +10%)",
        relative_lift_ci_coverage(n_sims, 2000, 0.20, 0.10, ALPHA, seed + 3),
        n_sims,
    )
    _report(
        "95% CI coverage of relative lift (n=500/arm, p=0.05, lift +20%)",
        relative_lift_ci_coverage(n_sims, 500, 0.05, 0.20, ALPHA, seed + 4),
        n_sims,
    )
    _report(
        "95% CI coverage of relative lift (n=400/arm, p=0.05, A/A)",
        relative_lift_ci_coverage(n_sims, 400, 0.05, 0.0, ALPHA, seed + 9),
        n_sims,
    )
    _report(
        "95% CI coverage of relative lift (n=100/arm, p=0.05, lift +20%)",
        relative_lift_ci_coverage(n_sims, 100, 0.05, 0.20, ALPHA, seed + 10),
        n_sims,
    )
    _report(
        "A/A false-positive rate, small n (n=400/arm, p=0.05)",
        rejection_rate(n_sims, 400, 0.05, 0.0, ALPHA, seed + 11),
        n_sims,
    )
    _report(
        "Family-wise error rate, Holm, small n (n=400/arm, p=0.05, A/A/A/A)",
        holm_familywise_error_rate(n_sims, 400, 0.05, 3, ALPHA, seed + 12),
        n_sims,
    )
    disagreements, decided = relative_lift_interval_disagreements(n_sims, seed + 13, ALPHA)
    print(f"{'interval excludes 0 but z-test does not reject, or the reverse':<72} {disagreements} of {decided:,} comparisons")
    planned_n = sample_size_per_arm(0.20, 0.10, ALPHA, 0.8)
    _report(
        f"Empirical power at the planned n={planned_n:,}/arm (p=0.20, +10%, target 0.80)",
        rejection_rate(n_sims, planned_n, 0.20, 0.10, ALPHA, seed + 5),
        n_sims,
    )
    srm_sims = 5 * n_sims
    _report(
        "SRM false flag rate at p < 0.001 (10,000 customers, 4 equal arms)",
        srm_false_flag_rate(srm_sims, 10_000, [1, 1, 1, 1], 0.001, seed + 6),
        srm_sims,
    )
    _report(
        "Engagement-rows false flag rate at p < 0.001 (5,000/arm, 98% listed)",
        engagement_mismatch_flag_rate(srm_sims, 5000, 4, 0.98, 0.0, 0.001, seed + 14),
        srm_sims,
    )
    _report(
        "Engagement-rows flag rate, one arm loses 10% more rows (5,000/arm)",
        engagement_mismatch_flag_rate(n_sims, 5000, 4, 0.98, 0.10, 0.001, seed + 15),
        n_sims,
    )
    _report(
        "Engagement-rows flag rate, one arm loses 2% more rows (1,000/arm)",
        engagement_mismatch_flag_rate(n_sims, 1000, 4, 0.98, 0.02, 0.001, seed + 16),
        n_sims,
    )

    print()
    for beta in ((1.0, 4.0), (2.0, 8.0)):
        result = cuped_ci_validation(cuped_sims, 2000, 0.10, beta, ALPHA, seed + 7)
        label = f"CUPED, historical rate ~ Beta{beta}, n=2000/arm, lift +10%"
        print(
            f"{label}: median CI width ratio (CUPED/unadjusted) {result.median_width_ratio:.3f}, "
            f"narrower in {result.share_narrower:.1%}, coverage CUPED {result.cuped_coverage:.4f}"
            f" / unadjusted {result.unadjusted_coverage:.4f}  ({cuped_sims:,} simulated)"
        )

    print(
        f"\nanalyze_experiment, 1,000,000 customers, 4 arms, 3 metrics, CUPED on all: "
        f"{_time_million_row_analysis(seed + 8):.2f} s"
    )


if __name__ == "__main__":
    main()
