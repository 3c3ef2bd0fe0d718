"""Pure statistics engine for the campaign experiments (no Dagster import).

One concept per module, in the style of GrowthBook's gbstats: proportions (rates, lift, CI,
p-values), multiple_testing (Holm), srm (sample-ratio mismatch), cuped (variance reduction),
bayes (chance to beat control), power (MDE, sample size, plan) and experiment (the table-level
entry point the pipeline calls). Methods and validation: docs/statistics.md.
"""

from .experiment import RESULT_COLUMNS, analyze_experiment
from .multiple_testing import holm_adjust
from .power import PowerPlan, minimum_detectable_lift, plan, sample_size_per_arm
from .srm import SrmResult, srm_test

__all__ = [
    "RESULT_COLUMNS",
    "PowerPlan",
    "SrmResult",
    "analyze_experiment",
    "holm_adjust",
    "minimum_detectable_lift",
    "plan",
    "sample_size_per_arm",
    "srm_test",
]
