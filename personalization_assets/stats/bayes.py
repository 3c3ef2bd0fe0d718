"""Bayesian chance that a treatment beats control, by the normal approximation on the lift.

As in GrowthBook's Bayesian engine with its default flat (improper) prior, the posterior of the
relative lift is taken to be normal, centred on the observed relative lift with the
delta-method standard error as its spread, so

    chance_to_beat_control = P(rel lift > 0 | data) = Φ(rel_lift / se(rel_lift))

Scale: the plain relative-lift scale (R - 1), not log(R). Reasons:
- the same estimate and standard error give the reported rel_lift CI, so the two agree exactly:
  chance > 1 - alpha/2 precisely when the CI's lower bound is above 0;
- it stays defined when the treatment has zero successes (log R = -inf there).
The log scale would be the better approximation for small, skewed samples (the ratio of two
means is right-skewed and log R is closer to normal); at the sample sizes where the normal
approximation is usable at all, the two give nearly the same answer.

Caveat: with a flat prior this is a restatement of the frequentist evidence (it equals one
minus the one-sided Wald p-value), not an independent confirmation of it.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr  # norm.cdf, without importing scipy.stats


def chance_to_beat_control(rel_lift, rel_lift_se) -> np.ndarray:
    """Φ(rel_lift / se), element-wise; NaN where the lift is undefined or se is 0 with no lift."""
    rel_lift = np.asarray(rel_lift, dtype=float)
    rel_lift_se = np.asarray(rel_lift_se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ndtr(rel_lift / rel_lift_se)
