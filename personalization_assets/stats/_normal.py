"""Normal-approximation helpers shared by the stats modules."""

from __future__ import annotations

import numpy as np

# scipy.special, not scipy.stats: the same functions (norm.ppf is ndtri), a third of the import time.
from scipy.special import ndtri


def two_sided_z(alpha: float) -> float:
    """Critical value z_{1 - alpha/2} of a two-sided test or a (1 - alpha) interval."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(ndtri(1.0 - alpha / 2.0))


def normal_interval(
    estimate: np.ndarray, standard_error: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric (1 - alpha) Wald interval estimate ± z * se, element-wise."""
    half_width = two_sided_z(alpha) * np.asarray(standard_error, dtype=float)
    estimate = np.asarray(estimate, dtype=float)
    return estimate - half_width, estimate + half_width
